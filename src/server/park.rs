//! Idle HTTP/1 keep-alive connections, parked. hyper keeps an 8 KiB read buffer and a write
//! buffer for every connection for as long as it lives, busy or not, and most of a
//! mini-program's connections are idle most of the time. A connection that has had no
//! request in flight and no byte from its client for [`PARK_AFTER`] is handed back by hyper
//! (its read ends, as if the client had closed; see [`ClientIo`](super::client_io)), which
//! frees hyper's state and buffers; only the socket and the service are kept. The next byte
//! from the client makes a new hyper connection, which reads first whatever the old one had
//! buffered.
//!
//! hyper's `header_read_timeout` (the idle limit, and the slowloris guard) would start again
//! with each new hyper connection, so the wait for a request head is also measured across
//! parks, from the first read that found nothing after the last request began, and the
//! connection is closed when it passes the limit, parked or not.

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response};
use http_body::{Body, Frame, SizeHint};
use hyper::body::Incoming;
use hyper::service::service_fn;
use pin_project_lite::pin_project;
use tokio::sync::watch;
use tokio::time::Instant;

use super::client_io::{ClientIo, Readable};
use super::Protocols;

/// How long a connection with nothing in flight waits for its client before it is parked.
/// Short enough that a connection left open by an app in the background soon costs next to
/// nothing; long enough that a client sending requests one after another never parks
/// between them (making a new hyper connection costs about a request's worth of work).
pub(super) const PARK_AFTER: Duration = Duration::from_secs(1);

/// The requests of one HTTP/1 connection: how many have started, and how many are in
/// flight (from the service's call until hyper drops the response body, which it does
/// once the body has been written).
#[derive(Default)]
pub(super) struct Exchanges {
    started: AtomicU64,
    active: AtomicUsize,
    /// Set by a `101 Switching Protocols` answer: the socket is a tunnel's from then on,
    /// and a tunnel's quiet is not idleness.
    switched: AtomicBool,
}

impl Exchanges {
    /// The number of requests started so far.
    pub(super) fn started(&self) -> u64 {
        self.started.load(Ordering::Relaxed)
    }

    /// Whether a request is being served (its body may still be read, its response still
    /// written) or the connection was upgraded: either way it must not be parked.
    pub(super) fn busy(&self) -> bool {
        self.active.load(Ordering::Relaxed) > 0 || self.switched.load(Ordering::Relaxed)
    }

    /// Counts a request whose service call has begun; the guard counts it out when dropped
    /// (with its response body, or with the service future if that is dropped first).
    pub(super) fn begin(self: &Arc<Self>) -> InFlight {
        InFlight::new(self.clone())
    }
}

/// One request in flight.
pub(super) struct InFlight(Arc<Exchanges>);

impl InFlight {
    fn new(exchanges: Arc<Exchanges>) -> Self {
        exchanges.started.fetch_add(1, Ordering::Relaxed);
        exchanges.active.fetch_add(1, Ordering::Relaxed);
        Self(exchanges)
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.active.fetch_sub(1, Ordering::Relaxed);
    }
}

pin_project! {
    /// A response body that keeps its request counted in flight until hyper drops it.
    pub(super) struct Tracked<B> {
        #[pin]
        body: B,
        _guard: InFlight,
    }
}

impl<B> Tracked<B> {
    /// `body`, counted in flight by `guard` (taken when the service was called) until dropped.
    pub(super) fn new(body: B, guard: InFlight) -> Self {
        Self {
            body,
            _guard: guard,
        }
    }
}

impl<B: Body> Body for Tracked<B> {
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        self.project().body.poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}

/// Serves one HTTP/1 connection until it ends, parking it whenever it idles: hyper's
/// connection (boxed, so that a parked connection's task does not keep room for it) ends,
/// the socket waits for its client, and a new hyper connection takes over with the same
/// service. Once the drain begins, hyper finishes the request in flight and closes; a parked
/// connection closes at once.
pub(super) async fn serve_http1<I, S, F, B>(
    protocols: Arc<Protocols>,
    mut io: ClientIo<I>,
    service: S,
    mut drain: watch::Receiver<()>,
    peer: SocketAddr,
) where
    I: hyper::rt::Read + hyper::rt::Write + Readable + Unpin + Send + 'static,
    S: Fn(Request<Incoming>) -> F + Send + Sync + 'static,
    F: Future<Output = Result<Response<B>, Infallible>> + Send + 'static,
    B: Body<Data = Bytes> + Send + 'static,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let exchanges = Arc::new(Exchanges::default());
    io.park_when_idle(exchanges.clone());
    let mut service = {
        let exchanges = exchanges.clone();
        service_fn(move |request| {
            let guard = exchanges.begin();
            let response = service(request);
            let exchanges = exchanges.clone();
            async move {
                let response = response.await?;
                if response.status() == http::StatusCode::SWITCHING_PROTOCOLS {
                    exchanges.switched.store(true, Ordering::Relaxed);
                }
                Ok::<_, Infallible>(response.map(|b| Tracked::new(b, guard)))
            }
        })
    };
    let limit = protocols.http1_idle;
    // After a park: the wait for a request head that began before it, and when it must end.
    let mut deadline: Option<(u64, Instant)> = None;
    loop {
        let mut connection = Box::new(
            protocols
                .http1
                .serve_connection(io, service)
                .with_upgrades(),
        );
        let ended = loop {
            tokio::select! {
                ended = Pin::new(&mut *connection) => break ended,
                _ = drain.changed() => {
                    Pin::new(&mut *connection).graceful_shutdown();
                    break Pin::new(&mut *connection).await;
                }
                () = sleep_until(deadline), if deadline.is_some() => {
                    if deadline.is_some_and(|(started, _)| started == exchanges.started()) {
                        tracing::debug!(%peer, "no request head within header_read_timeout");
                        return;
                    }
                    deadline = None;
                }
            }
        };
        // The box is freed here, before the connection parks: a box that has been moved out
        // of is freed only at the end of its scope, which would keep hyper's connection state
        // (about 1 KiB) allocated for as long as the connection stays parked.
        let parts = {
            let boxed = connection;
            (*boxed).into_parts()
        };
        // None: upgraded, the connection is the tunnel's now.
        let Some(parts) = parts else {
            return report(ended, peer);
        };
        if !parts.io.parked() {
            return report(ended, peer);
        }
        // hyper saw the end of the stream; an error only says it held part of a head, which
        // `read_buf` has and the next connection reads first.
        (io, service) = (parts.io, parts.service);
        io.unpark(&parts.read_buf);
        drop(parts.read_buf);
        deadline = io
            .waiting()
            .map(|(started, since)| (started, since + limit));
        let _parked = crate::ops::metrics::connection_parked();
        tokio::select! {
            ready = io.readable() => {
                if ready.is_err() {
                    return;
                }
            }
            () = sleep_until(deadline) => {
                tracing::debug!(%peer, "idle past header_read_timeout: closed");
                return;
            }
            _ = drain.changed() => return,
        }
    }
}

/// Sleeps until the deadline, or for ever without one.
async fn sleep_until(deadline: Option<(u64, Instant)>) {
    match deadline {
        Some((_, at)) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

fn report(ended: hyper::Result<()>, peer: SocketAddr) {
    if let Err(e) = ended {
        tracing::debug!(error = %e, %peer, "connection ended with an error");
    }
}
