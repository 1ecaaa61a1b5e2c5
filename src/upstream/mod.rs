//! The upstream HTTP/1.1 client: keep-alive connections pooled per target, driven inline by
//! the task serving the client's request.
//!
//! Why not hyper's client: a general client gives every connection its own task and hands
//! each request and response across channels; a proxy that sends one request at a time per
//! connection pays for that on every request. Here the request head is written, the
//! response head read and parsed (httparse, as hyper does) in the request's own task; a
//! small body that arrived with the head is answered whole and the connection goes back to
//! the pool at once.
//!
//! | part | file |
//! |---|---|
//! | idle connections per target, connect, liveness | `pool` |
//! | the request head and body framing, written upstream | `request` |
//! | the response head: parsing, framing, keep-alive | `response` |
//! | the response body: length, chunked and to-EOF decoding, upgrades | `body` |

mod body;
mod pool;
mod request;
mod response;
// The parser and decoders without a socket, for `fuzz/`; the gateway never calls it.
#[doc(hidden)]
pub(crate) mod wire;

use std::io;
use std::sync::Arc;

use http::{Method, Response};
use http_body::Body;

use crate::body::{BodyError, GuardedBody};
use request::{encode_head, request_framing, valid_target, write_request, Framing, Sent};
use response::{read_head_within, Parsed};

pub(crate) use body::{Switched, UpstreamBody};
pub(crate) use pool::Pool;
pub(crate) use request::{idempotent, Outgoing};

/// What went wrong talking to an upstream.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("connect: {0}")]
    Connect(io::Error),
    #[error("connect: timed out")]
    ConnectTimeout,
    /// The client's request body failed (too large, too slow, broken).
    #[error("request body: {0}")]
    Body(#[from] BodyError),
    #[error("{0}")]
    Io(io::Error),
    #[error("the upstream closed the connection before answering")]
    Closed,
    /// No response head within `response_timeout` of the request being sent, or the
    /// upstream stopped taking the request for that long past the client's deadline.
    #[error("timed out")]
    Timeout,
    #[error("invalid response: {0}")]
    Protocol(&'static str),
}

impl Error {
    /// No connection could be made: the target is down, not this request's fault.
    pub(crate) fn is_connect(&self) -> bool {
        matches!(self, Error::Connect(_) | Error::ConnectTimeout)
    }
}

/// Sends `request` to the pool's target and reads the response head. `target` is the path
/// and query in two parts, written one after the other: the target's base path, then the
/// request's. A pooled connection that turns out closed before any answer is replaced by
/// a new one when the request can be sent again (no body, idempotent method).
pub(crate) async fn send(
    pool: &Arc<Pool>,
    request: &Outgoing,
    mut body: GuardedBody,
    target: [&str; 2],
) -> Result<Response<UpstreamBody>, Error> {
    if !valid_target(target) {
        return Err(Error::Protocol(
            "the request target is not valid on a request line",
        ));
    }
    let method = &request.method;
    let framing = request_framing(method, request.had_length, &body);
    let mut head = Vec::with_capacity(64 + target[0].len() + target[1].len() + request.lines.len());
    encode_head(
        &mut head,
        method,
        target,
        &pool.host_header,
        &request.lines,
        framing,
    );
    let replayable = matches!(framing, Framing::None | Framing::Length(0)) && idempotent(method);
    let head_only = method == Method::HEAD;
    let wait = pool.stall_timeout;
    // Sending is bounded by the client's deadline, which the body enforces itself (408:
    // the client was slow). An upstream that stops taking the request gets `wait` more.
    let send_deadline = body.deadline() + wait;
    let mut reused = pool.checkout();
    loop {
        let fresh = reused.is_none();
        let mut conn = match reused.take() {
            Some(conn) => conn,
            None => pool.connect().await?,
        };
        let sending = write_request(&mut conn, &head, &mut body, framing);
        let sent = tokio::time::timeout_at(send_deadline, sending)
            .await
            .unwrap_or(Err(Error::Timeout));
        // `response_timeout` runs from here: the upstream cannot answer a request it has
        // not received, so a slow client's body never counts against the upstream.
        let answer = match sent {
            Ok(Sent::Whole) => read_head_within(&mut conn, head_only, wait).await,
            // An upstream may answer (413, 401...) before the body is all sent, and stop
            // reading: its answer is the answer, on a connection not reused.
            Ok(Sent::Interrupted) => read_head_within(&mut conn, head_only, wait)
                .await
                .map(Parsed::closing),
            Err(Error::Io(e)) if !body.is_end_stream() => {
                match read_head_within(&mut conn, head_only, wait).await {
                    Ok(parsed) => Ok(parsed.closing()),
                    Err(_) => Err(Error::Io(e)),
                }
            }
            Err(e) => Err(e),
        };
        match answer {
            Ok(parsed) => return Ok(parsed.into_response(conn, pool)),
            Err(Error::Closed | Error::Io(_)) if !fresh && replayable => {
                // The pooled connection was closed under us; a new one gets the request.
                continue;
            }
            Err(e) => return Err(e),
        }
    }
}
