//! Several upstreams per route: round-robin, passive ejection of a target that refuses
//! connections and its return after `eject_for`, and a retry on another target only for
//! idempotent requests without a body, which never reached the refusing target.
// Test code may panic on what it set up, and its helpers are `pub` for the test files.
#![allow(clippy::unwrap_used, clippy::expect_used, unreachable_pub)]

mod support;

use support::{closed_port, mint, ConfigBuilder, RunningGateway, Upstream, Wechat};

async fn gateway(targets: &[String], extra: &str) -> (Wechat, RunningGateway) {
    let wechat = Wechat::start().await;
    let mut config = ConfigBuilder::new(&wechat.base(), "http://127.0.0.1:9");
    let list: Vec<String> = targets.iter().map(|t| format!("\"{t}\"")).collect();
    config.routes = format!(
        "[[routes]]\nprefix = \"/api\"\nupstreams = [{}]\n{extra}\n",
        list.join(", ")
    );
    let gateway = RunningGateway::start(&config.text()).await;
    (wechat, gateway)
}

async fn send(gw: &RunningGateway, method: reqwest::Method, body: Option<&str>) -> u16 {
    let mut request = support::client()
        .request(method, gw.url("/api/x"))
        .bearer_auth(mint("o_rr", 300));
    if let Some(body) = body {
        request = request.body(body.to_string());
    }
    request.send().await.expect("request").status().as_u16()
}

#[tokio::test]
async fn requests_take_turns_across_upstreams() {
    let (a, b) = (Upstream::start().await, Upstream::start().await);
    let (_wechat, gw) = gateway(&[a.base(), b.base()], "").await;
    for _ in 0..6 {
        assert_eq!(send(&gw, reqwest::Method::GET, None).await, 200);
    }
    assert_eq!((a.count(), b.count()), (3, 3));
}

#[tokio::test]
async fn a_refusing_target_is_ejected_and_a_get_is_retried_elsewhere() {
    let live = Upstream::start().await;
    let dead = format!("http://{}", closed_port().await);
    let (_wechat, gw) = gateway(&[dead, live.base()], "").await;
    for _ in 0..4 {
        assert_eq!(send(&gw, reqwest::Method::GET, None).await, 200);
    }
    assert_eq!(live.count(), 4, "every request ended on the live target");
    // Ejected: even a POST now goes to the live target.
    assert_eq!(send(&gw, reqwest::Method::POST, Some("{}")).await, 200);
    assert_eq!(live.count(), 5);
}

#[tokio::test]
async fn a_post_is_never_retried_on_another_target() {
    let live = Upstream::start().await;
    let dead = format!("http://{}", closed_port().await);
    let (_wechat, gw) = gateway(&[dead, live.base()], "").await;
    assert_eq!(
        send(&gw, reqwest::Method::POST, Some("{\"pay\":1}")).await,
        502
    );
    assert_eq!(live.count(), 0, "the POST was not sent twice");
    let put_with_body = send(&gw, reqwest::Method::PUT, Some("x")).await;
    assert_eq!(put_with_body, 200, "the next turn is the live target");
}

#[tokio::test]
async fn an_ejected_target_returns_after_the_cool_down() {
    let live = Upstream::start().await;
    let back_addr = closed_port().await;
    let (_wechat, gw) = gateway(
        &[format!("http://{back_addr}"), live.base()],
        "eject_for = \"200ms\"",
    )
    .await;
    assert_eq!(send(&gw, reqwest::Method::GET, None).await, 200);
    let back = Upstream::start_at(back_addr).await;
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    while back.count() == 0 {
        assert!(
            std::time::Instant::now() < deadline,
            "the target never came back"
        );
        assert_eq!(send(&gw, reqwest::Method::GET, None).await, 200);
    }
}
