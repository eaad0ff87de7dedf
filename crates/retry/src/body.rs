//! [`ReplayBody`]: a request body that is buffered as it streams to the
//! first attempt, so that later attempts can send it again.

use std::fmt;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::task::{Context, Poll, Waker, ready};

use bytes::Bytes;
use http::HeaderMap;
use http_body::{Body, Frame, SizeHint};
use pin_project_lite::pin_project;
use portcullis_core::BoxError;

use crate::error::BodyNotReplayable;

pin_project! {
    /// The body that the inner service of an HTTP [`Retry`](crate::Retry)
    /// receives: `http::Request<ReplayBody<B>>` for a request of
    /// `http::Request<B>`.
    ///
    /// On the first attempt it streams the caller's body through, frame by
    /// frame, as fast as the inner service reads it — it never reads ahead —
    /// and keeps each data chunk (a reference-counted [`Bytes`], not a copy)
    /// and the trailers, up to the replay limit. Past the limit it drops
    /// what it kept, marks the request as not replayable and streams the
    /// rest through. On a later attempt it sends the same chunks and
    /// trailers again, then, if the first attempt had not read the whole
    /// body, the rest of the caller's body (kept too).
    ///
    /// A later attempt's body waits, when first polled, until the previous
    /// attempt's body has been read to its end or dropped: only one of them
    /// reads the caller's body at a time. Should it find the body not
    /// replayable after all (it outgrew the limit while the previous
    /// attempt still read it), it fails with [`BodyNotReplayable`].
    ///
    /// A request that is not retried (not idempotent, a known length over
    /// the limit, or `max_attempts` of 1) gets a plain pass-through.
    pub struct ReplayBody<B> {
        #[pin]
        kind: Kind<B>,
    }
}

pin_project! {
    #[project = KindProj]
    enum Kind<B> {
        Once {
            #[pin]
            body: B,
        },
        Tee {
            tee: Tee<B>,
        },
    }
}

/// One attempt's view of a replayable body.
struct Tee<B> {
    shared: Arc<Shared<B>>,
    /// Held while this body is the one that sends (and reads) the body.
    state: Option<State<B>>,
    /// The next buffered chunk to send.
    next: usize,
    trailers_sent: bool,
    done: bool,
}

/// What the attempts of one request share.
pub(crate) struct Shared<B> {
    slot: Mutex<Slot<B>>,
    unreplayable: AtomicBool,
    size_hint: SizeHint,
    end_stream: bool,
    limit: u64,
}

struct Slot<B> {
    state: Option<State<B>>,
    waiting: Option<Waker>,
}

struct State<B> {
    /// The part of the caller's body not read yet; `None` once it ended.
    rest: Option<Pin<Box<B>>>,
    chunks: Vec<Bytes>,
    len: u64,
    trailers: Option<HeaderMap>,
    unreplayable: bool,
}

impl<B> ReplayBody<B> {
    /// A body streamed through once, with nothing kept.
    pub(crate) fn once(body: B) -> Self {
        Self {
            kind: Kind::Once { body },
        }
    }
}

impl<B: Body> ReplayBody<B> {
    /// The first attempt's body, buffering up to `limit` bytes, and the
    /// state the later attempts replay from.
    pub(crate) fn tee(body: B, limit: u64) -> (Self, Arc<Shared<B>>) {
        let shared = Arc::new(Shared {
            slot: Mutex::new(Slot {
                state: None,
                waiting: None,
            }),
            unreplayable: AtomicBool::new(false),
            size_hint: body.size_hint(),
            end_stream: body.is_end_stream(),
            limit,
        });
        let state = State {
            rest: Some(Box::pin(body)),
            chunks: Vec::new(),
            len: 0,
            trailers: None,
            unreplayable: false,
        };
        let tee = Tee {
            shared: shared.clone(),
            state: Some(state),
            next: 0,
            trailers_sent: false,
            done: false,
        };
        (
            Self {
                kind: Kind::Tee { tee },
            },
            shared,
        )
    }

    /// A later attempt's body.
    pub(crate) fn replay(shared: Arc<Shared<B>>) -> Self {
        Self {
            kind: Kind::Tee {
                tee: Tee {
                    shared,
                    state: None,
                    next: 0,
                    trailers_sent: false,
                    done: false,
                },
            },
        }
    }
}

impl<B> Shared<B> {
    /// Whether the body outgrew the limit (or failed): later attempts
    /// cannot send it.
    pub(crate) fn is_unreplayable(&self) -> bool {
        self.unreplayable.load(Ordering::Acquire)
    }

    fn lock(&self) -> MutexGuard<'_, Slot<B>> {
        self.slot.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Hands the state over to the next attempt's body.
    fn release(&self, state: State<B>) {
        let waiting = {
            let mut slot = self.lock();
            slot.state = Some(state);
            slot.waiting.take()
        };
        if let Some(waker) = waiting {
            waker.wake();
        }
    }
}

impl<B> State<B> {
    fn give_up(&mut self, shared: &Shared<B>) {
        self.unreplayable = true;
        self.chunks = Vec::new();
        self.trailers = None;
        shared.unreplayable.store(true, Ordering::Release);
    }
}

impl<B> Body for ReplayBody<B>
where
    B: Body<Data = Bytes>,
    B::Error: Into<BoxError>,
{
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        match self.project().kind.project() {
            KindProj::Once { body } => body.poll_frame(cx).map_err(Into::into),
            KindProj::Tee { tee } => tee.poll_frame(cx),
        }
    }

    fn is_end_stream(&self) -> bool {
        match &self.kind {
            Kind::Once { body } => body.is_end_stream(),
            Kind::Tee { tee } => tee.is_end_stream(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match &self.kind {
            Kind::Once { body } => body.size_hint(),
            Kind::Tee { tee } => tee.size_hint(),
        }
    }
}

impl<B> Tee<B>
where
    B: Body<Data = Bytes>,
    B::Error: Into<BoxError>,
{
    fn poll_frame(&mut self, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        if self.done {
            return Poll::Ready(None);
        }
        if self.state.is_none() {
            let mut slot = self.shared.lock();
            match slot.state.take() {
                Some(state) if state.unreplayable => {
                    drop(slot);
                    self.done = true;
                    return Poll::Ready(Some(Err(BodyNotReplayable::new().into())));
                }
                Some(state) => self.state = Some(state),
                None => {
                    slot.waiting = Some(cx.waker().clone());
                    return Poll::Pending;
                }
            }
        }
        let shared = &*self.shared;
        let state = self.state.as_mut().expect("the state was just taken");

        if let Some(chunk) = state.chunks.get(self.next) {
            self.next += 1;
            return Poll::Ready(Some(Ok(Frame::data(chunk.clone()))));
        }
        if let Some(rest) = state.rest.as_mut() {
            match ready!(rest.as_mut().poll_frame(cx)) {
                Some(Ok(frame)) => {
                    if !state.unreplayable {
                        if let Some(data) = frame.data_ref() {
                            let len = state.len + data.len() as u64;
                            if len > shared.limit {
                                state.give_up(shared);
                            } else {
                                state.chunks.push(data.clone());
                                state.len = len;
                            }
                        } else if let Some(trailers) = frame.trailers_ref() {
                            state.trailers = Some(trailers.clone());
                        }
                    }
                    self.next = state.chunks.len();
                    self.trailers_sent |= frame.is_trailers();
                    return Poll::Ready(Some(Ok(frame)));
                }
                Some(Err(error)) => {
                    // A body that failed half way cannot be sent again.
                    state.rest = None;
                    state.give_up(shared);
                    self.finish();
                    return Poll::Ready(Some(Err(error.into())));
                }
                None => state.rest = None,
            }
        }
        if !self.trailers_sent {
            self.trailers_sent = true;
            if let Some(trailers) = &state.trailers {
                return Poll::Ready(Some(Ok(Frame::trailers(trailers.clone()))));
            }
        }
        self.finish();
        Poll::Ready(None)
    }
}

impl<B: Body> Tee<B> {
    /// Done sending: the next attempt may take over at once.
    fn finish(&mut self) {
        self.done = true;
        if let Some(state) = self.state.take() {
            self.shared.release(state);
        }
    }

    fn is_end_stream(&self) -> bool {
        if self.done {
            return true;
        }
        match &self.state {
            Some(state) => {
                self.next >= state.chunks.len()
                    && state.rest.as_ref().is_none_or(|rest| rest.is_end_stream())
                    && (self.trailers_sent || state.trailers.is_none())
            }
            None => self.shared.end_stream && !self.shared.is_unreplayable(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        let Some(state) = &self.state else {
            return self.shared.size_hint;
        };
        let buffered: u64 = state
            .chunks
            .get(self.next..)
            .unwrap_or_default()
            .iter()
            .map(|chunk| chunk.len() as u64)
            .sum();
        let mut hint = match &state.rest {
            Some(rest) => rest.size_hint(),
            None => SizeHint::with_exact(0),
        };
        hint.set_lower(hint.lower() + buffered);
        if let Some(upper) = hint.upper() {
            hint.set_upper(upper + buffered);
        }
        hint
    }
}

impl<B> Drop for Tee<B> {
    fn drop(&mut self) {
        if let Some(state) = self.state.take() {
            self.shared.release(state);
        }
    }
}

impl<B> fmt::Debug for ReplayBody<B> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.kind {
            Kind::Once { .. } => f.debug_struct("ReplayBody::Once").finish_non_exhaustive(),
            Kind::Tee { tee } => f
                .debug_struct("ReplayBody::Tee")
                .field("holds_body", &tee.state.is_some())
                .field("next_chunk", &tee.next)
                .field("done", &tee.done)
                .finish_non_exhaustive(),
        }
    }
}

impl<B> fmt::Debug for Shared<B> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Shared")
            .field("limit", &self.limit)
            .field("unreplayable", &self.is_unreplayable())
            .finish_non_exhaustive()
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;
    use http_body_util::{BodyExt, Full};

    /// A body of the given chunks and trailers, one frame per poll.
    struct Frames(std::collections::VecDeque<Frame<Bytes>>);

    impl Body for Frames {
        type Data = Bytes;
        type Error = BoxError;

        fn poll_frame(
            mut self: Pin<&mut Self>,
            _: &mut Context<'_>,
        ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
            Poll::Ready(self.0.pop_front().map(Ok))
        }
    }

    fn frames(chunks: &[&'static [u8]], trailers: Option<HeaderMap>) -> Frames {
        let mut frames: std::collections::VecDeque<_> = chunks
            .iter()
            .map(|c| Frame::data(Bytes::from_static(c)))
            .collect();
        frames.extend(trailers.map(Frame::trailers));
        Frames(frames)
    }

    fn trailers() -> HeaderMap {
        let mut trailers = HeaderMap::new();
        trailers.insert("checksum", "abc".parse().unwrap());
        trailers
    }

    #[tokio::test]
    async fn every_attempt_gets_the_same_chunks_and_trailers() {
        let (first, shared) =
            ReplayBody::tee(frames(&[b"hello ", b"world"], Some(trailers())), 1024);
        let collected = first.collect().await.unwrap();
        assert_eq!(collected.trailers(), Some(&trailers()));
        assert_eq!(collected.to_bytes(), "hello world");
        for _ in 0..2 {
            let replay = ReplayBody::replay(shared.clone());
            assert_eq!(
                replay.size_hint().exact(),
                None,
                "a stream has no exact length"
            );
            let collected = replay.collect().await.unwrap();
            assert_eq!(collected.trailers(), Some(&trailers()));
            assert_eq!(collected.to_bytes(), "hello world");
        }
        assert!(!shared.is_unreplayable());
    }

    #[tokio::test]
    async fn a_replay_finishes_what_the_first_attempt_did_not_read() {
        let (mut first, shared) = ReplayBody::tee(frames(&[b"a", b"b", b"c"], None), 1024);
        let frame = first.frame().await.unwrap().unwrap();
        assert_eq!(frame.into_data().unwrap(), "a");
        drop(first); // e.g. the server answered before reading the rest
        let replay = ReplayBody::replay(shared.clone());
        assert_eq!(replay.collect().await.unwrap().to_bytes(), "abc");
        let again = ReplayBody::replay(shared);
        assert_eq!(again.collect().await.unwrap().to_bytes(), "abc");
    }

    #[tokio::test]
    async fn past_the_limit_nothing_is_kept_and_replays_fail() {
        let (first, shared) = ReplayBody::tee(frames(&[b"0123", b"4567", b"89"], None), 8);
        assert_eq!(first.collect().await.unwrap().to_bytes(), "0123456789");
        assert!(shared.is_unreplayable());
        let state = shared
            .lock()
            .state
            .as_ref()
            .map(|s| (s.chunks.len(), s.len));
        assert_eq!(state, Some((0, 8)), "the kept chunks were dropped");
        let error = ReplayBody::replay(shared).collect().await.unwrap_err();
        assert!(error.is::<BodyNotReplayable>(), "{error}");
    }

    #[tokio::test]
    async fn a_replay_waits_for_the_previous_body() {
        let (mut first, shared) = ReplayBody::tee(Full::new(Bytes::from_static(b"xyz")), 1024);
        assert_eq!(first.size_hint().exact(), Some(3));
        let mut replay = ReplayBody::replay(shared.clone());
        assert_eq!(replay.size_hint().exact(), Some(3), "the original's length");
        let mut cx = Context::from_waker(Waker::noop());
        assert!(Pin::new(&mut replay).poll_frame(&mut cx).is_pending());
        let frame = first.frame().await.unwrap().unwrap();
        assert_eq!(frame.into_data().unwrap(), "xyz");
        assert!(first.frame().await.is_none());
        assert!(first.is_end_stream());
        // The first body ended, so the replay may go on, while `first` lives.
        assert_eq!(replay.collect().await.unwrap().to_bytes(), "xyz");
        drop(first);
    }
}
