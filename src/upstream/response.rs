//! The response head: read until a final answer, parsed with httparse, and its body's
//! framing and the connection's reuse decided as RFC 9112 6.3 says.

use std::sync::Arc;
use std::time::Duration;

use bytes::BytesMut;
use http::header::{HeaderMap, HeaderName, HeaderValue, CONNECTION, CONTENT_LENGTH};
use http::{Response, StatusCode, Version};

use super::body::{Chunk, Decoder, State, Streaming, UpstreamBody};
use super::pool::{Pool, UpstreamConn};
use super::Error;

/// The most a response head may take (status line and headers).
const MAX_HEAD_BYTES: usize = 64 * 1024;
/// The most headers a response may carry.
const MAX_HEADERS: usize = 128;

/// How the response body is delimited (RFC 9112 6.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum BodyKind {
    Empty,
    Length(u64),
    Chunked,
    /// Until the upstream closes the connection.
    Eof,
}

pub(super) struct Parsed {
    pub(super) status: StatusCode,
    pub(super) version: Version,
    pub(super) headers: HeaderMap,
    pub(super) kind: BodyKind,
    pub(super) keep_alive: bool,
}

/// [`read_head`], given `wait` to finish.
pub(super) async fn read_head_within(
    conn: &mut UpstreamConn,
    head_only: bool,
    wait: Duration,
) -> Result<Parsed, Error> {
    tokio::time::timeout(wait, read_head(conn, head_only))
        .await
        .unwrap_or(Err(Error::Timeout))
}

/// Reads until a final (non-1xx, or 101) response head has arrived.
pub(super) async fn read_head(conn: &mut UpstreamConn, head_only: bool) -> Result<Parsed, Error> {
    let mut any = false;
    loop {
        if !conn.buf.is_empty() {
            any = true;
            if let Some(parsed) = final_head(&mut conn.buf, head_only)? {
                return Ok(parsed);
            }
        }
        match conn.fill().await {
            Ok(0) if any => {
                return Err(Error::Protocol(
                    "connection closed inside the response head",
                ))
            }
            Ok(0) => return Err(Error::Closed),
            Ok(_) => {}
            Err(e) if !any => return Err(Error::Io(e)),
            Err(_) => {
                return Err(Error::Protocol(
                    "connection failed inside the response head",
                ))
            }
        }
    }
}

/// What [`read_head`] makes of the bytes that have arrived: the final head (1xx answers
/// other than 101 are consumed and dropped), or `None` while it is still incomplete.
pub(super) fn final_head(buf: &mut BytesMut, head_only: bool) -> Result<Option<Parsed>, Error> {
    loop {
        match parse_head(buf, head_only)? {
            Some(parsed) if parsed.status.is_informational() && parsed.status != 101 => {}
            Some(parsed) => return Ok(Some(parsed)),
            None if buf.len() > MAX_HEAD_BYTES => {
                return Err(Error::Protocol("response head too large"))
            }
            None => return Ok(None),
        }
    }
}

/// Parses a complete response head at the start of `buf` and removes it; `None` while it is
/// incomplete. Header values share the head's memory, as hyper's do.
pub(super) fn parse_head(buf: &mut BytesMut, head_only: bool) -> Result<Option<Parsed>, Error> {
    // Uninitialised slots: httparse fills only as many as the head has.
    let mut slots =
        [const { std::mem::MaybeUninit::<httparse::Header<'_>>::uninit() }; MAX_HEADERS];
    let mut response = httparse::Response::new(&mut []);
    let parsed = httparse::ParserConfig::default().parse_response_with_uninit_headers(
        &mut response,
        buf,
        &mut slots,
    );
    let len = match parsed {
        // Refused however it arrived: in one read it would parse, in several it would not.
        Ok(httparse::Status::Complete(len)) if len > MAX_HEAD_BYTES => {
            return Err(Error::Protocol("response head too large"))
        }
        Ok(httparse::Status::Complete(len)) => len,
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(httparse::Error::TooManyHeaders) => {
            return Err(Error::Protocol("too many response headers"))
        }
        Err(_) => return Err(Error::Protocol("malformed response head")),
    };
    let status = response
        .code
        .and_then(|c| StatusCode::from_u16(c).ok())
        .ok_or(Error::Protocol("bad status code"))?;
    let version = if response.version == Some(0) {
        Version::HTTP_10
    } else {
        Version::HTTP_11
    };
    // Names are parsed and checked while the head is borrowed; values become slices of the
    // head once it is split off (no allocation per value). One spare slot is for the
    // `X-Request-Id` the gateway adds to every response.
    let mut headers = HeaderMap::with_capacity(response.headers.len() + 1);
    let base = buf.as_ptr() as usize;
    let mut values = Vec::with_capacity(response.headers.len());
    // Whether the headers framing looks up are there at all (most answers have neither).
    let (mut coded, mut connection) = (false, false);
    for header in response.headers.iter() {
        let name = HeaderName::from_bytes(header.name.as_bytes())
            .map_err(|_| Error::Protocol("bad header name"))?;
        coded |= name == http::header::TRANSFER_ENCODING;
        connection |= name == CONNECTION;
        let start = header.value.as_ptr() as usize - base;
        values.push((name, start, start + header.value.len()));
    }
    let head = buf.split_to(len).freeze();
    for (name, start, end) in values {
        let value = HeaderValue::from_maybe_shared(head.slice(start..end))
            .map_err(|_| Error::Protocol("bad header value"))?;
        headers.append(name, value);
    }
    let (kind, framed_keep_alive) = body_kind(status, &headers, head_only, coded)?;
    if matches!(kind, BodyKind::Chunked | BodyKind::Eof) {
        // A length beside a transfer coding is not the body's: it must not reach the client.
        headers.remove(CONTENT_LENGTH);
    }
    let keep_alive =
        framed_keep_alive && version == Version::HTTP_11 && !(connection && says_close(&headers));
    Ok(Some(Parsed {
        status,
        version,
        headers,
        kind,
        keep_alive,
    }))
}

fn says_close(headers: &HeaderMap) -> bool {
    headers
        .get_all(CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|token| token.trim().eq_ignore_ascii_case("close"))
}

/// The body's framing, and whether the connection may carry another request after it.
/// `coded`: the head has a `Transfer-Encoding`.
fn body_kind(
    status: StatusCode,
    headers: &HeaderMap,
    head_only: bool,
    coded: bool,
) -> Result<(BodyKind, bool), Error> {
    if status == StatusCode::SWITCHING_PROTOCOLS {
        return Ok((BodyKind::Empty, false));
    }
    if head_only
        || status.is_informational()
        || status == StatusCode::NO_CONTENT
        || status == StatusCode::NOT_MODIFIED
    {
        return Ok((BodyKind::Empty, true));
    }
    let last_coding = if coded {
        headers
            .get_all(http::header::TRANSFER_ENCODING)
            .iter()
            .next_back()
    } else {
        None
    };
    if let Some(last) = last_coding {
        let chunked = last
            .to_str()
            .ok()
            .and_then(|v| v.rsplit(',').next())
            .is_some_and(|c| c.trim().eq_ignore_ascii_case("chunked"));
        // With a Content-Length beside it, the length is ignored and the connection closed.
        let reuse = chunked && !headers.contains_key(CONTENT_LENGTH);
        return Ok((
            if chunked {
                BodyKind::Chunked
            } else {
                BodyKind::Eof
            },
            reuse,
        ));
    }
    let mut length: Option<u64> = None;
    for value in headers.get_all(CONTENT_LENGTH) {
        for part in value
            .to_str()
            .map_err(|_| Error::Protocol("bad Content-Length"))?
            .split(',')
        {
            let part = part.trim();
            if part.is_empty() || !part.bytes().all(|b| b.is_ascii_digit()) {
                return Err(Error::Protocol("bad Content-Length"));
            }
            let n: u64 = part
                .parse()
                .map_err(|_| Error::Protocol("bad Content-Length"))?;
            if length.is_some_and(|l| l != n) {
                return Err(Error::Protocol("conflicting Content-Length values"));
            }
            length = Some(n);
        }
    }
    Ok(match length {
        Some(0) => (BodyKind::Empty, true),
        Some(n) => (BodyKind::Length(n), true),
        None => (BodyKind::Eof, false),
    })
}

impl Parsed {
    /// The same answer, on a connection that is not reused (the request was cut short).
    pub(super) fn closing(mut self) -> Self {
        self.keep_alive = false;
        self
    }

    pub(super) fn into_response(
        self,
        mut conn: UpstreamConn,
        pool: &Arc<Pool>,
    ) -> Response<UpstreamBody> {
        let state = match self.kind {
            // Hop-by-hop removal takes `Connection` and `Upgrade` off the response before
            // anyone checks the handshake, so the tunnel keeps the head as it came.
            _ if self.status == StatusCode::SWITCHING_PROTOCOLS => {
                State::Upgrade(Box::new((conn, self.headers.clone())))
            }
            BodyKind::Empty => {
                if self.keep_alive {
                    pool.checkin(conn);
                }
                State::Done
            }
            BodyKind::Length(n) if conn.buf.len() as u64 >= n => {
                // The usual small response: all of it came with the head.
                let data = conn.buf.split_to(n as usize).freeze();
                if self.keep_alive {
                    pool.checkin(conn);
                }
                State::Full(Some(data))
            }
            kind => State::Stream(Box::new(Streaming {
                conn,
                decoder: match kind {
                    BodyKind::Length(n) => Decoder::Length(n),
                    BodyKind::Chunked => Decoder::Chunked(Chunk::Size),
                    _ => Decoder::Eof,
                },
                pool: self.keep_alive.then(|| pool.clone()),
                stall_timeout: pool.stall_timeout,
                stall: None,
            })),
        };
        let mut response = Response::new(UpstreamBody { state });
        *response.status_mut() = self.status;
        *response.version_mut() = self.version;
        *response.headers_mut() = self.headers;
        response
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(raw: &str, head_only: bool) -> Result<Option<Parsed>, Error> {
        let mut buf = BytesMut::from(raw.as_bytes());
        parse_head(&mut buf, head_only)
    }

    fn kind(raw: &str) -> (BodyKind, bool) {
        let parsed = parse(raw, false).ok().flatten().expect("a complete head");
        (parsed.kind, parsed.keep_alive)
    }

    #[test]
    fn response_framing_follows_rfc_9112() {
        assert_eq!(
            kind("HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\n"),
            (BodyKind::Length(5), true)
        );
        assert_eq!(
            kind("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"),
            (BodyKind::Chunked, true)
        );
        // Chunked wins over a length, and the connection is not trusted afterwards.
        assert_eq!(
            kind("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\n"),
            (BodyKind::Chunked, false)
        );
        let both = "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\n";
        let parsed = parse(both, false).ok().flatten().expect("a complete head");
        assert!(!parsed.headers.contains_key(CONTENT_LENGTH));
        assert_eq!(
            kind("HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\n"),
            (BodyKind::Eof, false)
        );
        assert_eq!(kind("HTTP/1.1 200 OK\r\n\r\n"), (BodyKind::Eof, false));
        assert_eq!(
            kind("HTTP/1.1 204 No Content\r\ncontent-length: 5\r\n\r\n"),
            (BodyKind::Empty, true)
        );
        assert_eq!(
            kind("HTTP/1.1 304 Not Modified\r\n\r\n"),
            (BodyKind::Empty, true)
        );
        assert_eq!(
            kind("HTTP/1.1 200 OK\r\ncontent-length: 5\r\nconnection: close\r\n\r\n"),
            (BodyKind::Length(5), false)
        );
        assert_eq!(
            kind("HTTP/1.0 200 OK\r\ncontent-length: 5\r\n\r\n"),
            (BodyKind::Length(5), false)
        );
        assert_eq!(
            kind("HTTP/1.1 200 OK\r\ncontent-length: 5, 5\r\n\r\n"),
            (BodyKind::Length(5), true)
        );
        let head = parse("HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\n", true)
            .ok()
            .flatten()
            .map(|p| p.kind);
        assert_eq!(head, Some(BodyKind::Empty));
    }

    #[test]
    fn bad_heads_are_refused() {
        for raw in [
            "HTTP/1.1 200 OK\r\ncontent-length: 5\r\ncontent-length: 6\r\n\r\n",
            "HTTP/1.1 200 OK\r\ncontent-length: -1\r\n\r\n",
            "HTTP/1.1 200 OK\r\ncontent-length: +5\r\n\r\n",
            "HTTP/1.1 200 OK\r\ncontent-length: 99999999999999999999999\r\n\r\n",
            "HTTP/1.1 2000 OK\r\n\r\n",
            "HTTP/1.1 200 OK\r\nbad header\r\n\r\n",
            "SSH-2.0-OpenSSH\r\n\r\n",
        ] {
            assert!(parse(raw, false).is_err(), "{raw:?}");
        }
        assert!(matches!(
            parse("HTTP/1.1 200 OK\r\nx: y\r\n", false),
            Ok(None)
        ));
    }

    #[test]
    fn header_values_are_kept_and_the_head_consumed() {
        let mut buf = BytesMut::from(&b"HTTP/1.1 201 Created\r\nX-A: 1\r\nx-a: 2\r\nlocation: /x\r\ncontent-length: 2\r\n\r\nokNEXT"[..]);
        let parsed = parse_head(&mut buf, false)
            .ok()
            .flatten()
            .expect("complete");
        assert_eq!(parsed.status, StatusCode::CREATED);
        let values: Vec<_> = parsed.headers.get_all("x-a").iter().collect();
        assert_eq!(values, ["1", "2"]);
        assert_eq!(parsed.headers["location"], "/x");
        assert_eq!(&buf[..], b"okNEXT");
    }
}
