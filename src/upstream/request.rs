//! The request upstream: its head (request line, `Host`, the prepared header lines and
//! wxgate's own framing header) and its body, written while listening for an early answer.

use std::pin::Pin;
use std::task::Poll;

use http::header::HeaderValue;
use http::Method;
use http_body::Body;
use tokio::io::AsyncWriteExt;

use super::pool::UpstreamConn;
use super::Error;
use crate::body::GuardedBody;

/// Request body frames up to this size in all are written together with the head.
const COALESCE_BYTES: usize = 16 * 1024;

/// The request as it goes upstream, less what each attempt fills in (the target and
/// `Host`): the method and the header lines, encoded once.
pub struct Outgoing {
    pub method: Method,
    /// `name: value\r\n` lines: the client's headers that may pass, then wxgate's own.
    /// Never `Host`, `Content-Length` or `Transfer-Encoding`: [`super::send`] writes those
    /// for each attempt (the target's authority, and the body's framing).
    pub lines: Vec<u8>,
    /// The client sent a `Content-Length` (so a bodiless request says `0` upstream too).
    pub had_length: bool,
}

/// Methods whose repetition has no further effect (RFC 9110 9.2.2).
pub(crate) fn idempotent(method: &Method) -> bool {
    matches!(
        *method,
        Method::GET | Method::HEAD | Method::OPTIONS | Method::PUT | Method::DELETE | Method::TRACE
    )
}

/// How the request body is framed upstream.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(super) enum Framing {
    None,
    Length(u64),
    Chunked,
}

pub(super) fn request_framing(method: &Method, had_length: bool, body: &GuardedBody) -> Framing {
    if body.is_end_stream() {
        // A request that carries no body but whose method usually does says so explicitly.
        let expects_body = matches!(*method, Method::POST | Method::PUT | Method::PATCH);
        return if expects_body || had_length {
            Framing::Length(0)
        } else {
            Framing::None
        };
    }
    match body.size_hint().exact() {
        Some(n) => Framing::Length(n),
        None => Framing::Chunked,
    }
}

/// The request line, `Host`, the header lines and the framing header (`Content-Length` or
/// `Transfer-Encoding`, from `framing`: never copied from the client).
pub(super) fn encode_head(
    out: &mut Vec<u8>,
    method: &Method,
    target: [&str; 2],
    host: &HeaderValue,
    lines: &[u8],
    framing: Framing,
) {
    out.extend_from_slice(method.as_str().as_bytes());
    out.push(b' ');
    for part in target {
        out.extend_from_slice(part.as_bytes());
    }
    out.extend_from_slice(b" HTTP/1.1\r\nhost: ");
    out.extend_from_slice(host.as_bytes());
    out.extend_from_slice(b"\r\n");
    out.extend_from_slice(lines);
    match framing {
        Framing::None => {}
        Framing::Length(n) => {
            out.extend_from_slice(b"content-length: ");
            out.extend_from_slice(itoa::Buffer::new().format(n).as_bytes());
            out.extend_from_slice(b"\r\n");
        }
        Framing::Chunked => out.extend_from_slice(b"transfer-encoding: chunked\r\n"),
    }
    out.extend_from_slice(b"\r\n");
}

/// A request target is sent as is: it must not break the request line.
pub(super) fn valid_target(target: [&str; 2]) -> bool {
    let [first, rest] = target;
    (first.starts_with('/') || first.is_empty() && rest.starts_with('/'))
        && target
            .iter()
            .all(|part| part.bytes().all(|b| b > b' ' && b != 0x7f))
}

/// How far a request got upstream.
pub(super) enum Sent {
    Whole,
    /// The upstream said something before the body was all sent.
    Interrupted,
}

pub(super) async fn write_request(
    conn: &mut UpstreamConn,
    head: &[u8],
    body: &mut GuardedBody,
    framing: Framing,
) -> Result<Sent, Error> {
    if matches!(framing, Framing::None | Framing::Length(0)) {
        conn.io.write_all(head).await.map_err(Error::Io)?;
        return Ok(Sent::Whole);
    }
    let mut pending = Vec::with_capacity(head.len());
    pending.extend_from_slice(head);
    let chunked = framing == Framing::Chunked;
    // Whatever the body has ready now goes out with the head, in one write.
    loop {
        let frame = std::future::poll_fn(|cx| match Pin::new(&mut *body).poll_frame(cx) {
            Poll::Ready(frame) => Poll::Ready(Some(frame)),
            Poll::Pending => Poll::Ready(None),
        })
        .await;
        match frame {
            None => break,
            Some(None) => {
                if chunked {
                    pending.extend_from_slice(b"0\r\n\r\n");
                }
                conn.io.write_all(&pending).await.map_err(Error::Io)?;
                return Ok(Sent::Whole);
            }
            Some(Some(frame)) => {
                let data = frame?.into_data().unwrap_or_default();
                put_data(&mut pending, &data, chunked);
                if pending.len() >= COALESCE_BYTES {
                    break;
                }
            }
        }
    }
    conn.io.write_all(&pending).await.map_err(Error::Io)?;
    let mut probe = [0u8; 1];
    loop {
        // While the client's body trickles in, the upstream may already answer.
        let frame = tokio::select! {
            biased;
            frame = std::future::poll_fn(|cx| Pin::new(&mut *body).poll_frame(cx)) => frame,
            _ = conn.io.peek(&mut probe) => return Ok(Sent::Interrupted),
        };
        let Some(frame) = frame else { break };
        let data = frame?.into_data().unwrap_or_default();
        if data.is_empty() {
            continue;
        }
        if chunked {
            pending.clear();
            put_data(&mut pending, &data, true);
            conn.io.write_all(&pending).await.map_err(Error::Io)?;
        } else {
            conn.io.write_all(&data).await.map_err(Error::Io)?;
        }
    }
    if chunked {
        conn.io.write_all(b"0\r\n\r\n").await.map_err(Error::Io)?;
    }
    Ok(Sent::Whole)
}

fn put_data(out: &mut Vec<u8>, data: &[u8], chunked: bool) {
    if data.is_empty() {
        return;
    }
    if chunked {
        use std::io::Write;
        let _ = write!(out, "{:x}\r\n", data.len());
        out.extend_from_slice(data);
        out.extend_from_slice(b"\r\n");
    } else {
        out.extend_from_slice(data);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_heads_carry_wxgate_framing_only() {
        let mut out = Vec::new();
        encode_head(
            &mut out,
            &Method::POST,
            ["/base", "/a?b=1"],
            &HeaderValue::from_static("up:8080"),
            b"x-openid: o1\r\n",
            Framing::Length(3),
        );
        assert_eq!(
            String::from_utf8_lossy(&out),
            "POST /base/a?b=1 HTTP/1.1\r\nhost: up:8080\r\nx-openid: o1\r\ncontent-length: 3\r\n\r\n"
        );
        assert!(valid_target(["", "/a?b=1"]));
        assert!(valid_target(["/base", "/a?b=1"]));
        assert!(!valid_target(["", "/a b"]));
        assert!(!valid_target(["/base", "/a\r\nx: y"]));
        assert!(!valid_target(["/b c", "/a"]));
        assert!(!valid_target(["", "a"]));
    }
}
