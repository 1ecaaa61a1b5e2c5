//! Body types: responses are either gateway JSON or the upstream's stream; request bodies are
//! guarded by a size cap and a deadline, and their trailers never travel on.

use std::future::Future;
use std::pin::Pin;
use std::task::{ready, Context, Poll};

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use http_body_util::{BodyExt, Either, Full};
use hyper::body::Incoming;
use serde_json::{Map, Value};
use tokio::time::{Instant, Sleep};

use crate::error::GatewayError;

/// A response body: gateway-made bytes or the upstream's stream, without boxing.
pub(crate) type ResBody = Either<Full<Bytes>, crate::upstream::UpstreamBody>;

pub(crate) fn full(bytes: impl Into<Bytes>) -> ResBody {
    Either::Left(Full::new(bytes.into()))
}

pub(crate) fn empty() -> ResBody {
    Either::Left(Full::new(Bytes::new()))
}

#[derive(Debug, thiserror::Error)]
pub enum BodyError {
    #[error("request body exceeds the size limit")]
    TooLarge,
    #[error("request body was not received before the request deadline")]
    TimedOut,
    #[error("request body could not be read: {0}")]
    Client(#[from] hyper::Error),
}

impl From<BodyError> for GatewayError {
    fn from(e: BodyError) -> Self {
        match e {
            BodyError::TooLarge => GatewayError::PayloadTooLarge,
            BodyError::TimedOut => GatewayError::RequestTimeout,
            BodyError::Client(_) => {
                GatewayError::InvalidRequest("the request body could not be read")
            }
        }
    }
}

/// The client's request body with a byte cap and a deadline. Trailers are dropped: they must
/// never be merged into headers, and wxgate re-frames what it sends upstream anyway.
pub struct GuardedBody {
    /// `None` for an empty body (a request rebuilt to retry on another upstream).
    inner: Option<Incoming>,
    remaining: u64,
    deadline: Instant,
    timer: Option<Pin<Box<Sleep>>>,
}

impl GuardedBody {
    pub fn new(inner: Incoming, limit: u64, deadline: Instant) -> Self {
        Self {
            inner: Some(inner),
            remaining: limit,
            deadline,
            timer: None,
        }
    }

    /// A body with nothing in it.
    pub fn empty() -> Self {
        Self {
            inner: None,
            remaining: 0,
            deadline: Instant::now() + std::time::Duration::from_secs(3600),
            timer: None,
        }
    }

    /// When the client must have sent the whole body.
    pub fn deadline(&self) -> Instant {
        self.deadline
    }

    /// Reads the whole body (for gateway endpoints, whose bodies are small).
    pub async fn collect_bytes(self) -> Result<Bytes, GatewayError> {
        match self.collect().await {
            Ok(collected) => Ok(collected.to_bytes()),
            Err(e) => Err(e.into()),
        }
    }

    /// Reads the whole body as a JSON object (gateway and admin endpoints take no other
    /// shape); anything else is `invalid_request`.
    pub async fn collect_json_object(self) -> Result<Map<String, Value>, GatewayError> {
        match serde_json::from_slice::<Value>(&self.collect_bytes().await?) {
            Ok(Value::Object(map)) => Ok(map),
            _ => Err(GatewayError::InvalidRequest(
                "the body must be a JSON object",
            )),
        }
    }
}

fn poll_deadline(
    timer: &mut Option<Pin<Box<Sleep>>>,
    deadline: Instant,
    cx: &mut Context<'_>,
) -> Poll<()> {
    let timer = timer.get_or_insert_with(|| Box::pin(tokio::time::sleep_until(deadline)));
    timer.as_mut().poll(cx)
}

impl Body for GuardedBody {
    type Data = Bytes;
    type Error = BodyError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BodyError>>> {
        let this = &mut *self;
        let Some(inner) = this.inner.as_mut() else {
            return Poll::Ready(None);
        };
        loop {
            // A client that drips bytes is always "ready" when polled, so the deadline is
            // checked on every frame, not only while waiting.
            if Instant::now() >= this.deadline {
                return Poll::Ready(Some(Err(BodyError::TimedOut)));
            }
            match Pin::new(&mut *inner).poll_frame(cx) {
                Poll::Pending => {
                    ready!(poll_deadline(&mut this.timer, this.deadline, cx));
                    return Poll::Ready(Some(Err(BodyError::TimedOut)));
                }
                Poll::Ready(None) => return Poll::Ready(None),
                Poll::Ready(Some(Err(e))) => return Poll::Ready(Some(Err(e.into()))),
                Poll::Ready(Some(Ok(frame))) => match frame.into_data() {
                    Ok(data) => {
                        let len = data.len() as u64;
                        if len > this.remaining {
                            return Poll::Ready(Some(Err(BodyError::TooLarge)));
                        }
                        this.remaining -= len;
                        return Poll::Ready(Some(Ok(Frame::data(data))));
                    }
                    // Trailers (or unknown frames) are dropped; keep reading to the end.
                    Err(_) => continue,
                },
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.as_ref().is_none_or(Body::is_end_stream)
    }

    fn size_hint(&self) -> SizeHint {
        self.inner
            .as_ref()
            .map_or_else(|| SizeHint::with_exact(0), Body::size_hint)
    }
}
