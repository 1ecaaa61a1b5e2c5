//! WebSocket upgrades over real sockets: a tunnel opens only when the upstream completes the
//! handshake (a bare 101 is 502 and never tunnelled), a bad client handshake is 400, and an
//! open tunnel closes when its session is revoked or its token expires.
// Test code may panic on what it set up, and its helpers are `pub` for the test files.
#![allow(clippy::unwrap_used, clippy::expect_used, unreachable_pub)]

mod support;

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use serde_json::{json, Value};
use support::raw::{head, Raw};
use support::websocket::{self, echoes, upgrade, WsUpstream, ACCEPT, HANDSHAKE};
use support::{mint, World};

/// An authenticated route to `upstream` at `prefix`, as config text.
fn route(prefix: &str, upstream: &WsUpstream) -> String {
    format!(
        "[[routes]]\nprefix = \"{prefix}\"\nupstream = \"http://{}\"\n",
        upstream.addr
    )
}

fn bearer(token: &str) -> String {
    format!("Authorization: Bearer {token}")
}

#[tokio::test]
async fn an_authenticated_websocket_upgrade_is_tunnelled_after_the_upstreams_handshake() {
    let upstream = WsUpstream::echo().await;
    let world = World::start_with(|c| c.routes.push_str(&route("/ws", &upstream))).await;
    let (_, anonymous) = upgrade(world.gateway.addr, "/ws/chat", &[]).await;
    assert_eq!(
        anonymous.map(|r| r.status),
        Some(401),
        "no token, no tunnel"
    );
    let auth = bearer(&mint("ws_1", 600));
    let (mut raw, reply) = upgrade(world.gateway.addr, "/ws/chat", &[&auth]).await;
    let reply = reply.expect("answer");
    assert_eq!(reply.status, 101, "{reply:?}");
    assert_eq!(reply.header("sec-websocket-accept"), Some(ACCEPT));
    let upgrade_header = reply.header("upgrade").unwrap_or_default();
    assert!(
        upgrade_header.eq_ignore_ascii_case("websocket"),
        "{reply:?}"
    );
    assert!(
        echoes(&mut raw, b"frame-bytes").await,
        "the tunnel carries bytes both ways"
    );
    let seen = upstream.seen();
    assert_eq!(
        seen.len(),
        1,
        "the anonymous upgrade never reached the upstream"
    );
    assert!(
        seen[0].head.contains("x-openid: ws_1") && !seen[0].head.contains("authorization"),
        "{}",
        seen[0].head
    );
}

#[tokio::test]
async fn a_websocket_upgrade_the_upstream_refuses_does_not_open_a_tunnel() {
    let world = World::start().await;
    // The recording upstream answers 200, never 101: the connection must stay HTTP, so the
    // second, token-less request is authenticated by wxgate and refused.
    let requests = head("GET /public/ws", &HANDSHAKE) + &head("GET /api/after", &[]);
    let mut raw = Raw::connect(world.gateway.addr).await;
    raw.send(requests.as_bytes()).await;
    assert_eq!(raw.reply().await.map(|r| r.status), Some(200));
    assert_eq!(raw.reply().await.map(|r| r.status), Some(401));
    let targets: Vec<String> = world
        .upstream
        .requests()
        .into_iter()
        .map(|r| r.target)
        .collect();
    assert_eq!(targets, ["/public/ws"]);
}

#[tokio::test]
async fn a_101_without_the_websocket_handshake_is_502_and_nothing_is_tunnelled() {
    // Each answer is given the accept value the request's key calls for.
    #[rustfmt::skip]
    let answers: [fn(&str) -> String; 6] = [
        |_| "HTTP/1.1 101 Switching Protocols\r\n\r\n".into(),
        |a| format!("HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: {a}\r\n\r\n"),
        |a| format!("HTTP/1.1 101 Switching Protocols\r\nUpgrade: h2c\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: {a}\r\n\r\n"),
        |a| format!("HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nSec-WebSocket-Accept: {a}\r\n\r\n"),
        |_| "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n".into(),
        |_| websocket::switching(&websocket::accept("AAAAAAAAAAAAAAAAAAAAAA==")),
    ];
    let mut upstreams = Vec::new();
    for answer in answers {
        upstreams.push(WsUpstream::start(answer).await);
    }
    let world = World::start_with(|c| {
        for (i, upstream) in upstreams.iter().enumerate() {
            c.routes.push_str(&route(&format!("/bad{i}"), upstream));
        }
    })
    .await;
    let auth = bearer(&mint("ws_2", 600));
    for (i, upstream) in upstreams.iter().enumerate() {
        let (mut raw, reply) =
            upgrade(world.gateway.addr, &format!("/bad{i}/chat"), &[&auth]).await;
        let reply = reply.expect("answer");
        assert_eq!(reply.status, 502, "answer {i}: {reply:?}");
        assert_eq!(reply.error(), "upstream_unavailable", "answer {i}");
        // The client's next bytes are a request to wxgate (refused: no token), not raw
        // bytes into an upstream that may still be parsing HTTP.
        let forged = head(&format!("GET /bad{i}/admin"), &["X-OpenId: forged_1"]);
        raw.send(forged.as_bytes()).await;
        assert_eq!(raw.reply().await.map(|r| r.status), Some(401), "answer {i}");
        let dropped = upstream
            .wait_for(Duration::from_secs(5), |all| all.iter().all(|s| s.closed))
            .await;
        assert!(dropped, "answer {i}: the refused 101's connection was kept");
        let seen = upstream.seen();
        assert_eq!(seen.len(), 1, "answer {i}: the upstream was reached again");
        let after = String::from_utf8_lossy(&seen[0].after);
        assert!(!after.contains("forged"), "answer {i}: tunnelled {after:?}");
    }
}

#[tokio::test]
async fn an_upgrade_without_one_valid_key_is_400_and_never_forwarded() {
    let upstream = WsUpstream::echo().await;
    let world = World::start_with(|c| c.routes.push_str(&route("/ws", &upstream))).await;
    let auth = bearer(&mint("ws_3", 600));
    let common = [
        "Connection: Upgrade",
        "Upgrade: websocket",
        "Sec-WebSocket-Version: 13",
    ];
    #[rustfmt::skip]
    let keys: [&[&str]; 4] = [
        &[],
        &["Sec-WebSocket-Key: not base64!"],
        &["Sec-WebSocket-Key: AAAAAAAAAAA="],
        &[HANDSHAKE[3], HANDSHAKE[3]],
    ];
    for key in keys {
        let lines = [&common[..], key, &[auth.as_str()]].concat();
        let mut raw = Raw::connect(world.gateway.addr).await;
        raw.send(head("GET /ws/chat", &lines).as_bytes()).await;
        let reply = raw.reply().await.expect("answer");
        assert_eq!(reply.status, 400, "{key:?}: {reply:?}");
        assert_eq!(reply.error(), "invalid_request", "{key:?}");
    }
    // A proper upgrade after them is the first thing the upstream sees.
    let (_, reply) = upgrade(world.gateway.addr, "/ws/chat", &[&auth]).await;
    assert_eq!(reply.map(|r| r.status), Some(101));
    assert_eq!(
        upstream.seen().len(),
        1,
        "a bad handshake reached the upstream"
    );
}

#[tokio::test]
async fn a_tunnel_closes_when_its_session_logs_out() {
    let upstream = WsUpstream::echo().await;
    let world = World::start_with(|c| c.routes.push_str(&route("/ws", &upstream))).await;
    let (leaving, staying) = (world.token().await, world.token().await);
    let (mut gone, reply) = upgrade(world.gateway.addr, "/ws/a", &[&bearer(&leaving)]).await;
    assert_eq!(reply.map(|r| r.status), Some(101));
    let (mut kept, reply) = upgrade(world.gateway.addr, "/ws/b", &[&bearer(&staying)]).await;
    assert_eq!(reply.map(|r| r.status), Some(101));
    assert!(echoes(&mut gone, b"one").await && echoes(&mut kept, b"two").await);

    let (status, _) = world.post_bearer("/auth/logout", &leaving, json!({})).await;
    assert_eq!(status, 204);
    let closed = gone.closes_within(Duration::from_secs(1)).await;
    assert!(
        closed,
        "the logged-out session's tunnel was open 1 s after the logout"
    );
    let upstream_closed = upstream
        .wait_for(Duration::from_secs(1), |all| all[0].closed)
        .await;
    assert!(
        upstream_closed,
        "the upstream side of the tunnel stayed open"
    );
    assert!(
        echoes(&mut kept, b"three").await,
        "another session's tunnel is not touched"
    );
}

/// The `exp` claim of a token.
fn exp_of(token: &str) -> i64 {
    let payload = token.split('.').nth(1).expect("payload");
    let claims: Value =
        serde_json::from_slice(&URL_SAFE_NO_PAD.decode(payload).expect("b64")).expect("json");
    claims["exp"].as_i64().expect("exp")
}

#[tokio::test]
async fn a_tunnel_closes_when_its_token_expires() {
    let upstream = WsUpstream::echo().await;
    let world = World::start_with(|c| {
        c.auth_extra = "leeway = \"0s\"".into();
        c.routes.push_str(&route("/ws", &upstream));
    })
    .await;
    let token = mint("ws_4", 2);
    let exp = exp_of(&token) as f64;
    let (mut raw, reply) = upgrade(world.gateway.addr, "/ws/chat", &[&bearer(&token)]).await;
    assert_eq!(reply.map(|r| r.status), Some(101));
    assert!(echoes(&mut raw, b"before exp").await);
    let closed = raw.closes_within(Duration::from_secs(5)).await;
    let at = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock")
        .as_secs_f64();
    assert!(closed, "the tunnel outlived its token by seconds");
    // The timer runs on the monotonic clock; 100 ms covers the two clocks' disagreement.
    assert!(at >= exp - 0.1, "closed {:.3} s before exp", exp - at);
    assert!(at < exp + 1.0, "closed {:.3} s after exp", at - exp);
}
