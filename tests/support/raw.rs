//! A raw HTTP/1.1 client on a socket, for what lives below hyper's API: framing, pipelining,
//! upgrades, limits, slow bodies. It keeps unread bytes, so leftovers show a second response.
//! The one parser of raw replies in these tests is here: [`Raw::reply`] reads them off a live
//! connection, [`replies`] splits what a closed one sent.

use std::fmt;
use std::net::SocketAddr;
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::{timeout_at, Instant};

/// One response as read off the socket.
pub struct Reply {
    pub status: u16,
    pub version: String,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Reply {
    /// A response head (without the blank line), with no body yet; `None` when the status
    /// line is malformed.
    fn from_head(head: &str) -> Option<Self> {
        let mut lines = head.split("\r\n");
        let mut first = lines.next()?.split(' ');
        let version = first.next()?.to_string();
        let status = first.next()?.parse().ok()?;
        let headers = lines
            .filter_map(|l| l.split_once(':'))
            .map(|(k, v)| (k.to_string(), v.trim().to_string()))
            .collect();
        Some(Self {
            status,
            version,
            headers,
            body: Vec::new(),
        })
    }

    /// The body length the head announces; chunked answers are not expected from wxgate here.
    fn content_length(&self) -> usize {
        assert!(
            self.header("transfer-encoding").is_none(),
            "unexpected chunked answer: {:?}",
            self.headers
        );
        self.header("content-length")
            .map_or(0, |v| v.parse().expect("length"))
    }

    /// Every value of the header `name`, in order.
    pub fn all(&self, name: &str) -> Vec<&str> {
        values(&self.headers, name)
    }

    /// The first value of the header `name`.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.all(name).first().copied()
    }

    /// The value of the header `name`, which must not be answered twice.
    pub fn one(&self, name: &str) -> Option<&str> {
        at_most_one(&self.headers, name, self)
    }

    /// The body as text.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// The JSON body's `error` code ("" when there is none).
    pub fn error(&self) -> String {
        let json: serde_json::Value = serde_json::from_slice(&self.body).unwrap_or_default();
        json["error"].as_str().unwrap_or_default().to_string()
    }
}

impl fmt::Debug for Reply {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Reply")
            .field("status", &self.status)
            .field("version", &self.version)
            .field("headers", &self.headers)
            .field("body", &String::from_utf8_lossy(&self.body))
            .finish()
    }
}

/// Every value of the header `name` (compared ignoring case) in parsed headers, in order.
pub fn values<'a>(headers: &'a [(String, String)], name: &str) -> Vec<&'a str> {
    headers
        .iter()
        .filter(|(k, _)| k.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.as_str())
        .collect()
}

/// The value of the header `name`, asserting that it appears at most once (`whole` is shown
/// when it does not).
pub fn at_most_one<'a>(
    headers: &'a [(String, String)],
    name: &str,
    whole: &dyn fmt::Debug,
) -> Option<&'a str> {
    let all = values(headers, name);
    assert!(
        all.len() <= 1,
        "{name} appears {} times: {whole:?}",
        all.len()
    );
    all.first().copied()
}

/// Where the first head in `bytes` ends (the index of its blank line's `\r\n\r\n`).
fn head_end(bytes: &[u8]) -> Option<usize> {
    bytes.windows(4).position(|w| w == b"\r\n\r\n")
}

/// A raw connection (any byte stream: TCP, TLS, a read half) and the bytes read from it but
/// not yet consumed.
pub struct Raw<S = TcpStream> {
    pub stream: S,
    pub buf: Vec<u8>,
}

impl Raw {
    pub async fn connect(addr: SocketAddr) -> Self {
        let stream = TcpStream::connect(addr).await.expect("connect");
        Self::from(stream)
    }
}

impl<S: AsyncWrite + Unpin> Raw<S> {
    pub async fn send(&mut self, bytes: &[u8]) {
        // A refused request may be answered and closed before all of it is written.
        let _ = self.stream.write_all(bytes).await;
    }
}

impl<S: AsyncRead + Unpin> Raw<S> {
    /// Reads once into `buf` before `deadline`: `Some(0)` at EOF or reset, `None` on time-out.
    pub async fn read_until(&mut self, deadline: Instant) -> Option<usize> {
        let mut chunk = [0u8; 16384];
        match timeout_at(deadline, self.stream.read(&mut chunk)).await {
            Ok(Ok(n)) => {
                self.buf.extend_from_slice(&chunk[..n]);
                Some(n)
            }
            Ok(Err(_)) => Some(0),
            Err(_) => None,
        }
    }

    pub async fn fill(&mut self) -> bool {
        let deadline = Instant::now() + Duration::from_secs(10);
        self.read_until(deadline).await.is_some_and(|n| n > 0)
    }

    /// Reads until `buf` holds at least `n` bytes; false if the connection ended first.
    pub async fn fill_to(&mut self, n: usize) -> bool {
        while self.buf.len() < n {
            if !self.fill().await {
                return false;
            }
        }
        true
    }

    /// The next response (framed by `Content-Length`), or `None` if the connection ended first.
    pub async fn reply(&mut self) -> Option<Reply> {
        let end = loop {
            if let Some(i) = head_end(&self.buf) {
                break i;
            }
            if !self.fill().await {
                return None;
            }
        };
        let head = String::from_utf8_lossy(&self.buf[..end]).into_owned();
        self.buf.drain(..end + 4);
        let mut reply = Reply::from_head(&head)?;
        let len = reply.content_length();
        if !self.fill_to(len).await {
            return None;
        }
        reply.body = self.buf.drain(..len).collect();
        Some(reply)
    }

    /// Whether the peer closes the connection within `limit`; bytes it sends are kept.
    pub async fn closes_within(&mut self, limit: Duration) -> bool {
        let deadline = Instant::now() + limit;
        loop {
            match self.read_until(deadline).await {
                Some(0) => return true,
                Some(_) => {}
                None => return false,
            }
        }
    }
}

impl<S> From<S> for Raw<S> {
    fn from(stream: S) -> Self {
        Self {
            stream,
            buf: Vec::new(),
        }
    }
}

/// Splits what a connection sent into its responses, each framed by its `Content-Length`. A
/// head that does not parse counts as a response with status 0 and no headers; a body cut
/// short keeps what arrived.
pub fn replies(text: &str) -> Vec<Reply> {
    let mut bytes = text.as_bytes();
    let mut out = Vec::new();
    while let Some(end) = head_end(bytes) {
        let head = String::from_utf8_lossy(&bytes[..end]);
        let mut reply = Reply::from_head(&head).unwrap_or(Reply {
            status: 0,
            version: String::new(),
            headers: Vec::new(),
            body: Vec::new(),
        });
        let rest = &bytes[end + 4..];
        let (body, after) = rest.split_at(reply.content_length().min(rest.len()));
        reply.body = body.to_vec();
        bytes = after;
        out.push(reply);
    }
    out
}

/// The status code of the first response in raw HTTP/1.1 text (0 when there is none).
pub fn status_of(raw: &str) -> u16 {
    let head = raw.split("\r\n\r\n").next().unwrap_or_default();
    Reply::from_head(head).map_or(0, |r| r.status)
}

/// A request head: the request line, `Host: wxgate.test` when `host`, the lines, a blank line.
fn request_head<L: AsRef<str>>(
    line: &str,
    host: bool,
    lines: impl IntoIterator<Item = L>,
) -> String {
    let mut text = format!("{line} HTTP/1.1\r\n");
    if host {
        text.push_str("Host: wxgate.test\r\n");
    }
    for l in lines {
        text.push_str(l.as_ref());
        text.push_str("\r\n");
    }
    text + "\r\n"
}

/// A request head with `Host` and the given raw header lines, ending in the blank line.
pub fn head(line: &str, lines: &[&str]) -> String {
    request_head(line, true, lines)
}

/// A request head from `(name, value)` pairs, in order: `Host: wxgate.test` first unless a
/// pair names `Host`.
pub fn head_of(line: &str, headers: &[(&str, &str)]) -> String {
    let host = !headers.iter().any(|(k, _)| k.eq_ignore_ascii_case("host"));
    let lines = headers
        .iter()
        .map(|(name, value)| format!("{name}: {value}"));
    request_head(line, host, lines)
}

/// The first answer's status to `request` on a fresh connection, without waiting for a close.
pub async fn answer(addr: SocketAddr, request: &str) -> Option<u16> {
    let mut raw = Raw::connect(addr).await;
    raw.send(request.as_bytes()).await;
    raw.reply().await.map(|r| r.status)
}

/// Sends raw bytes and reads until the server closes or `idle` passes with nothing new.
pub async fn collect(addr: SocketAddr, request: &[u8], idle: Duration) -> String {
    let mut raw = Raw::connect(addr).await;
    raw.stream.write_all(request).await.expect("write");
    while raw
        .read_until(Instant::now() + idle)
        .await
        .is_some_and(|n| n > 0)
    {}
    String::from_utf8_lossy(&raw.buf).into_owned()
}

/// Sends `head` (which promises a body), then the body one byte every `every`, until the
/// server answers. Returns the answer's head and when it came, from the first byte sent.
pub async fn trickle(addr: SocketAddr, head: &str, every: Duration) -> (String, Duration) {
    let stream = TcpStream::connect(addr).await.expect("connect");
    let (reader, mut writer) = stream.into_split();
    let started = Instant::now();
    writer.write_all(head.as_bytes()).await.expect("write head");
    let dripping = tokio::spawn(async move {
        let mut tick = tokio::time::interval(every);
        loop {
            tick.tick().await;
            if writer.write_all(b"x").await.is_err() {
                return;
            }
        }
    });
    let mut raw = Raw::from(reader);
    let deadline = started + Duration::from_secs(20);
    let timed_out = loop {
        if head_end(&raw.buf).is_some() {
            break false;
        }
        match raw.read_until(deadline).await {
            Some(0) => break false,
            Some(_) => {}
            None => break true,
        }
    };
    let elapsed = started.elapsed();
    dripping.abort();
    assert!(!timed_out, "no answer within 20 s");
    (String::from_utf8_lossy(&raw.buf).into_owned(), elapsed)
}

/// One keep-alive HTTP/1.1 `GET /api/x` with `token` on an established connection; reads
/// the whole answer, so the next request can follow on the same connection. The status.
pub async fn get_on<S>(stream: &mut S, token: &str) -> u16
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let auth = format!("Bearer {token}");
    let request = head_of(
        "GET /api/x",
        &[("Host", "localhost"), ("Authorization", &auth)],
    );
    let mut raw = Raw::from(stream);
    raw.send(request.as_bytes()).await;
    raw.reply().await.expect("an answer").status
}
