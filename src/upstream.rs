//! The upstream HTTP/1.1 client: keep-alive connections pooled per target, driven inline by
//! the task serving the client's request.
//!
//! A general client (hyper's) gives every connection its own task and hands each request
//! and response across channels; a proxy that sends one request at a time per connection
//! pays for that on every request. Here the request head is written, the response head read
//! and parsed (httparse, as hyper does) in the request's own task; a small body that arrived
//! with the head is answered whole and the connection goes back to the pool at once.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::{Arc, Mutex, Weak};
use std::task::{ready, Context, Poll, Waker};
use std::time::{Duration, Instant};

use bytes::{Buf, Bytes, BytesMut};
use http::header::{HeaderMap, HeaderName, HeaderValue, CONNECTION, CONTENT_LENGTH};
use http::{Method, Response, StatusCode, Version};
use http_body::{Body, Frame, SizeHint};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::body::{BodyError, GuardedBody};
use crate::forward::Outgoing;

/// The most a response head may take (status line and headers).
const MAX_HEAD_BYTES: usize = 64 * 1024;
/// The most headers a response may carry.
const MAX_HEADERS: usize = 128;
/// A chunk-size line (with extensions) or a trailer section longer than this is refused.
const MAX_CHUNK_LINE: usize = 4096;
const MAX_TRAILER_BYTES: usize = 16 * 1024;
/// Read-buffer growth: room for a typical response in one read.
const READ_CHUNK: usize = 8 * 1024;
/// Request body frames up to this size in all are written together with the head.
const COALESCE_BYTES: usize = 16 * 1024;

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
    pub fn is_connect(&self) -> bool {
        matches!(self, Error::Connect(_) | Error::ConnectTimeout)
    }
}

/// One target's keep-alive connections.
pub struct Pool {
    host: String,
    port: u16,
    /// The `Host` header sent to this target.
    pub host_header: HeaderValue,
    connect_timeout: Duration,
    idle_timeout: Duration,
    /// The route's `response_timeout`: how long the response head may take once the
    /// request is sent, and how long a response body may go without a byte.
    stall_timeout: Duration,
    max_idle: usize,
    /// Most recently returned last: checkout takes the warmest connection.
    idle: Mutex<Vec<Idle>>,
}

struct Idle {
    conn: Conn,
    since: Instant,
}

/// A connection with the bytes read from it but not yet consumed.
pub struct Conn {
    io: TcpStream,
    buf: BytesMut,
}

impl Pool {
    /// `stall_timeout`: how long a response body may go without a byte (the route's
    /// `response_timeout`); then the response is cut off.
    pub fn new(
        authority: &http::uri::Authority,
        connect_timeout: Duration,
        idle_timeout: Duration,
        stall_timeout: Duration,
        max_idle: usize,
    ) -> Arc<Self> {
        let host = authority.host();
        // An IPv6 literal comes bracketed in an authority.
        let host = host
            .strip_prefix('[')
            .and_then(|h| h.strip_suffix(']'))
            .unwrap_or(host);
        let host_header = HeaderValue::from_str(authority.as_str())
            .unwrap_or_else(|_| HeaderValue::from_static("localhost"));
        Arc::new(Self {
            host: host.to_string(),
            port: authority.port_u16().unwrap_or(80),
            host_header,
            connect_timeout,
            idle_timeout,
            stall_timeout,
            max_idle,
            idle: Mutex::new(Vec::new()),
        })
    }

    /// An idle connection that has not timed out and that the upstream has not closed.
    fn usable(&self, entry: &Idle, now: Instant) -> bool {
        now.duration_since(entry.since) < self.idle_timeout && entry.conn.is_open()
    }

    /// A pooled connection that is still open, if there is one.
    fn checkout(&self) -> Option<Conn> {
        let now = Instant::now();
        let mut idle = self.idle.lock().unwrap_or_else(|e| e.into_inner());
        while let Some(entry) = idle.pop() {
            if self.usable(&entry, now) {
                return Some(entry.conn);
            }
        }
        None
    }

    fn checkin(&self, conn: Conn) {
        if !conn.buf.is_empty() {
            // Bytes the upstream sent beyond its response: the connection is out of step.
            return;
        }
        let mut idle = self.idle.lock().unwrap_or_else(|e| e.into_inner());
        if idle.len() >= self.max_idle {
            idle.remove(0);
        }
        idle.push(Idle {
            conn,
            since: Instant::now(),
        });
    }

    /// Closes idle connections that timed out or that the upstream closed.
    fn sweep(&self) {
        let now = Instant::now();
        let mut idle = self.idle.lock().unwrap_or_else(|e| e.into_inner());
        idle.retain(|entry| self.usable(entry, now));
    }

    /// Sweeps these pools every few seconds for as long as any of them is alive.
    pub fn spawn_sweeper(pools: &[Arc<Pool>]) {
        let Ok(handle) = tokio::runtime::Handle::try_current() else {
            return;
        };
        let weak: Vec<Weak<Pool>> = pools.iter().map(Arc::downgrade).collect();
        handle.spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_secs(5));
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                let mut alive = false;
                for pool in weak.iter().filter_map(Weak::upgrade) {
                    alive = true;
                    pool.sweep();
                }
                if !alive {
                    return;
                }
            }
        });
    }

    async fn connect(&self) -> Result<Conn, Error> {
        let connecting = TcpStream::connect((self.host.as_str(), self.port));
        let io = match tokio::time::timeout(self.connect_timeout, connecting).await {
            Ok(Ok(io)) => io,
            Ok(Err(e)) => return Err(Error::Connect(e)),
            Err(_) => return Err(Error::ConnectTimeout),
        };
        let _ = io.set_nodelay(true);
        Ok(Conn {
            io,
            buf: BytesMut::new(),
        })
    }
}

impl Conn {
    /// Whether an idle connection can still carry a request: nothing has arrived on it since
    /// its last response (an end of stream, a reset or stray bytes all rule it out). Uses
    /// the readiness the reactor already recorded; a system call only when it says readable.
    fn is_open(&self) -> bool {
        let mut cx = Context::from_waker(Waker::noop());
        match self.io.poll_read_ready(&mut cx) {
            Poll::Pending => true,
            Poll::Ready(Err(_)) => false,
            Poll::Ready(Ok(())) => {
                let mut probe = [0u8; 1];
                matches!(self.io.try_read(&mut probe), Err(e) if e.kind() == io::ErrorKind::WouldBlock)
            }
        }
    }

    /// Reads more bytes into the buffer; `Ok(0)` at the end of the stream.
    async fn fill(&mut self) -> io::Result<usize> {
        std::future::poll_fn(|cx| self.poll_fill(cx)).await
    }

    fn poll_fill(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<usize>> {
        if self.buf.capacity() - self.buf.len() < 1024 {
            self.buf.reserve(READ_CHUNK);
        }
        // The future holds no state of its own: made and dropped on each poll.
        std::pin::pin!(self.io.read_buf(&mut self.buf)).poll(cx)
    }
}

/// How the request body is framed upstream.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Framing {
    None,
    Length(u64),
    Chunked,
}

fn request_framing(method: &Method, had_length: bool, body: &GuardedBody) -> Framing {
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
fn encode_head(
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
fn valid_target(target: [&str; 2]) -> bool {
    let [first, rest] = target;
    (first.starts_with('/') || first.is_empty() && rest.starts_with('/'))
        && target
            .iter()
            .all(|part| part.bytes().all(|b| b > b' ' && b != 0x7f))
}

/// Sends `request` to the pool's target and reads the response head. `target` is the path
/// and query in two parts, written one after the other: the target's base path, then the
/// request's. A pooled connection that turns out closed before any answer is replaced by
/// a new one when the request can be sent again (no body, idempotent method).
pub async fn send(
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
    let replayable =
        matches!(framing, Framing::None | Framing::Length(0)) && crate::forward::idempotent(method);
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

/// How far a request got upstream.
enum Sent {
    Whole,
    /// The upstream said something before the body was all sent.
    Interrupted,
}

async fn write_request(
    conn: &mut Conn,
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

/// How the response body is delimited (RFC 9112 6.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum BodyKind {
    Empty,
    Length(u64),
    Chunked,
    /// Until the upstream closes the connection.
    Eof,
}

struct Parsed {
    status: StatusCode,
    version: Version,
    headers: HeaderMap,
    kind: BodyKind,
    keep_alive: bool,
}

/// [`read_head`], given `wait` to finish.
async fn read_head_within(
    conn: &mut Conn,
    head_only: bool,
    wait: Duration,
) -> Result<Parsed, Error> {
    tokio::time::timeout(wait, read_head(conn, head_only))
        .await
        .unwrap_or(Err(Error::Timeout))
}

/// Reads until a final (non-1xx, or 101) response head has arrived.
async fn read_head(conn: &mut Conn, head_only: bool) -> Result<Parsed, Error> {
    let mut any = false;
    loop {
        if !conn.buf.is_empty() {
            any = true;
            match parse_head(&mut conn.buf, head_only)? {
                Some(parsed) if parsed.status.is_informational() && parsed.status != 101 => {
                    continue
                }
                Some(parsed) => return Ok(parsed),
                None if conn.buf.len() > MAX_HEAD_BYTES => {
                    return Err(Error::Protocol("response head too large"))
                }
                None => {}
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

/// Parses a complete response head at the start of `buf` and removes it; `None` while it is
/// incomplete. Header values share the head's memory, as hyper's do.
fn parse_head(buf: &mut BytesMut, head_only: bool) -> Result<Option<Parsed>, Error> {
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
    fn closing(mut self) -> Self {
        self.keep_alive = false;
        self
    }

    fn into_response(self, mut conn: Conn, pool: &Arc<Pool>) -> Response<UpstreamBody> {
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

/// The upstream's response body, as it arrives.
pub struct UpstreamBody {
    state: State,
}

enum State {
    Done,
    Full(Option<Bytes>),
    Stream(Box<Streaming>),
    /// A 101 answer: the connection (and the 101's headers as received) belong to the
    /// tunnel, not to a body.
    Upgrade(Box<(Conn, HeaderMap)>),
}

struct Streaming {
    conn: Conn,
    decoder: Decoder,
    /// Where the connection goes once the body has been read, if it may be reused.
    pool: Option<Arc<Pool>>,
    stall_timeout: Duration,
    /// Armed the first time the upstream makes the body wait; pushed back on each read.
    stall: Option<Pin<Box<tokio::time::Sleep>>>,
}

enum Decoder {
    Length(u64),
    Chunked(Chunk),
    Eof,
}

#[derive(Clone, Copy)]
enum Chunk {
    /// Expecting a chunk-size line.
    Size,
    Data(u64),
    /// Expecting the CRLF after a chunk's data.
    DataEnd,
    Trailers,
}

/// The connection of a 101 answer, never pooled: it is tunnelled, or dropped (closed).
pub struct Switched {
    pub stream: TcpStream,
    /// Bytes already read past the response head: the upstream's first tunnel bytes.
    pub early: Bytes,
    /// The 101's headers as the upstream sent them, hop-by-hop ones included.
    pub headers: HeaderMap,
}

impl UpstreamBody {
    /// The upgraded connection of a 101 answer.
    pub fn take_upgrade(&mut self) -> Option<Switched> {
        match std::mem::replace(&mut self.state, State::Done) {
            State::Upgrade(upgraded) => {
                let (Conn { io, buf }, headers) = *upgraded;
                Some(Switched {
                    stream: io,
                    early: buf.freeze(),
                    headers,
                })
            }
            other => {
                self.state = other;
                None
            }
        }
    }
}

fn invalid(what: &'static str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, what)
}

impl Streaming {
    /// The next piece of body, `None` at its end.
    fn poll_next(&mut self, cx: &mut Context<'_>) -> Poll<Option<io::Result<Bytes>>> {
        loop {
            match self.decoder {
                Decoder::Length(0) => return Poll::Ready(None),
                Decoder::Length(remaining) => {
                    if !self.conn.buf.is_empty() {
                        let n = (self.conn.buf.len() as u64).min(remaining) as usize;
                        self.decoder = Decoder::Length(remaining - n as u64);
                        return Poll::Ready(Some(Ok(self.conn.buf.split_to(n).freeze())));
                    }
                    if ready!(self.conn.poll_fill(cx))? == 0 {
                        return Poll::Ready(Some(Err(invalid("upstream closed inside the body"))));
                    }
                }
                Decoder::Eof => {
                    if !self.conn.buf.is_empty() {
                        return Poll::Ready(Some(Ok(self.conn.buf.split().freeze())));
                    }
                    if ready!(self.conn.poll_fill(cx))? == 0 {
                        return Poll::Ready(None);
                    }
                }
                Decoder::Chunked(chunk) => {
                    match self.step_chunked(chunk) {
                        Ok(Step::Data(data)) => return Poll::Ready(Some(Ok(data))),
                        Ok(Step::End) => return Poll::Ready(None),
                        Ok(Step::Again) => continue,
                        Ok(Step::NeedMore) => {}
                        Err(e) => return Poll::Ready(Some(Err(e))),
                    }
                    if ready!(self.conn.poll_fill(cx))? == 0 {
                        return Poll::Ready(Some(Err(invalid("upstream closed inside the body"))));
                    }
                }
            }
        }
    }

    fn step_chunked(&mut self, chunk: Chunk) -> io::Result<Step> {
        let buf = &mut self.conn.buf;
        match chunk {
            Chunk::Size => {
                let Some(end) = find_crlf(buf) else {
                    return if buf.len() > MAX_CHUNK_LINE {
                        Err(invalid("chunk-size line too long"))
                    } else {
                        Ok(Step::NeedMore)
                    };
                };
                let line = &buf[..end];
                let digits = line
                    .iter()
                    .position(|b| *b == b';' || *b == b' ' || *b == b'\t')
                    .map_or(line, |i| &line[..i]);
                if digits.is_empty() || digits.len() > 15 {
                    return Err(invalid("bad chunk size"));
                }
                let mut size: u64 = 0;
                for &d in digits {
                    let v = (d as char)
                        .to_digit(16)
                        .ok_or_else(|| invalid("bad chunk size"))?;
                    size = size * 16 + u64::from(v);
                }
                buf.advance(end + 2);
                self.decoder = Decoder::Chunked(if size == 0 {
                    Chunk::Trailers
                } else {
                    Chunk::Data(size)
                });
                Ok(Step::Again)
            }
            Chunk::Data(remaining) => {
                if buf.is_empty() {
                    return Ok(Step::NeedMore);
                }
                let n = (buf.len() as u64).min(remaining) as usize;
                let data = buf.split_to(n).freeze();
                let left = remaining - n as u64;
                self.decoder = Decoder::Chunked(if left == 0 {
                    Chunk::DataEnd
                } else {
                    Chunk::Data(left)
                });
                Ok(Step::Data(data))
            }
            Chunk::DataEnd => {
                if buf.len() < 2 {
                    return Ok(Step::NeedMore);
                }
                if &buf[..2] != b"\r\n" {
                    return Err(invalid("chunk data not followed by CRLF"));
                }
                buf.advance(2);
                self.decoder = Decoder::Chunked(Chunk::Size);
                Ok(Step::Again)
            }
            Chunk::Trailers => {
                // Trailer fields are read and dropped, up to the empty line.
                loop {
                    let Some(end) = find_crlf(buf) else {
                        return if buf.len() > MAX_TRAILER_BYTES {
                            Err(invalid("trailer section too long"))
                        } else {
                            Ok(Step::NeedMore)
                        };
                    };
                    buf.advance(end + 2);
                    if end == 0 {
                        self.decoder = Decoder::Length(0);
                        return Ok(Step::End);
                    }
                }
            }
        }
    }
}

enum Step {
    Data(Bytes),
    End,
    Again,
    NeedMore,
}

fn find_crlf(buf: &[u8]) -> Option<usize> {
    buf.windows(2).position(|w| w == b"\r\n")
}

impl Body for UpstreamBody {
    type Data = Bytes;
    type Error = io::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, io::Error>>> {
        let this = &mut *self;
        let next = match &mut this.state {
            State::Done | State::Upgrade(_) => return Poll::Ready(None),
            State::Full(data) => {
                let data = data.take();
                this.state = State::Done;
                return Poll::Ready(data.map(|d| Ok(Frame::data(d))));
            }
            State::Stream(streaming) => match streaming.poll_next(cx) {
                Poll::Ready(next) => {
                    if let Some(stall) = &mut streaming.stall {
                        let deadline = tokio::time::Instant::now() + streaming.stall_timeout;
                        stall.as_mut().reset(deadline);
                    }
                    next
                }
                Poll::Pending => {
                    let timeout = streaming.stall_timeout;
                    let stall = streaming
                        .stall
                        .get_or_insert_with(|| Box::pin(tokio::time::sleep(timeout)));
                    ready!(stall.as_mut().poll(cx));
                    // The upstream stopped sending: the response is cut off (the client's
                    // connection closes) and this connection is not reused.
                    this.state = State::Done;
                    return Poll::Ready(Some(Err(io::Error::new(
                        io::ErrorKind::TimedOut,
                        "the upstream stopped sending the response body",
                    ))));
                }
            },
        };
        match next {
            Some(Ok(data)) => {
                if let State::Stream(streaming) = &this.state {
                    if matches!(streaming.decoder, Decoder::Length(0)) {
                        this.finish();
                    }
                }
                Poll::Ready(Some(Ok(Frame::data(data))))
            }
            Some(Err(e)) => {
                this.state = State::Done;
                Poll::Ready(Some(Err(e)))
            }
            None => {
                this.finish();
                Poll::Ready(None)
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        match &self.state {
            State::Done | State::Upgrade(_) => true,
            State::Full(data) => data.is_none(),
            State::Stream(s) => matches!(s.decoder, Decoder::Length(0)),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match &self.state {
            State::Done | State::Upgrade(_) => SizeHint::with_exact(0),
            State::Full(data) => SizeHint::with_exact(data.as_ref().map_or(0, |d| d.len() as u64)),
            State::Stream(s) => match s.decoder {
                Decoder::Length(n) => SizeHint::with_exact(n),
                _ => SizeHint::default(),
            },
        }
    }
}

impl UpstreamBody {
    /// The body was read to its end: the connection goes back to its pool if it may.
    fn finish(&mut self) {
        if let State::Stream(streaming) = std::mem::replace(&mut self.state, State::Done) {
            let Streaming { conn, pool, .. } = *streaming;
            if let Some(pool) = pool {
                pool.checkin(conn);
            }
        }
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
