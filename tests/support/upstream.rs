//! A recording upstream speaking raw HTTP/1.1, so tests see the exact header names and bytes
//! the gateway sent. Paths steer it: `/slow` waits, `/reset` drops the connection.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Notify;

/// One request as the upstream received it.
#[derive(Debug, Clone)]
pub struct Recorded {
    /// The request line and headers exactly as sent, without the final blank line.
    pub head: String,
    pub method: String,
    pub target: String,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Recorded {
    /// Values of every header whose name equals `name` ignoring case.
    pub fn all(&self, name: &str) -> Vec<&str> {
        super::raw::values(&self.headers, name)
    }

    /// The value of `name`, which must not be sent twice.
    pub fn one(&self, name: &str) -> Option<&str> {
        super::raw::at_most_one(&self.headers, name, &self.head)
    }

    /// Header names that fold (case-insensitive, `_` as `-`) to `name`.
    pub fn spellings(&self, name: &str) -> Vec<&str> {
        let fold = |s: &str| s.to_ascii_lowercase().replace('_', "-");
        let wanted = fold(name);
        self.headers
            .iter()
            .filter(|(k, _)| fold(k) == wanted)
            .map(|(k, _)| k.as_str())
            .collect()
    }
}

#[derive(Clone)]
pub struct Upstream {
    pub addr: SocketAddr,
    seen: Arc<Mutex<Vec<Recorded>>>,
    arrived: Arc<Notify>,
    pub slow: Duration,
}

impl Upstream {
    pub async fn start() -> Self {
        Self::start_at("127.0.0.1:0".parse().expect("addr")).await
    }

    /// A recording upstream on a given address (to bring back a target that was down).
    pub async fn start_at(addr: SocketAddr) -> Self {
        let listener = TcpListener::bind(addr).await.expect("bind upstream");
        let upstream = Self {
            addr: listener.local_addr().expect("addr"),
            seen: Arc::default(),
            arrived: Arc::default(),
            slow: Duration::from_secs(3),
        };
        let server = upstream.clone();
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let server = server.clone();
                tokio::spawn(async move { server.serve(stream).await });
            }
        });
        upstream
    }

    pub fn base(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn requests(&self) -> Vec<Recorded> {
        self.seen.lock().map(|v| v.clone()).unwrap_or_default()
    }

    pub fn count(&self) -> usize {
        self.seen.lock().map(|v| v.len()).unwrap_or_default()
    }

    /// The most recent request (panics when none arrived).
    pub fn last(&self) -> Recorded {
        self.requests()
            .pop()
            .expect("the upstream received no request")
    }

    /// Waits until at least `n` requests have arrived.
    pub async fn wait_for(&self, n: usize) {
        loop {
            let notified = self.arrived.notified();
            if self.count() >= n {
                return;
            }
            if tokio::time::timeout(Duration::from_secs(10), notified)
                .await
                .is_err()
            {
                panic!("upstream saw {} requests, expected {n}", self.count());
            }
        }
    }

    async fn serve(&self, mut stream: TcpStream) {
        let mut buffer = Vec::new();
        loop {
            let Some(request) = read_request(&mut stream, &mut buffer).await else {
                return;
            };
            let target = request.target.clone();
            if let Ok(mut seen) = self.seen.lock() {
                seen.push(request);
            }
            self.arrived.notify_waiters();
            if target.contains("/reset") {
                return;
            }
            if target.contains("/slow") {
                tokio::time::sleep(self.slow).await;
            }
            let body = if target.contains("/big") {
                "x".repeat(1 << 20)
            } else {
                "{\"ok\":true}".to_string()
            };
            let response = format!(
                "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nx-upstream: recorded\r\nconnection: keep-alive, x-upstream-private\r\nx-upstream-private: 1\r\nkeep-alive: timeout=5\r\n\r\n{body}",
                body.len()
            );
            if stream.write_all(response.as_bytes()).await.is_err() {
                return;
            }
        }
    }
}

/// Reads one HTTP/1.1 request (head and body) off `stream`; `None` when the peer closed.
pub async fn read_request(stream: &mut TcpStream, buffer: &mut Vec<u8>) -> Option<Recorded> {
    let head_end = loop {
        if let Some(i) = find(buffer, b"\r\n\r\n") {
            break i;
        }
        fill(stream, buffer).await?;
    };
    let head = String::from_utf8_lossy(&buffer[..head_end]).into_owned();
    buffer.drain(..head_end + 4);
    let mut lines = head.split("\r\n");
    let mut first = lines.next()?.split(' ');
    let (method, target) = (first.next()?.to_string(), first.next()?.to_string());
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.to_string(), v.trim().to_string()))
        .collect();
    let header = |name: &str| {
        headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.clone())
    };
    let body = if header("transfer-encoding").is_some_and(|v| v.eq_ignore_ascii_case("chunked")) {
        read_chunked(stream, buffer).await?
    } else {
        let len: usize = header("content-length")
            .and_then(|v| v.parse().ok())
            .unwrap_or(0);
        while buffer.len() < len {
            fill(stream, buffer).await?;
        }
        buffer.drain(..len).collect()
    };
    Some(Recorded {
        head,
        method,
        target,
        headers,
        body,
    })
}

async fn read_chunked(stream: &mut TcpStream, buffer: &mut Vec<u8>) -> Option<Vec<u8>> {
    let mut body = Vec::new();
    loop {
        let line_end = loop {
            if let Some(i) = find(buffer, b"\r\n") {
                break i;
            }
            fill(stream, buffer).await?;
        };
        let size_text = String::from_utf8_lossy(&buffer[..line_end]).into_owned();
        let size = usize::from_str_radix(size_text.split(';').next()?.trim(), 16).ok()?;
        buffer.drain(..line_end + 2);
        if size == 0 {
            // Trailers, if any, end with a blank line.
            loop {
                let end = loop {
                    if let Some(i) = find(buffer, b"\r\n") {
                        break i;
                    }
                    fill(stream, buffer).await?;
                };
                buffer.drain(..end + 2);
                if end == 0 {
                    return Some(body);
                }
            }
        }
        while buffer.len() < size + 2 {
            fill(stream, buffer).await?;
        }
        body.extend(buffer.drain(..size));
        buffer.drain(..2);
    }
}

async fn fill(stream: &mut TcpStream, buffer: &mut Vec<u8>) -> Option<()> {
    let mut chunk = [0u8; 8192];
    match stream.read(&mut chunk).await {
        Ok(0) | Err(_) => None,
        Ok(n) => {
            buffer.extend_from_slice(&chunk[..n]);
            Some(())
        }
    }
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}
