//! WebSocket upgrades: authenticated like any request, forwarded with the upgrade headers
//! restored, and tunnelled both ways only after the upstream answers 101.

use std::time::Duration;

use bytes::Bytes;
use http::header::{HeaderMap, HeaderValue, CONNECTION, UPGRADE};
use http::Version;
use hyper::upgrade::OnUpgrade;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// A tunnel with no traffic either way for this long is closed.
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(600);

/// An HTTP/1.1 `Connection: upgrade` + `Upgrade: websocket` request. Any other protocol
/// (`h2c` above all) is not an upgrade wxgate honours: its headers are simply dropped.
pub fn is_websocket(headers: &HeaderMap, version: Version) -> bool {
    if version != Version::HTTP_11 || !headers.contains_key(UPGRADE) {
        return false;
    }
    let connection_upgrade = headers
        .get_all(CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|token| token.trim().eq_ignore_ascii_case("upgrade"));
    let mut protocols = headers.get_all(UPGRADE).iter();
    let websocket = matches!(
        (protocols.next(), protocols.next()),
        (Some(p), None) if p.as_bytes().eq_ignore_ascii_case(b"websocket")
    );
    connection_upgrade && websocket
}

/// The upgrade headers of a forwarded WebSocket request, as header lines: the two
/// hop-by-hop headers an upgrade needs, after hygiene removed the client's.
pub const REQUEST_LINES: &[u8] = b"connection: upgrade\r\nupgrade: websocket\r\n";

/// Puts back the two hop-by-hop headers an upgrade needs (on the 101 answer), after hygiene
/// removed them.
pub fn restore_headers(headers: &mut HeaderMap) {
    headers.insert(CONNECTION, HeaderValue::from_static("upgrade"));
    headers.insert(UPGRADE, HeaderValue::from_static("websocket"));
}

/// Joins the client's upgraded connection, once hyper hands it over, with the upstream's
/// (whose bytes already read past its 101 answer go to the client first).
pub fn tunnel(client: OnUpgrade, upstream: (TcpStream, Bytes)) {
    tokio::spawn(async move {
        let (upstream, early) = upstream;
        let mut client = match client.await {
            Ok(client) => TokioIo::new(client),
            Err(e) => {
                tracing::debug!(error = %e, "upgrade did not complete");
                return;
            }
        };
        if !early.is_empty() && client.write_all(&early).await.is_err() {
            return;
        }
        pump(client, upstream, IDLE_TIMEOUT).await;
    });
}

/// Copies both ways until either side closes or nothing moves for `idle`.
async fn pump<A, B>(a: A, b: B, idle: Duration)
where
    A: tokio::io::AsyncRead + tokio::io::AsyncWrite,
    B: tokio::io::AsyncRead + tokio::io::AsyncWrite,
{
    let (mut a_read, mut a_write) = tokio::io::split(a);
    let (mut b_read, mut b_write) = tokio::io::split(b);
    let (mut a_buf, mut b_buf) = (vec![0u8; 8192], vec![0u8; 8192]);
    loop {
        tokio::select! {
            read = a_read.read(&mut a_buf) => match read {
                Ok(n) if n > 0 => if b_write.write_all(&a_buf[..n]).await.is_err() { break },
                _ => break,
            },
            read = b_read.read(&mut b_buf) => match read {
                Ok(n) if n > 0 => if a_write.write_all(&b_buf[..n]).await.is_err() { break },
                _ => break,
            },
            _ = tokio::time::sleep(idle) => break,
        }
    }
    let _ = a_write.shutdown().await;
    let _ = b_write.shutdown().await;
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::headers::test_map as headers;

    #[test]
    fn only_http_1_1_websocket_upgrades_count() {
        let ws = headers(&[
            ("connection", "keep-alive, Upgrade"),
            ("upgrade", "WebSocket"),
        ]);
        assert!(is_websocket(&ws, Version::HTTP_11));
        assert!(!is_websocket(&ws, Version::HTTP_10));
        assert!(!is_websocket(
            &headers(&[("connection", "upgrade"), ("upgrade", "h2c")]),
            Version::HTTP_11
        ));
        assert!(!is_websocket(
            &headers(&[("upgrade", "websocket")]),
            Version::HTTP_11
        ));
        let two = headers(&[
            ("connection", "upgrade"),
            ("upgrade", "websocket"),
            ("upgrade", "h2c"),
        ]);
        assert!(!is_websocket(&two, Version::HTTP_11));
    }
}
