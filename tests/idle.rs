//! Idle HTTP/1 keep-alive connections are parked after a second without a request (hyper's
//! buffers freed, the socket kept): a parked connection serves its next request, finishes a
//! request head begun before it parked, still closes at `header_read_timeout` (idle, or
//! dripping a head), never parks with a request in flight, upgrades to a WebSocket (whose
//! quiet tunnel is never parked), and closes at once on shutdown.
//!
//! The pauses here are the input under test (a client that says nothing for a while), so
//! they are sleeps; each is longer than the one second after which a connection parks.
// Test code may panic on what it set up, and its helpers are `pub` for the test files.
#![allow(clippy::unwrap_used, clippy::expect_used, unreachable_pub)]

mod support;

use std::time::{Duration, Instant};

use support::raw::{head, Raw};
use support::{mint, World};

/// Longer than the idle second after which a connection parks.
const PAUSE: Duration = Duration::from_millis(1500);

async fn world(header_read_timeout: &str) -> World {
    let extra = format!("header_read_timeout = \"{header_read_timeout}\"");
    World::start_with(|c| c.server_extra = extra).await
}

fn targets(world: &World) -> Vec<String> {
    world
        .upstream
        .requests()
        .into_iter()
        .map(|r| r.target)
        .collect()
}

#[tokio::test]
async fn a_parked_connection_serves_its_next_requests() {
    let world = world("5s").await;
    let mut raw = Raw::connect(world.gateway.addr).await;
    raw.send(head("GET /public/first", &[]).as_bytes()).await;
    assert_eq!(raw.reply().await.map(|r| r.status), Some(200));
    tokio::time::sleep(PAUSE).await;
    // Two pipelined requests in one write after the park, then one more after another.
    let two = head("GET /public/second", &[]) + &head("GET /public/third", &[]);
    raw.send(two.as_bytes()).await;
    assert_eq!(raw.reply().await.map(|r| r.status), Some(200));
    assert_eq!(raw.reply().await.map(|r| r.status), Some(200));
    tokio::time::sleep(PAUSE).await;
    let token = mint("parked_1", 600);
    let auth = format!("Authorization: Bearer {token}");
    raw.send(head("GET /api/fourth", &[&auth]).as_bytes()).await;
    let reply = raw.reply().await.expect("an answer after the second park");
    assert_eq!(reply.status, 200);
    assert_eq!(
        targets(&world),
        [
            "/public/first",
            "/public/second",
            "/public/third",
            "/api/fourth"
        ]
    );
    let seen = world.upstream.requests();
    assert_eq!(seen[3].one("x-openid"), Some("parked_1"));
}

#[tokio::test]
async fn parked_connections_are_counted_in_metrics_and_all_resume() {
    // More connections than the other tests of this file ever park at once, so the gauge
    // can only reach this many with these parked.
    const N: usize = 20;
    let world = world("5s").await;
    let mut conns = Vec::new();
    for i in 0..N {
        let mut raw = Raw::connect(world.gateway.addr).await;
        raw.send(head(&format!("GET /public/a{i}"), &[]).as_bytes())
            .await;
        assert_eq!(raw.reply().await.map(|r| r.status), Some(200));
        conns.push(raw);
    }
    tokio::time::sleep(PAUSE).await;
    let metrics = world
        .http
        .get(format!("http://{}/metrics", world.gateway.admin))
        .send()
        .await
        .expect("scrape")
        .text()
        .await
        .expect("metrics text");
    let parked = wxgate::metric_sample(&metrics, "wxgate_parked_connections");
    assert!(parked >= N as f64, "{parked} parked connections, {N} idle");
    for (i, raw) in conns.iter_mut().enumerate() {
        raw.send(head(&format!("GET /public/b{i}"), &[]).as_bytes())
            .await;
        assert_eq!(raw.reply().await.map(|r| r.status), Some(200), "conn {i}");
    }
}

#[tokio::test]
async fn a_request_head_begun_before_the_park_is_finished_after_it() {
    let world = world("5s").await;
    let mut raw = Raw::connect(world.gateway.addr).await;
    raw.send(head("GET /public/warm", &[]).as_bytes()).await;
    assert_eq!(raw.reply().await.map(|r| r.status), Some(200));
    let request = head("GET /public/split", &["X-Part: one"]);
    let (begun, rest) = request.split_at(request.find("X-Part").expect("header"));
    raw.send(begun.as_bytes()).await;
    tokio::time::sleep(PAUSE).await;
    raw.send(rest.as_bytes()).await;
    let reply = raw.reply().await.expect("an answer to the split head");
    assert_eq!(reply.status, 200);
    assert_eq!(targets(&world), ["/public/warm", "/public/split"]);
    let seen = world.upstream.requests();
    assert_eq!(seen[1].one("x-part"), Some("one"));
}

#[tokio::test]
async fn a_parked_connection_still_closes_at_header_read_timeout() {
    let world = world("2500ms").await;
    let mut raw = Raw::connect(world.gateway.addr).await;
    raw.send(head("GET /public/once", &[]).as_bytes()).await;
    assert_eq!(raw.reply().await.map(|r| r.status), Some(200));
    let idle = Instant::now();
    assert!(
        raw.closes_within(Duration::from_secs(6)).await,
        "an idle connection outlived header_read_timeout"
    );
    let after = idle.elapsed();
    assert!(
        after >= Duration::from_millis(2000) && after < Duration::from_millis(4500),
        "closed {after:?} after the answer, header_read_timeout is 2.5 s"
    );
}

#[tokio::test]
async fn a_head_dripped_slower_than_the_park_is_still_cut_at_header_read_timeout() {
    let world = world("2500ms").await;
    let mut raw = Raw::connect(world.gateway.addr).await;
    raw.send(head("GET /public/once", &[]).as_bytes()).await;
    assert_eq!(raw.reply().await.map(|r| r.status), Some(200));
    // One header line every 1.2 s: the connection parks between lines, and each line makes
    // a new hyper connection, whose own timer would start again.
    let started = Instant::now();
    raw.send(b"GET /public/drip HTTP/1.1\r\nHost: x\r\n").await;
    let closed = loop {
        if raw.closes_within(Duration::from_millis(1200)).await {
            break true;
        }
        if started.elapsed() > Duration::from_secs(8) {
            break false;
        }
        raw.send(b"X-Drip: a\r\n").await;
    };
    assert!(closed, "a dripped head kept the connection open for 8 s");
    let after = started.elapsed();
    assert!(
        after < Duration::from_millis(5000),
        "a dripped head was cut after {after:?}; header_read_timeout is 2.5 s"
    );
    assert_eq!(targets(&world), ["/public/once"]);
}

#[tokio::test]
async fn a_connection_with_a_request_in_flight_is_never_parked() {
    let world = world("5s").await;
    let mut raw = Raw::connect(world.gateway.addr).await;
    // The upstream answers /slow after 3 s: the connection is quiet, the request is not.
    raw.send(head("GET /public/slow", &[]).as_bytes()).await;
    assert_eq!(raw.reply().await.map(|r| r.status), Some(200));
    // A body that comes after a pause longer than the park.
    raw.send(b"POST /public/late-body HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\n")
        .await;
    tokio::time::sleep(PAUSE).await;
    raw.send(b"hello").await;
    assert_eq!(raw.reply().await.map(|r| r.status), Some(200));
    let seen = world.upstream.requests();
    assert_eq!(targets(&world), ["/public/slow", "/public/late-body"]);
    assert_eq!(seen[1].body, b"hello");
}

#[tokio::test]
async fn a_parked_connection_upgrades_to_a_websocket() {
    use support::websocket::{echoes, WsUpstream, HANDSHAKE};

    let ws = WsUpstream::echo().await;
    let world = World::start_with(|c| {
        c.server_extra = "header_read_timeout = \"5s\"".into();
        c.routes.push_str(&format!(
            "[[routes]]\nprefix = \"/ws\"\nupstream = \"http://{}\"\n",
            ws.addr
        ));
    })
    .await;
    let auth = format!("Authorization: Bearer {}", mint("ws_parked", 600));
    let mut raw = Raw::connect(world.gateway.addr).await;
    raw.send(head("GET /public/before", &[]).as_bytes()).await;
    assert_eq!(raw.reply().await.map(|r| r.status), Some(200));
    tokio::time::sleep(PAUSE).await;
    let lines = [&HANDSHAKE[..], &[auth.as_str()]].concat();
    raw.send(head("GET /ws/chat", &lines).as_bytes()).await;
    let reply = raw.reply().await.expect("an answer to the upgrade");
    assert_eq!(reply.status, 101, "{reply:?}");
    assert!(echoes(&mut raw, b"still here").await, "the tunnel echoes");
    // A quiet tunnel is not an idle connection: it is never parked.
    tokio::time::sleep(PAUSE).await;
    assert!(
        echoes(&mut raw, b"after a pause").await,
        "a quiet tunnel was cut"
    );
}

#[tokio::test]
async fn a_parked_connection_closes_at_once_on_shutdown() {
    let world = world("30s").await;
    let mut raw = Raw::connect(world.gateway.addr).await;
    raw.send(head("GET /public/once", &[]).as_bytes()).await;
    assert_eq!(raw.reply().await.map(|r| r.status), Some(200));
    tokio::time::sleep(PAUSE).await;
    let task = world.gateway.begin_shutdown();
    assert!(
        raw.closes_within(Duration::from_secs(2)).await,
        "a parked connection held the shutdown"
    );
    tokio::time::timeout(Duration::from_secs(5), task)
        .await
        .expect("shutdown finished")
        .expect("gateway task");
}
