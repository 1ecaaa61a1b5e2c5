//! The client's side of a connection as hyper sees it: the bytes read to choose the protocol
//! (or left in a parked connection's buffer) replayed first, a write that waits too long on
//! the client failed, and an idle HTTP/1 connection's read ended so that it can be parked.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{ready, Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;
use tokio::time::{Instant, Sleep};

use super::park::{Exchanges, PARK_AFTER};

/// A client connection as hyper sees it. Bytes already read to choose the protocol are read
/// again first, and a write the client does not take for `write_timeout` (it stopped
/// reading) fails, which ends the connection and whatever it holds upstream.
pub(super) struct ClientIo<I> {
    head: Option<Bytes>,
    io: I,
    write_timeout: Duration,
    /// Armed while a write waits on the client.
    write_stall: Option<Pin<Box<tokio::time::Sleep>>>,
    /// HTTP/1 only: when to end hyper's read so that the connection is parked.
    parking: Option<Parking>,
}

/// An HTTP/1 connection's idle clock. A read that finds nothing while no request is in
/// flight arms it; a read that finds bytes, or a request, disarms it; when it runs out, the
/// read ends (hyper sees the client close, and hands the connection back) and the
/// connection is parked.
struct Parking {
    exchanges: Arc<Exchanges>,
    timer: Option<Pin<Box<Sleep>>>,
    armed: bool,
    /// The wait for the next request head: the requests started when it began, and when.
    waiting: Option<(u64, Instant)>,
    parked: bool,
}

impl Parking {
    /// A read found nothing: `Ready` (no bytes: the end of the stream) once the connection
    /// has been idle for [`PARK_AFTER`].
    fn idle(&mut self, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        if self.exchanges.busy() {
            self.armed = false;
            return Poll::Pending;
        }
        let started = self.exchanges.started();
        let new_wait = self.waiting.is_none_or(|(seen, _)| seen != started);
        // Otherwise the clock runs already, and only its timer is polled.
        if new_wait || !self.armed {
            let now = Instant::now();
            if new_wait {
                self.waiting = Some((started, now));
            }
            let at = now + PARK_AFTER;
            match &mut self.timer {
                Some(timer) => timer.as_mut().reset(at),
                None => self.timer = Some(Box::pin(tokio::time::sleep_until(at))),
            }
            self.armed = true;
        }
        if let Some(timer) = &mut self.timer {
            ready!(timer.as_mut().poll(cx));
        }
        self.armed = false;
        self.timer = None;
        self.parked = true;
        Poll::Ready(Ok(()))
    }
}

impl<I> ClientIo<I> {
    pub(super) fn new(io: I, head: Option<Bytes>, write_timeout: Duration) -> Self {
        Self {
            head,
            io,
            write_timeout,
            write_stall: None,
            parking: None,
        }
    }

    /// Lets this HTTP/1 connection be parked when idle; `exchanges` says when it is.
    pub(super) fn park_when_idle(&mut self, exchanges: Arc<Exchanges>) {
        self.parking = Some(Parking {
            exchanges,
            timer: None,
            armed: false,
            waiting: None,
            parked: false,
        });
    }

    /// Whether the read hyper saw end was ended here, to park the connection.
    pub(super) fn parked(&self) -> bool {
        self.parking.as_ref().is_some_and(|p| p.parked)
    }

    /// Back from parking: `left` (what hyper had read and not used) is read again first.
    pub(super) fn unpark(&mut self, left: &[u8]) {
        if let Some(parking) = &mut self.parking {
            parking.parked = false;
        }
        if !left.is_empty() {
            // Copied: the buffer it came from is hyper's 8 KiB one.
            self.head = Some(Bytes::copy_from_slice(left));
        }
    }

    /// The requests started and the moment when the present wait for a request head began.
    pub(super) fn waiting(&self) -> Option<(u64, Instant)> {
        self.parking.as_ref().and_then(|p| p.waiting)
    }

    /// Passes a write's outcome on; while the client takes nothing, the clock runs.
    fn watch<T>(
        &mut self,
        cx: &mut Context<'_>,
        polled: Poll<std::io::Result<T>>,
    ) -> Poll<std::io::Result<T>> {
        if polled.is_ready() {
            self.write_stall = None;
            return polled;
        }
        let timeout = self.write_timeout;
        let stall = self
            .write_stall
            .get_or_insert_with(|| Box::pin(tokio::time::sleep(timeout)));
        ready!(stall.as_mut().poll(cx));
        Poll::Ready(Err(std::io::Error::new(
            std::io::ErrorKind::TimedOut,
            "the client stopped reading",
        )))
    }
}

impl<I: hyper::rt::Read + Unpin> hyper::rt::Read for ClientIo<I> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        mut buf: hyper::rt::ReadBufCursor<'_>,
    ) -> Poll<std::io::Result<()>> {
        if let Some(mut head) = self.head.take() {
            let n = head.len().min(buf.remaining());
            buf.put_slice(&head.split_to(n));
            if !head.is_empty() {
                self.head = Some(head);
            }
            return Poll::Ready(Ok(()));
        }
        let this = self.get_mut();
        let polled = Pin::new(&mut this.io).poll_read(cx, buf);
        match (&mut this.parking, polled) {
            (Some(parking), Poll::Pending) => parking.idle(cx),
            (Some(parking), ready) => {
                parking.armed = false;
                ready
            }
            (None, polled) => polled,
        }
    }
}

impl<I: hyper::rt::Write + Unpin> hyper::rt::Write for ClientIo<I> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        let this = self.get_mut();
        let polled = Pin::new(&mut this.io).poll_write(cx, buf);
        this.watch(cx, polled)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        let this = self.get_mut();
        let polled = Pin::new(&mut this.io).poll_write_vectored(cx, bufs);
        this.watch(cx, polled)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        let this = self.get_mut();
        let polled = Pin::new(&mut this.io).poll_flush(cx);
        this.watch(cx, polled)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        let this = self.get_mut();
        // hyper closes what it thinks the client closed; a parked connection stays open.
        if this.parked() {
            return Poll::Ready(Ok(()));
        }
        let polled = Pin::new(&mut this.io).poll_shutdown(cx);
        this.watch(cx, polled)
    }
}

/// A socket that can say when the client has sent something, without reading it: how a
/// parked connection waits.
pub(super) trait Readable {
    fn poll_readable(&self, cx: &mut Context<'_>) -> Poll<std::io::Result<()>>;
}

impl Readable for TokioIo<TcpStream> {
    fn poll_readable(&self, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        self.inner().poll_read_ready(cx)
    }
}

/// A TLS stream is boxed: it holds rustls' connection state (over 1 KiB inline), and a
/// connection's task, which moves it from the handshake to hyper and back at each park,
/// would otherwise keep room for it several times over for the life of the connection.
impl Readable for TokioIo<Box<tokio_rustls::server::TlsStream<TcpStream>>> {
    fn poll_readable(&self, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        // rustls buffers nothing a read has not asked for, and the last read found nothing
        // to decrypt: the next record starts with new bytes on the socket.
        self.inner().get_ref().0.poll_read_ready(cx)
    }
}

impl<I: Readable> ClientIo<I> {
    /// Resolves when the client has sent something (or the socket failed).
    pub(super) async fn readable(&mut self) -> std::io::Result<()> {
        // By `&mut`: a shared reference would need the socket to be `Sync` to be sent.
        let io = &mut self.io;
        std::future::poll_fn(move |cx| io.poll_readable(cx)).await
    }
}
