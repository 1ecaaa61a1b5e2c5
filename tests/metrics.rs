//! The admin `/metrics` scrape, and WeChat quota protection: the cap on calls in flight and
//! the circuit breaker, both answered locally and visible in metrics.
//!
//! Metrics are process-wide and tests run in parallel in one process, so every assertion
//! is about a series only its own test touches, or about an increase.
// Test code may panic on what it set up, and its helpers are `pub` for the test files.
#![allow(clippy::unwrap_used, clippy::expect_used, unreachable_pub)]

mod support;

use std::time::Duration;

use serde_json::{json, Value};
use support::World;
use wxgate::metric_sample as sample;

async fn scrape(world: &World) -> String {
    let response = world
        .http
        .get(format!("http://{}/metrics", world.gateway.admin))
        .send()
        .await
        .expect("scrape");
    assert_eq!(response.status(), 200);
    assert!(response.headers()["content-type"]
        .to_str()
        .expect("ascii")
        .starts_with("application/openmetrics-text"));
    response.text().await.expect("text")
}

fn route_with(world_upstream: &str, prefix: &str) -> String {
    format!("[[routes]]\nprefix = \"{prefix}\"\nupstream = \"{world_upstream}\"\n")
}

#[tokio::test]
async fn a_scrape_shows_requests_latencies_logins_wechat_and_verification() {
    let world = World::start_with(|c| {
        let upstream = c.upstream.clone();
        c.routes += &route_with(&upstream, "/metrics-test");
    })
    .await;
    let token = world.token().await;
    for _ in 0..3 {
        assert_eq!(
            world
                .get_with_token("/metrics-test/x", &token)
                .await
                .status(),
            200
        );
    }
    assert_eq!(
        world
            .get_with_token("/metrics-test/x", "bad")
            .await
            .status(),
        401
    );
    let text = scrape(&world).await;
    let route = "{route=\"/metrics-test\"";
    assert_eq!(
        sample(
            &text,
            &format!("wxgate_requests_total{route},class=\"2xx\"}}")
        ),
        3.0,
        "{text}"
    );
    assert_eq!(
        sample(
            &text,
            &format!("wxgate_requests_total{route},class=\"4xx\"}}")
        ),
        1.0
    );
    assert_eq!(
        sample(
            &text,
            &format!("wxgate_request_duration_seconds_count{route},class=\"2xx\"}}")
        ),
        3.0
    );
    assert_eq!(
        sample(
            &text,
            &format!("wxgate_upstream_duration_seconds_count{route}}}")
        ),
        3.0
    );
    assert!(sample(&text, &format!("wxgate_response_body_bytes_total{route}}}")) > 0.0);
    for series in [
        "wxgate_logins_total{outcome=\"ok\"}",
        "wxgate_wechat_request_duration_seconds_count{api=\"jscode2session\",outcome=\"ok\"}",
        "wxgate_token_verifications_total{outcome=\"valid\"}",
        "wxgate_token_verifications_total{outcome=\"malformed\"}",
        "wxgate_verified_token_cache_total{outcome=\"hit\"}",
        "wxgate_verified_token_cache_total{outcome=\"miss\"}",
        "wxgate_open_connections{listener=\"admin\"}",
        "wxgate_config_reloads_total{outcome=\"ok\"}",
        "wxgate_config_last_reload_success_timestamp_seconds",
    ] {
        assert!(sample(&text, series) >= 1.0, "{series} missing in\n{text}");
    }
    assert!(!text.contains(&token), "no token in metrics");
}

async fn login(world: &World, code: &str) -> (u16, Value, Option<String>) {
    let response = world
        .post_json("/auth/login", json!({ "code": code }))
        .await;
    let status = response.status().as_u16();
    let retry = response
        .headers()
        .get("retry-after")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    (status, response.json().await.unwrap_or(Value::Null), retry)
}

#[tokio::test]
async fn failures_in_a_row_open_the_circuit_and_logins_are_answered_without_wechat() {
    let world = World::start_with(|c| {
        c.wechat_extra = "circuit_failures = 2\ncircuit_open_for = \"30s\"\n".into();
    })
    .await;
    for code in ["err-1a", "err-1b"] {
        let (status, body, _) = login(&world, code).await;
        assert_eq!((status, body["error"].as_str()), (503, Some("wechat_busy")));
    }
    assert_eq!(world.wechat.logins(), 2);
    let (status, body, retry) = login(&world, "good1").await;
    assert_eq!((status, body["error"].as_str()), (503, Some("wechat_busy")));
    let retry: u64 = retry.expect("Retry-After").parse().expect("seconds");
    assert!((20..=31).contains(&retry), "{retry}");
    assert_eq!(world.wechat.logins(), 2, "WeChat was not called while open");
    let text = scrape(&world).await;
    assert!(
        sample(
            &text,
            "wxgate_wechat_shed_total{api=\"jscode2session\",outcome=\"circuit_open\"}"
        ) >= 1.0
    );
    assert!(
        sample(
            &text,
            "wxgate_wechat_errcodes_total{api=\"jscode2session\",errcode_class=\"busy\"}"
        ) >= 2.0
    );
}

#[tokio::test]
async fn repeated_45011_hold_logins_for_a_minute_without_calling_wechat() {
    let world = World::start_with(|c| c.wechat_extra = "circuit_failures = 2\n".into()).await;
    for code in ["err45011a", "err45011b"] {
        let (status, _, _) = login(&world, code).await;
        assert_eq!(status, 429);
    }
    let (status, body, retry) = login(&world, "good2").await;
    assert_eq!(
        (status, body["error"].as_str()),
        (429, Some("rate_limited"))
    );
    let retry: u64 = retry.expect("Retry-After").parse().expect("seconds");
    assert!((50..=61).contains(&retry), "{retry}");
    assert_eq!(world.wechat.logins(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn calls_beyond_the_cap_are_shed_at_once() {
    let world = World::start_with(|c| {
        c.wechat_extra = "max_concurrent_calls = 1\n".into();
    })
    .await;
    let slow = {
        let request = world
            .http
            .post(world.url("/auth/login"))
            .json(&json!({"code": "slow-cap"}));
        tokio::spawn(async move { request.send().await.map(|r| r.status().as_u16()) })
    };
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while world.wechat.logins() == 0 {
        assert!(
            std::time::Instant::now() < deadline,
            "the slow login never reached WeChat"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let started = std::time::Instant::now();
    let (status, body, _) = login(&world, "second-cap").await;
    assert_eq!((status, body["error"].as_str()), (503, Some("wechat_busy")));
    assert!(
        started.elapsed() < Duration::from_secs(1),
        "answered at once"
    );
    assert_eq!(world.wechat.logins(), 1);
    // The slow code outlasts the 1 s WeChat timeout of the test config.
    assert_eq!(slow.await.expect("task").expect("slow login"), 504);
}
