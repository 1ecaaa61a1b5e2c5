//! A raw HTTP/1.1 client on a socket, for what lives below hyper's API: framing, pipelining,
//! upgrades. It keeps unread bytes, so leftovers show a second response.

use std::net::SocketAddr;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::{timeout_at, Instant};

/// One response as read off the socket.
#[derive(Debug)]
pub struct Reply {
    pub status: u16,
    pub version: String,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Reply {
    pub fn header(&self, name: &str) -> Option<&str> {
        let found = self
            .headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name));
        found.map(|(_, v)| v.as_str())
    }
}

/// A raw connection and the bytes read from it but not yet consumed.
pub struct Raw {
    pub stream: TcpStream,
    pub buf: Vec<u8>,
}

impl Raw {
    pub async fn connect(addr: SocketAddr) -> Self {
        let stream = TcpStream::connect(addr).await.expect("connect");
        Self::from(stream)
    }

    pub async fn send(&mut self, bytes: &[u8]) {
        // A refused request may be answered and closed before all of it is written.
        let _ = self.stream.write_all(bytes).await;
    }

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
            if let Some(i) = self.buf.windows(4).position(|w| w == b"\r\n\r\n") {
                break i;
            }
            if !self.fill().await {
                return None;
            }
        };
        let head = String::from_utf8_lossy(&self.buf[..end]).into_owned();
        self.buf.drain(..end + 4);
        let parsed = super::Head::parse(&head)?;
        let len = parsed.content_length();
        if !self.fill_to(len).await {
            return None;
        }
        Some(Reply {
            status: parsed.status,
            version: parsed.version,
            headers: parsed.headers,
            body: self.buf.drain(..len).collect(),
        })
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

impl From<TcpStream> for Raw {
    fn from(stream: TcpStream) -> Self {
        Self {
            stream,
            buf: Vec::new(),
        }
    }
}

/// A request head with `Host` and the given raw header lines, ending in the blank line.
pub fn head(line: &str, lines: &[&str]) -> String {
    let mut text = format!("{line} HTTP/1.1\r\nHost: wxgate.test\r\n");
    for l in lines {
        text.push_str(l);
        text.push_str("\r\n");
    }
    text + "\r\n"
}

/// The first answer's status to `request` on a fresh connection, without waiting for a close.
pub async fn answer(addr: SocketAddr, request: &str) -> Option<u16> {
    let mut raw = Raw::connect(addr).await;
    raw.send(request.as_bytes()).await;
    raw.reply().await.map(|r| r.status)
}
