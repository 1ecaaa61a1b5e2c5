//! HTTP/2 responses held up by the client's flow control. A client that opens no window on a
//! stream (`SETTINGS_INITIAL_WINDOW_SIZE = 0`, never a `WINDOW_UPDATE`) takes no data, yet no
//! write ever waits: the socket is idle, so the write timeout that disconnects an HTTP/1
//! client that stops reading never fires, and each such stream would hold its upstream
//! connection for as long as the client likes. This sees those waits, so the connection can
//! be closed after `server.request_timeout` like an HTTP/1 one.
//!
//! hyper asks a response body for its next chunk only after handing the previous one to h2,
//! and it hands a chunk over only when the client's window has room. So the time since a
//! body last gave a chunk, while hyper has not come back for more, is how long the client
//! has refused that stream's data (or the whole connection's, or stopped reading).

use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::Buf;
use http_body::{Body, Frame, SizeHint};
use pin_project_lite::pin_project;

/// The response bodies in flight on one HTTP/2 connection, one slot each.
#[derive(Default)]
pub(super) struct Stalls {
    slots: Mutex<Slots>,
}

#[derive(Default)]
struct Slots {
    /// Since when each slot's body has held a chunk hyper could not send; `None` while it
    /// holds none (and for free slots).
    held_since: Vec<Option<Instant>>,
    free: Vec<usize>,
}

impl Stalls {
    /// `body`, with its waits on the client recorded here until it is dropped.
    pub(super) fn watch<B>(self: &Arc<Self>, body: B) -> Watched<B> {
        let slot = self.with(|slots| match slots.free.pop() {
            Some(slot) => slot,
            None => {
                slots.held_since.push(None);
                slots.held_since.len() - 1
            }
        });
        Watched {
            body,
            stalls: self.clone(),
            slot,
            holding: false,
        }
    }

    /// The longest time any response has been waiting for the client to take a chunk.
    pub(super) fn longest(&self, now: Instant) -> Duration {
        self.with(|slots| {
            let waits = slots.held_since.iter().flatten();
            waits
                .map(|since| now.saturating_duration_since(*since))
                .max()
                .unwrap_or_default()
        })
    }

    fn set(&self, slot: usize, since: Option<Instant>) {
        self.with(|slots| slots.held_since[slot] = since);
    }

    fn release(&self, slot: usize) {
        self.with(|slots| {
            slots.held_since[slot] = None;
            slots.free.push(slot);
        });
    }

    /// The slots, locked. A panic while they were locked leaves them consistent (every
    /// change is one assignment or push), so a poisoned lock is used as it is.
    fn with<T>(&self, f: impl FnOnce(&mut Slots) -> T) -> T {
        f(&mut self.slots.lock().unwrap_or_else(PoisonError::into_inner))
    }
}

pin_project! {
    /// A response body whose waits on the client are recorded in its connection's [`Stalls`].
    pub(super) struct Watched<B> {
        #[pin]
        body: B,
        stalls: Arc<Stalls>,
        slot: usize,
        holding: bool,
    }

    impl<B> PinnedDrop for Watched<B> {
        fn drop(this: Pin<&mut Self>) {
            let this = this.project();
            this.stalls.release(*this.slot);
        }
    }
}

impl<B: Body> Body for Watched<B> {
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        let this = self.project();
        // Asked again: the chunk given last has been sent.
        if *this.holding {
            this.stalls.set(*this.slot, None);
            *this.holding = false;
        }
        let polled = this.body.poll_frame(cx);
        if let Poll::Ready(Some(Ok(frame))) = &polled {
            // An empty chunk needs no window: hyper sends it at once.
            if frame.data_ref().is_some_and(Buf::has_remaining) {
                this.stalls.set(*this.slot, Some(Instant::now()));
                *this.holding = true;
            }
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::{BodyExt, Full};

    #[tokio::test]
    async fn a_chunk_counts_as_waiting_until_the_body_is_asked_again_or_dropped() {
        let stalls = Arc::new(Stalls::default());
        let mut body = stalls.watch(Full::new(bytes::Bytes::from_static(b"chunk")));
        assert_eq!(stalls.longest(Instant::now()), Duration::ZERO);
        let chunk = body.frame().await;
        assert!(chunk.is_some_and(|f| f.is_ok_and(|f| f.is_data())));
        let later = Instant::now() + Duration::from_secs(5);
        assert!(stalls.longest(later) >= Duration::from_secs(5));
        assert!(body.frame().await.is_none(), "the body has ended");
        assert_eq!(stalls.longest(later), Duration::ZERO, "asked again: sent");

        let mut held = stalls.watch(Full::new(bytes::Bytes::from_static(b"last")));
        let _ = held.frame().await;
        assert!(stalls.longest(later) > Duration::ZERO);
        drop(held);
        assert_eq!(stalls.longest(later), Duration::ZERO, "dropped: no wait");
        drop(body);
        let slots = stalls.with(|slots| (slots.held_since.len(), slots.free.len()));
        assert_eq!(slots, (2, 2), "both slots are free for reuse");
    }
}
