//! `request_timeout`: a client that does not finish its request in time gets 408, on gateway
//! endpoints and on proxied routes alike, and the upstream never gets a complete request.

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
