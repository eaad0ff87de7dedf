//! The counting allocator counts what a known program allocates. Without a
//! test harness (`harness = false`), so no other thread allocates meanwhile
//! and the counts are exact.

use std::hint::black_box;

use portcullis_testing::alloc::{Counting, Region};

#[global_allocator]
static GLOBAL: Counting = Counting::new();

fn main() {
    a_vec_counts_its_capacity_and_freeing_returns_the_net();
    growth_is_a_reallocation_and_counts_the_new_bytes();
    a_span_without_allocation_counts_nothing();
    println!("counting: 3 checks passed");
}

fn a_vec_counts_its_capacity_and_freeing_returns_the_net() {
    let region = Region::new(&GLOBAL);
    let held: Vec<u64> = black_box(Vec::with_capacity(1_000));
    let change = region.change();
    assert_eq!(change.allocations, 1, "{change:?}");
    assert!(change.bytes_allocated >= 8_000, "{change:?}");
    assert!(change.net_bytes() >= 8_000, "{change:?}");
    drop(held);
    let change = region.change();
    assert_eq!(change.deallocations, 1, "{change:?}");
    assert_eq!(
        change.net_bytes(),
        0,
        "freeing returns the net to its start"
    );
}

fn growth_is_a_reallocation_and_counts_the_new_bytes() {
    let mut bytes: Vec<u8> = black_box(Vec::with_capacity(16));
    let mut region = Region::new(&GLOBAL);
    bytes.extend_from_slice(&[7; 4_096]);
    let change = region.change_and_reset();
    assert_eq!(change.allocations, 0, "{change:?}");
    assert!(change.reallocations >= 1, "{change:?}");
    assert!(change.net_bytes() >= 4_096 - 16, "{change:?}");
    bytes.truncate(16);
    bytes.shrink_to_fit();
    let change = region.change();
    assert!(
        change.net_bytes() < 0,
        "shrinking gives bytes back: {change:?}"
    );
    drop(black_box(bytes));
}

fn a_span_without_allocation_counts_nothing() {
    let region = Region::new(&GLOBAL);
    let sum: u64 = black_box((0..10_000_u64).sum());
    assert_eq!(sum, 49_995_000);
    let change = region.change();
    assert_eq!(change, Default::default(), "{change:?}");
}
