//! WebSocket on loopback: an upstream that completes the handshake (or answers a scripted
//! 101) and then echoes and records every byte, and the client side of the handshake.

use std::net::SocketAddr;
use std::time::Duration;

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::sync::watch;

use super::raw::{head, Raw, Reply};

/// The key of RFC 6455's sample handshake, and the accept value it calls for.
pub const KEY: &str = "dGhlIHNhbXBsZSBub25jZQ==";
pub const ACCEPT: &str = "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=";

/// A client's upgrade header lines, with [`KEY`].
#[rustfmt::skip]
pub const HANDSHAKE: [&str; 4] = [
    "Connection: Upgrade", "Upgrade: websocket", "Sec-WebSocket-Version: 13",
    "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==",
];

/// The `Sec-WebSocket-Accept` for `key` (RFC 6455 4.2.2), computed here rather than by
/// wxgate, so that the gateway's check is tested against an independent answer.
pub fn accept(key: &str) -> String {
    let mut sha1 = aws_lc_rs::digest::Context::new(&aws_lc_rs::digest::SHA1_FOR_LEGACY_USE_ONLY);
    sha1.update(key.as_bytes());
    sha1.update(b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11");
    STANDARD.encode(sha1.finish())
}

/// A proper 101 for a request whose key calls for `accept`.
pub fn switching(accept: &str) -> String {
    format!(
        "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: {accept}\r\n\r\n"
    )
}

/// What one connection to the upstream brought.
#[derive(Debug, Clone, Default)]
pub struct Seen {
    /// The request head, lower-cased.
    pub head: String,
    /// Every byte after the head.
    pub after: Vec<u8>,
    /// The gateway closed the connection.
    pub closed: bool,
}

/// An upstream that answers a WebSocket upgrade with `answer(accept)` (given the accept
/// value the request's key calls for), then echoes and records; anything else gets 426.
pub struct WsUpstream {
    pub addr: SocketAddr,
    seen: watch::Sender<Vec<Seen>>,
}

impl WsUpstream {
    /// Completes the handshake properly.
    pub async fn echo() -> Self {
        Self::start(switching).await
    }

    pub async fn start(answer: fn(&str) -> String) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let (seen, _) = watch::channel(Vec::new());
        let record = seen.clone();
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let mut index = 0;
                record.send_modify(|all| {
                    index = all.len();
                    all.push(Seen::default());
                });
                tokio::spawn(serve(Raw::from(stream), answer, record.clone(), index));
            }
        });
        Self { addr, seen }
    }

    /// Every connection so far, in the order they came.
    pub fn seen(&self) -> Vec<Seen> {
        self.seen.borrow().clone()
    }

    /// Waits up to `limit` until `ready` holds for the connections seen; whether it did.
    pub async fn wait_for(&self, limit: Duration, ready: impl FnMut(&Vec<Seen>) -> bool) -> bool {
        let mut changes = self.seen.subscribe();
        let waited = tokio::time::timeout(limit, changes.wait_for(ready)).await;
        matches!(waited, Ok(Ok(_)))
    }
}

async fn serve(
    mut raw: Raw,
    answer: fn(&str) -> String,
    seen: watch::Sender<Vec<Seen>>,
    index: usize,
) {
    let update = |change: &dyn Fn(&mut Seen)| seen.send_modify(|all| change(&mut all[index]));
    let end = loop {
        if let Some(i) = raw.buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i;
        }
        if !raw.fill().await {
            update(&|s| s.closed = true);
            return;
        }
    };
    let original = String::from_utf8_lossy(&raw.buf[..end]).into_owned();
    let head = original.to_ascii_lowercase();
    let early = raw.buf.split_off(end + 4);
    update(&|s| {
        s.head = head.clone();
        s.after = early.clone();
    });
    if !head.contains("upgrade: websocket") {
        raw.send(b"HTTP/1.1 426 Upgrade Required\r\ncontent-length: 0\r\n\r\n")
            .await;
    } else {
        let key = original
            .lines()
            .filter_map(|line| line.split_once(':'))
            .find(|(name, _)| name.eq_ignore_ascii_case("sec-websocket-key"))
            .map_or("", |(_, value)| value.trim());
        raw.send(answer(&accept(key)).as_bytes()).await;
        let mut chunk = [0u8; 8192];
        loop {
            match raw.stream.read(&mut chunk).await {
                Ok(n) if n > 0 => {
                    update(&|s| s.after.extend_from_slice(&chunk[..n]));
                    if raw.stream.write_all(&chunk[..n]).await.is_err() {
                        break;
                    }
                }
                _ => break,
            }
        }
    }
    update(&|s| s.closed = true);
}

/// Sends a WebSocket upgrade for `path` with [`HANDSHAKE`] and `extra` header lines; the
/// connection and the answer (`None`: closed without one).
pub async fn upgrade(addr: SocketAddr, path: &str, extra: &[&str]) -> (Raw, Option<Reply>) {
    let mut raw = Raw::connect(addr).await;
    let lines = [&HANDSHAKE[..], extra].concat();
    raw.send(head(&format!("GET {path}"), &lines).as_bytes())
        .await;
    let reply = raw.reply().await;
    (raw, reply)
}

/// Whether `bytes` sent into an open tunnel come back (from the echoing upstream).
pub async fn echoes(raw: &mut Raw, bytes: &[u8]) -> bool {
    raw.buf.clear();
    raw.send(bytes).await;
    raw.fill_to(bytes.len()).await && raw.buf == bytes
}
