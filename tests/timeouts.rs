//! `request_timeout`: a client that does not finish its request in time gets 408, on gateway
//! endpoints and on proxied routes alike, and the upstream never gets a complete request.
// Test code may panic on what it set up, and its helpers are `pub` for the test files.
#![allow(clippy::unwrap_used, clippy::expect_used, unreachable_pub)]

mod support;

use std::time::Duration;

use support::World;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Sends a head promising `declared` body bytes, sends only a few, and reads the answer.
async fn stall(world: &World, head: &str, declared: usize) -> String {
    let mut stream = TcpStream::connect(world.gateway.addr)
        .await
        .expect("connect");
    let request = format!("{head}Host: t\r\nContent-Type: application/json\r\nContent-Length: {declared}\r\n\r\n{{\"co");
    stream.write_all(request.as_bytes()).await.expect("write");
    let mut answer = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut answer)).await;
    assert!(
        read.is_ok(),
        "the gateway neither answered nor closed within 10 s"
    );
    String::from_utf8_lossy(&answer).into_owned()
}

#[tokio::test]
async fn a_stalled_login_body_is_408() {
    let world = World::start_with(|c| c.server_extra = "request_timeout = \"500ms\"".into()).await;
    let answer = stall(&world, "POST /auth/login HTTP/1.1\r\n", 100).await;
    assert_eq!(support::status_of(&answer), 408, "{answer}");
    assert!(answer.contains("\"request_timeout\""), "{answer}");
    assert_eq!(world.wechat.logins(), 0);
}

#[tokio::test]
async fn a_stalled_proxied_body_is_408_and_never_completes_upstream() {
    let world = World::start_with(|c| c.server_extra = "request_timeout = \"500ms\"".into()).await;
    let answer = stall(&world, "POST /public/upload HTTP/1.1\r\n", 100).await;
    assert_eq!(support::status_of(&answer), 408, "{answer}");
    assert!(answer.contains("\"request_timeout\""), "{answer}");
    assert!(
        world.upstream.requests().iter().all(|r| r.body.len() < 100),
        "the upstream got a complete body"
    );
}

#[tokio::test]
async fn a_trickling_body_is_the_clients_408_not_an_upstream_504() {
    let world = World::start_with(|c| {
        c.server_extra = "request_timeout = \"3s\"".into();
        c.routes += &format!(
            "[[routes]]\nprefix = \"/upload\"\nupstream = \"{}\"\nauth = \"none\"\nresponse_timeout = \"1s\"\n",
            c.upstream
        );
    })
    .await;
    let head = "POST /upload/file HTTP/1.1\r\nHost: t\r\nContent-Length: 100000\r\n\r\n";
    let (answer, elapsed) =
        support::trickle(world.gateway.addr, head, Duration::from_millis(300)).await;
    assert_eq!(support::status_of(&answer), 408, "{answer}");
    assert!(answer.contains("\"request_timeout\""), "{answer}");
    // At `request_timeout`, not at the route's 1 s `response_timeout`.
    assert!(
        elapsed >= Duration::from_millis(2500) && elapsed <= Duration::from_secs(4),
        "answered after {elapsed:?}"
    );
    assert!(
        world
            .upstream
            .requests()
            .iter()
            .all(|r| r.body.len() < 100_000),
        "the upstream got a complete request"
    );
    // Blamed on the client in the metrics too: a 4xx of the route, no 5xx.
    let metrics = world
        .http
        .get(format!("http://{}/metrics", world.gateway.admin))
        .send()
        .await
        .expect("metrics")
        .text()
        .await
        .expect("text");
    let count = |class: &str| {
        let key = format!("wxgate_requests_total{{route=\"/upload\",class=\"{class}\"}} ");
        metrics
            .lines()
            .find_map(|l| l.strip_prefix(key.as_str()))
            .map_or(0.0, |v| v.trim().parse::<f64>().unwrap_or(0.0))
    };
    assert_eq!((count("4xx"), count("5xx")), (1.0, 0.0), "{metrics}");
}
