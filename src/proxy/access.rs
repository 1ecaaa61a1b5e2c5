//! The per-request record and the response body that emits it: the route's metrics and the
//! access line ([`crate::ops::accesslog`]) are written when the body is finished (or
//! abandoned), so they carry the bytes actually sent and the whole duration.

use std::net::IpAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{HeaderValue, Method};
use http_body::{Body, Frame, SizeHint};

use crate::ops::accesslog;
use crate::ops::metrics::RouteMetrics;

/// What is known about a request when its response head is ready. Its route (a prefix,
/// `endpoint:login`…, or `-`) is the label of its metric handles.
pub(crate) struct Record {
    pub started: Instant,
    pub request_id: HeaderValue,
    pub client_ip: IpAddr,
    pub method: Method,
    pub path: String,
    pub status: u16,
    pub upstream: Option<Duration>,
    pub openid: Option<String>,
    pub metrics: Arc<RouteMetrics>,
}

impl Record {
    fn finish(&self, bytes: u64, complete: bool) {
        let total = self.started.elapsed();
        self.metrics.record(self.status, total, bytes);
        if let Some(upstream) = self.upstream {
            self.metrics.upstream(upstream);
        }
        accesslog::write(self, total, bytes, complete);
    }
}

/// A response body that counts what it sends and logs the request when it ends.
pub(crate) struct Logged<B: Body> {
    inner: B,
    bytes: u64,
    record: Option<Box<Record>>,
}

impl<B: Body> Logged<B> {
    pub(crate) fn new(inner: B, record: Record) -> Self {
        Self {
            inner,
            bytes: 0,
            record: Some(Box::new(record)),
        }
    }

    fn finish(&mut self, complete: bool) {
        if let Some(record) = self.record.take() {
            record.finish(self.bytes, complete);
        }
    }
}

impl<B> Body for Logged<B>
where
    B: Body<Data = Bytes> + Unpin,
{
    type Data = Bytes;
    type Error = B::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        let polled = Pin::new(&mut self.inner).poll_frame(cx);
        match &polled {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(data) = frame.data_ref() {
                    self.bytes += data.len() as u64;
                }
                if self.inner.is_end_stream() {
                    self.finish(true);
                }
            }
            Poll::Ready(None) => self.finish(true),
            Poll::Ready(Some(Err(_))) => self.finish(false),
            Poll::Pending => {}
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

impl<B: Body> Drop for Logged<B> {
    fn drop(&mut self) {
        // An empty body may never be polled; a client may go away mid-body.
        let complete = self.inner.is_end_stream();
        self.finish(complete);
    }
}
