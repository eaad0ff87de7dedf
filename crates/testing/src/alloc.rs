//! A counting global allocator, for the tests that prove a path allocates
//! nothing and for measuring what a structure holds.
//!
//! [`Counting`] wraps [`System`] and counts, with relaxed atomics, every
//! allocation, reallocation and deallocation and the bytes they take and
//! give back. A [`Region`] reads the counts at its start, and
//! [`Region::change`] gives what happened since: how many calls, and with
//! [`Stats::net_bytes`] the bytes still held of those allocated in the
//! span — divide by a count of instances for the bytes per instance.
//!
//! The counts are process-wide: every thread's allocations show. A test
//! that needs exact figures runs alone in its binary (one test, or
//! `harness = false`).
//!
//! ```
//! use portcullis_testing::alloc::{Counting, Region};
//!
//! #[global_allocator]
//! static GLOBAL: Counting = Counting::new();
//!
//! fn main() {
//!     let region = Region::new(&GLOBAL);
//!     let held = Vec::<u64>::with_capacity(128);
//!     let change = region.change();
//!     assert!(change.allocations >= 1);
//!     assert!(change.net_bytes() >= 128 * 8);
//!     drop(held);
//! }
//! ```

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};

/// A global allocator that forwards to [`System`] and counts what it does.
///
/// Install it with `#[global_allocator] static GLOBAL: Counting =
/// Counting::new();` and read it with [`stats`](Self::stats) or a
/// [`Region`].
#[derive(Debug, Default)]
pub struct Counting {
    allocations: AtomicUsize,
    reallocations: AtomicUsize,
    deallocations: AtomicUsize,
    bytes_allocated: AtomicUsize,
    bytes_deallocated: AtomicUsize,
}

/// The counts of a [`Counting`] allocator, since it started or over a
/// [`Region`].
///
/// A reallocation counts once in `reallocations` and adds its growth to
/// `bytes_allocated` (or its shrinkage to `bytes_deallocated`), so that
/// `bytes_allocated − bytes_deallocated` is always the bytes held.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Stats {
    /// Calls to `alloc` and `alloc_zeroed` that succeeded.
    pub allocations: usize,
    /// Calls to `realloc` that succeeded.
    pub reallocations: usize,
    /// Calls to `dealloc`.
    pub deallocations: usize,
    /// Bytes handed out: allocations, and reallocations that grew.
    pub bytes_allocated: usize,
    /// Bytes given back: deallocations, and reallocations that shrank.
    pub bytes_deallocated: usize,
}

/// A span to measure: the counts of an allocator at its start, to compare
/// with the counts later.
#[derive(Debug)]
pub struct Region<'a> {
    alloc: &'a Counting,
    start: Stats,
}

impl Counting {
    /// An allocator with every count at zero.
    pub const fn new() -> Self {
        Self {
            allocations: AtomicUsize::new(0),
            reallocations: AtomicUsize::new(0),
            deallocations: AtomicUsize::new(0),
            bytes_allocated: AtomicUsize::new(0),
            bytes_deallocated: AtomicUsize::new(0),
        }
    }

    /// The counts since the allocator started.
    pub fn stats(&self) -> Stats {
        Stats {
            allocations: self.allocations.load(Relaxed),
            reallocations: self.reallocations.load(Relaxed),
            deallocations: self.deallocations.load(Relaxed),
            bytes_allocated: self.bytes_allocated.load(Relaxed),
            bytes_deallocated: self.bytes_deallocated.load(Relaxed),
        }
    }

    fn allocated(&self, bytes: usize) {
        self.allocations.fetch_add(1, Relaxed);
        self.bytes_allocated.fetch_add(bytes, Relaxed);
    }
}

impl Stats {
    /// Bytes allocated minus bytes deallocated: over a region, the bytes
    /// still held of those allocated in it (negative if it freed more than
    /// it allocated).
    pub fn net_bytes(&self) -> isize {
        (self.bytes_allocated as isize).wrapping_sub(self.bytes_deallocated as isize)
    }

    /// The counts from `earlier` to `self`.
    pub fn since(&self, earlier: &Stats) -> Stats {
        Stats {
            allocations: self.allocations.wrapping_sub(earlier.allocations),
            reallocations: self.reallocations.wrapping_sub(earlier.reallocations),
            deallocations: self.deallocations.wrapping_sub(earlier.deallocations),
            bytes_allocated: self.bytes_allocated.wrapping_sub(earlier.bytes_allocated),
            bytes_deallocated: self
                .bytes_deallocated
                .wrapping_sub(earlier.bytes_deallocated),
        }
    }
}

impl<'a> Region<'a> {
    /// A region of `alloc` starting now.
    pub fn new(alloc: &'a Counting) -> Self {
        Self {
            alloc,
            start: alloc.stats(),
        }
    }

    /// The counts since the region started (or was last reset).
    pub fn change(&self) -> Stats {
        self.alloc.stats().since(&self.start)
    }

    /// The counts since the region started, and starts it again now.
    pub fn change_and_reset(&mut self) -> Stats {
        let now = self.alloc.stats();
        let change = now.since(&self.start);
        self.start = now;
        change
    }

    /// Starts the region again now.
    pub fn reset(&mut self) {
        self.start = self.alloc.stats();
    }
}

// The only unsafe code of the workspace: a global allocator cannot be
// written without it. Every method forwards its arguments unchanged to
// `System`, so `System`'s guarantees are the caller's; the counting is
// plain atomics.
#[allow(unsafe_code)]
// SAFETY: every method forwards to `System`, which upholds the
// `GlobalAlloc` contract, with the caller's arguments unchanged.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: the caller's `layout` obeys `alloc`'s contract.
        let ptr = unsafe { System.alloc(layout) };
        if !ptr.is_null() {
            self.allocated(layout.size());
        }
        ptr
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        // SAFETY: the caller's `layout` obeys `alloc_zeroed`'s contract.
        let ptr = unsafe { System.alloc_zeroed(layout) };
        if !ptr.is_null() {
            self.allocated(layout.size());
        }
        ptr
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: `ptr` was allocated by this allocator, that is by
        // `System`, with `layout`, as `dealloc`'s contract requires.
        unsafe { System.dealloc(ptr, layout) };
        self.deallocations.fetch_add(1, Relaxed);
        self.bytes_deallocated.fetch_add(layout.size(), Relaxed);
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: `ptr`, `layout` and `new_size` obey `realloc`'s contract,
        // and `ptr` came from `System` through this allocator.
        let new = unsafe { System.realloc(ptr, layout, new_size) };
        if !new.is_null() {
            self.reallocations.fetch_add(1, Relaxed);
            let old_size = layout.size();
            if new_size >= old_size {
                self.bytes_allocated.fetch_add(new_size - old_size, Relaxed);
            } else {
                self.bytes_deallocated
                    .fetch_add(old_size - new_size, Relaxed);
            }
        }
        new
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // Not the global allocator here (the other tests of this binary would
    // allocate through it): the calls are made on a local one.

    #[test]
    fn counts_each_kind_of_call_and_the_bytes() {
        let counting = Counting::new();
        let mut region = Region::new(&counting);
        let layout = Layout::from_size_align(100, 8).unwrap();
        // SAFETY: a non-zero-size layout; the pointer is reallocated and
        // freed with the layouts it has at each point.
        #[allow(unsafe_code)]
        unsafe {
            let ptr = counting.alloc(layout);
            assert!(!ptr.is_null());
            let ptr = counting.realloc(ptr, layout, 300);
            assert!(!ptr.is_null());
            let grown = Layout::from_size_align(300, 8).unwrap();
            let ptr = counting.realloc(ptr, grown, 50);
            assert!(!ptr.is_null());
            counting.dealloc(ptr, Layout::from_size_align(50, 8).unwrap());
        }
        assert_eq!(
            region.change_and_reset(),
            Stats {
                allocations: 1,
                reallocations: 2,
                deallocations: 1,
                bytes_allocated: 300,
                bytes_deallocated: 300,
            }
        );
        assert_eq!(region.change(), Stats::default(), "reset starts again");
    }

    #[test]
    fn net_bytes_and_since() {
        let later = Stats {
            allocations: 5,
            reallocations: 1,
            deallocations: 2,
            bytes_allocated: 1_000,
            bytes_deallocated: 400,
        };
        let earlier = Stats {
            allocations: 2,
            bytes_allocated: 100,
            ..Stats::default()
        };
        let change = later.since(&earlier);
        assert_eq!((change.allocations, change.bytes_allocated), (3, 900));
        assert_eq!(change.net_bytes(), 500);
        assert_eq!(earlier.since(&later).net_bytes(), -500);
    }
}
