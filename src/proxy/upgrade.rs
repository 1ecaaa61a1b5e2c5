//! WebSocket upgrades: authenticated like any request, forwarded with the upgrade headers
//! restored, and tunnelled both ways only after the upstream completes the handshake (a 101
//! with the accept value the client's key calls for). A tunnel lives while its token would
//! still be accepted: it closes at the token's expiry or when its session is revoked.

use std::future::Future;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use http::header::{
    HeaderMap, HeaderValue, CONNECTION, SEC_WEBSOCKET_ACCEPT, SEC_WEBSOCKET_KEY, UPGRADE,
};
use http::{Request, Version};
use hyper::upgrade::OnUpgrade;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::error::GatewayError;
use crate::identity::Identity;
use crate::store::{RevocationWatch, Store};
use crate::upstream::Switched;

/// A tunnel with no traffic either way for this long is closed.
pub(crate) const IDLE_TIMEOUT: Duration = Duration::from_secs(600);

/// RFC 6455 1.3: what the server appends to the client's key before hashing it.
const GUID: &[u8] = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11";
/// Base64 of a SHA-1 digest (20 bytes), padded.
const ACCEPT_LEN: usize = 28;

/// An HTTP/1.1 `Connection: upgrade` + `Upgrade: websocket` request. Any other protocol
/// (`h2c` above all) is not an upgrade wxgate honours: its headers are simply dropped.
pub(crate) fn is_websocket(headers: &HeaderMap, version: Version) -> bool {
    version == Version::HTTP_11 && names_upgrade(headers) && upgrades_to_websocket(headers)
}

/// A `Connection` header carries the `upgrade` token.
fn names_upgrade(headers: &HeaderMap) -> bool {
    headers
        .get_all(CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|token| token.trim().eq_ignore_ascii_case("upgrade"))
}

/// Exactly one `Upgrade` header, and it is `websocket`.
fn upgrades_to_websocket(headers: &HeaderMap) -> bool {
    let mut protocols = headers.get_all(UPGRADE).iter();
    matches!(
        (protocols.next(), protocols.next()),
        (Some(p), None) if p.as_bytes().trim_ascii().eq_ignore_ascii_case(b"websocket")
    )
}

/// The upgrade headers of a forwarded WebSocket request, as header lines: the two
/// hop-by-hop headers an upgrade needs, after hygiene removed the client's.
pub(crate) const REQUEST_LINES: &[u8] = b"connection: upgrade\r\nupgrade: websocket\r\n";

/// Puts back the two hop-by-hop headers an upgrade needs (on the 101 answer), after hygiene
/// removed them.
pub(crate) fn restore_headers(headers: &mut HeaderMap) {
    headers.insert(CONNECTION, HeaderValue::from_static("upgrade"));
    headers.insert(UPGRADE, HeaderValue::from_static("websocket"));
}

/// A WebSocket upgrade on its way upstream: the client's side of the connection, the
/// accept value its key calls for, and what ends the tunnel.
pub(crate) struct Pending {
    client: OnUpgrade,
    accept: [u8; ACCEPT_LEN],
    lifetime: Lifetime,
}

impl Pending {
    /// Checks the client's half of the handshake (400 without a proper key) and begins
    /// watching the session of `identity`, if the request carried a token.
    pub(crate) fn new<B>(
        request: &mut Request<B>,
        identity: Option<&Identity>,
        leeway: Duration,
        store: &Store,
    ) -> Result<Self, GatewayError> {
        let accept = accept_for(request.headers())?;
        let lifetime = identity.map_or_else(Lifetime::default, |identity| {
            Lifetime::of(identity, leeway, store)
        });
        Ok(Self {
            client: hyper::upgrade::on(request),
            accept,
            lifetime,
        })
    }

    /// The upstream answered 101: the tunnel opens if the answer completes this handshake.
    /// Otherwise the upstream did not switch protocols (a status or health endpoint may
    /// answer 101 and go on parsing HTTP), and a tunnel would let the client send it raw
    /// requests with identity headers of its own: 502, and `switched` is dropped (closed).
    pub(crate) fn open(self, switched: Switched) -> Result<(), GatewayError> {
        if let Err(problem) = check_answer(&switched.headers, &self.accept) {
            tracing::warn!(
                problem,
                "upstream answered 101 without the WebSocket handshake"
            );
            return Err(GatewayError::UpstreamUnavailable);
        }
        tunnel(self.client, switched, self.lifetime);
        Ok(())
    }
}

/// The `Sec-WebSocket-Accept` the request's `Sec-WebSocket-Key` calls for (RFC 6455
/// 4.2.2): base64 of the SHA-1 of the key and [`GUID`]. RFC 6455 4.2.1 has the server
/// answer 400 to a handshake without exactly one key that is the base64 of 16 bytes; the
/// request never reaches the upstream.
fn accept_for(headers: &HeaderMap) -> Result<[u8; ACCEPT_LEN], GatewayError> {
    const BAD_KEY: GatewayError =
        GatewayError::InvalidRequest("a WebSocket upgrade needs one valid Sec-WebSocket-Key");
    let mut keys = headers.get_all(SEC_WEBSOCKET_KEY).iter();
    let key = match (keys.next(), keys.next()) {
        (Some(key), None) => key.as_bytes().trim_ascii(),
        _ => return Err(BAD_KEY),
    };
    if !STANDARD.decode(key).is_ok_and(|nonce| nonce.len() == 16) {
        return Err(BAD_KEY);
    }
    let mut sha1 = aws_lc_rs::digest::Context::new(&aws_lc_rs::digest::SHA1_FOR_LEGACY_USE_ONLY);
    sha1.update(key);
    sha1.update(GUID);
    let mut accept = [0u8; ACCEPT_LEN];
    match STANDARD.encode_slice(sha1.finish(), &mut accept) {
        Ok(ACCEPT_LEN) => Ok(accept),
        _ => Err(GatewayError::Internal("SHA-1 digest of unexpected size")),
    }
}

/// Whether a 101's headers complete the handshake: `Upgrade: websocket`, `Connection:
/// upgrade` and the expected `Sec-WebSocket-Accept` (the checks RFC 6455 4.1 asks of a
/// client). The error says what was wrong, for the log.
fn check_answer(headers: &HeaderMap, accept: &[u8]) -> Result<(), &'static str> {
    if !upgrades_to_websocket(headers) {
        return Err("no Upgrade: websocket");
    }
    if !names_upgrade(headers) {
        return Err("no Connection: upgrade");
    }
    let mut values = headers.get_all(SEC_WEBSOCKET_ACCEPT).iter();
    match (values.next(), values.next()) {
        (Some(value), None) if value.as_bytes().trim_ascii() == accept => Ok(()),
        (None, _) => Err("no Sec-WebSocket-Accept"),
        _ => Err("a Sec-WebSocket-Accept that does not match the key"),
    }
}

/// What ends a tunnel besides idleness: the token's expiry and its session's revocation.
/// A tunnel opened without a token (an `auth = "none"` or `"optional"` route) has neither.
#[derive(Default)]
pub(crate) struct Lifetime {
    expires: Option<tokio::time::Instant>,
    revocation: Option<RevocationWatch>,
}

impl Lifetime {
    /// As long as the token would be accepted on a new request: until `exp` plus the
    /// leeway verification allows, and not after its session is revoked.
    fn of(identity: &Identity, leeway: Duration, store: &Store) -> Self {
        let leeway = i64::try_from(leeway.as_secs()).unwrap_or(i64::MAX);
        Self {
            expires: instant_at(identity.exp.saturating_add(leeway)),
            revocation: identity
                .sid
                .as_deref()
                .map(|sid| store.watch_revocation(sid)),
        }
    }

    /// Completes when the tunnel must close; never, with neither an expiry nor a session.
    async fn ended(self) {
        let expired = async {
            match self.expires {
                Some(at) => tokio::time::sleep_until(at).await,
                None => std::future::pending().await,
            }
        };
        let revoked = async {
            match &self.revocation {
                Some(watch) => watch.revoked().await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            _ = expired => tracing::debug!("tunnel closed: its token expired"),
            _ = revoked => tracing::debug!("tunnel closed: its session was revoked"),
        }
    }
}

/// The monotonic instant of a Unix time (now, if it has passed); `None` when the platform's
/// clocks cannot represent it.
fn instant_at(unix: i64) -> Option<tokio::time::Instant> {
    let at = UNIX_EPOCH.checked_add(Duration::from_secs(u64::try_from(unix).unwrap_or(0)))?;
    let left = at.duration_since(SystemTime::now()).unwrap_or_default();
    tokio::time::Instant::now().checked_add(left)
}

/// Joins the client's upgraded connection, once hyper hands it over, with the upstream's
/// (whose bytes already read past its 101 answer go to the client first).
fn tunnel(client: OnUpgrade, upstream: Switched, lifetime: Lifetime) {
    tokio::spawn(async move {
        let mut client = match client.await {
            Ok(client) => TokioIo::new(client),
            Err(e) => {
                tracing::debug!(error = %e, "upgrade did not complete");
                return;
            }
        };
        if !upstream.early.is_empty() && client.write_all(&upstream.early).await.is_err() {
            return;
        }
        pump(client, upstream.stream, IDLE_TIMEOUT, lifetime.ended()).await;
    });
}

/// Copies both ways until either side closes, nothing moves for `idle`, or `end` completes.
/// Both connections are then closed plainly, without a WebSocket close frame: wxgate does
/// not parse frames, and a close frame written between two of the upstream's writes could
/// land inside one of its frames.
async fn pump<A, B>(a: A, b: B, idle: Duration, end: impl Future<Output = ()>)
where
    A: tokio::io::AsyncRead + tokio::io::AsyncWrite,
    B: tokio::io::AsyncRead + tokio::io::AsyncWrite,
{
    let (mut a_read, mut a_write) = tokio::io::split(a);
    let (mut b_read, mut b_write) = tokio::io::split(b);
    let (mut a_buf, mut b_buf) = (vec![0u8; 8192], vec![0u8; 8192]);
    tokio::pin!(end);
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
            _ = &mut end => break,
        }
    }
    let _ = a_write.shutdown().await;
    let _ = b_write.shutdown().await;
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::proxy::headers::test_map as headers;

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

    fn accept(key: &str) -> Result<String, GatewayError> {
        accept_for(&headers(&[("sec-websocket-key", key)]))
            .map(|a| String::from_utf8_lossy(&a).into_owned())
    }

    #[test]
    fn the_accept_value_is_the_one_rfc_6455_gives_for_its_sample_key() {
        let expected = "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=";
        assert_eq!(
            accept("dGhlIHNhbXBsZSBub25jZQ==").ok().as_deref(),
            Some(expected)
        );
    }

    #[test]
    fn an_upgrade_without_one_key_of_16_bytes_is_a_bad_request() {
        let sixteen = "AAAAAAAAAAAAAAAAAAAAAA==";
        assert!(accept(sixteen).is_ok());
        for bad in [
            "",
            "not base64!",
            "AAAAAAAAAAAAAAAAAAAAAAA=",
            "AAAAAAAAAAAAAAAAAAAA",
            "AAAAAAAAAAAAAAAAAAAAAA",
        ] {
            assert!(
                matches!(accept(bad), Err(GatewayError::InvalidRequest(_))),
                "{bad:?}"
            );
        }
        assert!(accept_for(&HeaderMap::new()).is_err(), "no key");
        let two = headers(&[
            ("sec-websocket-key", sixteen),
            ("sec-websocket-key", sixteen),
        ]);
        assert!(accept_for(&two).is_err(), "two keys");
    }

    #[test]
    fn only_a_101_with_the_whole_handshake_opens_a_tunnel() {
        let right = "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=";
        let accept = right.as_bytes();
        let good = [
            ("upgrade", "WebSocket"),
            ("connection", "Upgrade"),
            ("sec-websocket-accept", right),
        ];
        assert_eq!(check_answer(&headers(&good), accept), Ok(()));
        #[rustfmt::skip]
        let bad: [&[(&str, &str)]; 7] = [
            &[],
            &[("connection", "upgrade"), ("sec-websocket-accept", right)],
            &[("upgrade", "h2c"), ("connection", "upgrade"), ("sec-websocket-accept", right)],
            &[("upgrade", "websocket"), ("sec-websocket-accept", right)],
            &[("upgrade", "websocket"), ("connection", "upgrade")],
            &[("upgrade", "websocket"), ("connection", "upgrade"), ("sec-websocket-accept", "AAAAAAAAAAAAAAAAAAAAAAAAAAA=")],
            &[("upgrade", "websocket"), ("connection", "upgrade"), ("sec-websocket-accept", right), ("sec-websocket-accept", right)],
        ];
        for answer in bad {
            assert!(
                check_answer(&headers(answer), accept).is_err(),
                "{answer:?}"
            );
        }
    }

    #[tokio::test]
    async fn unix_times_become_instants_and_past_ones_now() {
        let now = crate::tokens::now_unix();
        let left = |unix| instant_at(unix).map(|at| at - tokio::time::Instant::now());
        let soon = left(now + 2);
        let within = |d: Duration| d > Duration::from_secs(1) && d <= Duration::from_secs(2);
        assert!(soon.is_some_and(within), "{soon:?}");
        assert_eq!(left(now - 10), Some(Duration::ZERO));
    }

    #[tokio::test]
    async fn a_tunnel_lives_until_exp_plus_the_leeway_and_watches_its_session() {
        let store = Store::memory();
        let identity = Identity {
            openid: "o1".into(),
            unionid: None,
            appid: Some("wx1".into()),
            sid: Some("s1".into()),
            exp: crate::tokens::now_unix() + 1,
            ext: crate::claims::Ext::new(),
            phone: None,
        };
        let lifetime = Lifetime::of(&identity, Duration::from_secs(30), &store);
        let left = lifetime.expires.map(|at| at - tokio::time::Instant::now());
        let within = |d: Duration| d > Duration::from_secs(30) && d <= Duration::from_secs(31);
        assert!(left.is_some_and(within), "{left:?}");
        store.revoke("s1", identity.exp + 60).await.ok();
        let ended = tokio::time::timeout(Duration::from_secs(1), lifetime.ended()).await;
        assert!(ended.is_ok(), "the revocation ended the tunnel's life");
    }
}
