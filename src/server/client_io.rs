//! The client's side of a connection as hyper sees it: the bytes read to choose the protocol
//! replayed first, and a write that waits too long on the client failed.

use std::future::Future;
use std::pin::Pin;
use std::task::{ready, Context, Poll};
use std::time::Duration;

use bytes::Bytes;

/// A client connection as hyper sees it. Bytes already read to choose the protocol are read
/// again first, and a write the client does not take for `write_timeout` (it stopped
/// reading) fails, which ends the connection and whatever it holds upstream.
pub(super) struct ClientIo<I> {
    head: Option<Bytes>,
    io: I,
    write_timeout: Duration,
    /// Armed while a write waits on the client.
    write_stall: Option<Pin<Box<tokio::time::Sleep>>>,
}

impl<I> ClientIo<I> {
    pub(super) fn new(io: I, head: Option<Bytes>, write_timeout: Duration) -> Self {
        Self {
            head,
            io,
            write_timeout,
            write_stall: None,
        }
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
        Pin::new(&mut self.io).poll_read(cx, buf)
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
        let polled = Pin::new(&mut this.io).poll_shutdown(cx);
        this.watch(cx, polled)
    }
}
