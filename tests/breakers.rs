//! WeChat calls a client can make wxgate spend: a failed decrypt's `checksession` is asked
//! once a minute per session at most, every WeChat API has its own circuit breaker (so a
//! failing auxiliary API never sheds logins), and a breaker that has been open lets one
//! probe through, telling everyone else how long the probe can take.
//!
//! Metrics are process-wide: only `a_wechat_failing_every_auxiliary_call_leaves_login_working`
//! opens the `checksession` and `getuserphonenumber` breakers, so only it reads their gauges.
// Test code may panic on what it set up, and its helpers are `pub` for the test files.
#![allow(clippy::unwrap_used, clippy::expect_used, unreachable_pub)]

mod support;

use std::time::{Duration, Instant};

use serde_json::{json, Value};
use support::{ConfigBuilder, World};
use wxgate::devtools::mock_wechat::Failure;
use wxgate::metric_sample as sample;

const CHECKSESSION: &str = "/wxa/checksession";
const PHONE: &str = "/wxa/business/getuserphonenumber";
const STABLE_TOKEN: &str = "/cgi-bin/stable_token";

/// Data no session key opens: every decrypt of it fails.
fn garbage() -> Value {
    json!({"encryptedData": "AAAA", "iv": "AAAA"})
}

/// A per-client limit far above what a test sends, so what is measured is the memo and
/// the breakers, not the limiter.
fn generous_limit(c: &mut ConfigBuilder) {
    c.auth_tables = "[auth.login_rate_limit]\nper_minute = 6000\nburst = 1000\n".into();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fifty_bad_decrypts_from_one_user_make_at_most_one_wechat_call() {
    for failure in [None, Some(Failure::Errcode(-1)), Some(Failure::Status(404))] {
        let world = World::start_with(generous_limit).await;
        world.wechat.mock.fail_path(CHECKSESSION, failure);
        let token = world.token().await;
        // Half at once (they share one question in flight), half after (they find its answer).
        let mut at_once = tokio::task::JoinSet::new();
        for _ in 0..25 {
            let request = world
                .http
                .post(world.url("/auth/decrypt"))
                .bearer_auth(&token)
                .json(&garbage());
            at_once.spawn(async move {
                let response = request.send().await.expect("decrypt");
                let status = response.status().as_u16();
                (status, response.json::<Value>().await.unwrap_or_default())
            });
        }
        while let Some(done) = at_once.join_next().await {
            let (status, answer) = done.expect("task");
            assert_eq!(
                (status, answer["error"].as_str()),
                (400, Some("decrypt_failed")),
                "{failure:?}"
            );
        }
        for _ in 0..25 {
            let (status, answer) = world.post_bearer("/auth/decrypt", &token, garbage()).await;
            assert_eq!(
                (status, answer["error"].as_str()),
                (400, Some("decrypt_failed")),
                "{failure:?}"
            );
        }
        let mock = &world.wechat.mock;
        assert_eq!(mock.calls(CHECKSESSION), 1, "{failure:?}");
        assert_eq!(
            mock.calls(STABLE_TOKEN),
            1,
            "the access_token for that one call: {failure:?}"
        );
        assert_eq!(world.wechat.logins(), 1);
    }
}

#[tokio::test]
async fn a_wechat_failing_every_auxiliary_call_leaves_login_working() {
    let world = World::start_with(|c| {
        generous_limit(c);
        c.wechat_extra = "circuit_failures = 2\n".into();
    })
    .await;
    let mock = &world.wechat.mock;
    mock.fail_path(CHECKSESSION, Some(Failure::Status(404)));
    mock.fail_path(PHONE, Some(Failure::Errcode(-1)));
    for i in 0..6 {
        // A new session each time, so the checksession memo cannot be what stops the calls.
        let token = world.token().await;
        let (status, answer) = world.post_bearer("/auth/decrypt", &token, garbage()).await;
        assert_eq!(
            (status, answer["error"].as_str()),
            (400, Some("decrypt_failed")),
            "user {i}"
        );
        let code = format!("pn-breakers-{i}");
        let (status, answer) = world
            .post_bearer("/auth/phone", &token, json!({ "code": code }))
            .await;
        assert_eq!(
            (status, answer["error"].as_str()),
            (503, Some("wechat_busy")),
            "user {i}"
        );
    }
    assert_eq!(
        mock.calls(CHECKSESSION),
        2,
        "checksession's own breaker opened"
    );
    assert_eq!(
        mock.calls(PHONE),
        2,
        "getuserphonenumber's own breaker opened"
    );
    let (status, answer, _) = world.try_login("breakers-after").await;
    assert_eq!(status, 200, "logins never noticed: {answer}");
    assert_eq!(world.wechat.logins(), 7);

    let text = world
        .http
        .get(format!("http://{}/metrics", world.gateway.admin))
        .send()
        .await
        .expect("scrape")
        .text()
        .await
        .expect("text");
    for api in ["checksession", "getuserphonenumber"] {
        let gauge = format!("wxgate_wechat_circuit_open{{api=\"{api}\"}}");
        assert_eq!(sample(&text, &gauge), 1.0, "{gauge} in\n{text}");
        let shed = format!("wxgate_wechat_shed_total{{api=\"{api}\",outcome=\"circuit_open\"}}");
        assert!(sample(&text, &shed) >= 1.0, "{shed} in\n{text}");
    }
}

/// Sleeps until `at`: the breaker's periods are wall-clock time, nothing signals their end.
async fn wait_until(at: Instant) {
    tokio::time::sleep(at.saturating_duration_since(Instant::now())).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_the_open_period_one_probe_decides_and_retry_after_stays_honest() {
    // Probes are bounded by the test config's 1 s WeChat timeout; the period is longer.
    const OPEN_FOR: Duration = Duration::from_secs(2);
    let world = World::start_with(|c| {
        c.wechat_extra = "circuit_failures = 2\ncircuit_open_for = \"2s\"\n".into();
    })
    .await;
    for code in ["err-1probe1", "err-1probe2"] {
        let (status, answer, _) = world.try_login(code).await;
        assert_eq!(
            (status, answer["error"].as_str()),
            (503, Some("wechat_busy"))
        );
    }
    // The circuit opened before that answer was sent, so it ends before `opened + OPEN_FOR`.
    let opened = Instant::now();
    let (status, answer, retry) = world.try_login("probe-shed1").await;
    assert_eq!(
        (status, answer["error"].as_str()),
        (503, Some("wechat_busy"))
    );
    let retry = retry.expect("Retry-After");
    let left = (opened + OPEN_FOR).saturating_duration_since(Instant::now());
    assert!(
        (1..=left.as_secs() + 1).contains(&retry),
        "Retry-After {retry} s with {left:?} left"
    );
    assert_eq!(world.wechat.logins(), 2);

    wait_until(opened + OPEN_FOR).await;
    // The probe: a slow code, which outlasts the WeChat timeout and so fails.
    let probe = {
        let request = world
            .http
            .post(world.url("/auth/login"))
            .json(&json!({"code": "slow-probe"}));
        tokio::spawn(async move { request.send().await.map(|r| r.status().as_u16()) })
    };
    let deadline = Instant::now() + Duration::from_secs(5);
    while world.wechat.logins() < 3 {
        assert!(Instant::now() < deadline, "the probe never reached WeChat");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let (status, answer, retry) = world.try_login("probe-shed2").await;
    assert_eq!(
        (status, answer["error"].as_str()),
        (503, Some("wechat_busy"))
    );
    assert_eq!(
        retry,
        Some(1),
        "the probe ends within the 1 s WeChat timeout, not a 2 s period"
    );
    assert_eq!(world.wechat.logins(), 3, "one probe at a time");
    assert_eq!(probe.await.expect("task").expect("probe"), 504);

    // The probe really failed: a full period again.
    let reopened = Instant::now();
    let (status, _, retry) = world.try_login("probe-shed3").await;
    assert_eq!(status, 503);
    assert!((1..=2).contains(&retry.expect("Retry-After")), "{retry:?}");
    assert_eq!(world.wechat.logins(), 3);

    wait_until(reopened + OPEN_FOR).await;
    let (status, answer, _) = world.try_login("probe-good").await;
    assert_eq!(status, 200, "the probe succeeded: {answer}");
    // Closed again: one failure is not two in a row, whatever came before.
    let (status, _, _) = world.try_login("err-1probe3").await;
    assert_eq!(status, 503);
    let (status, answer, _) = world.try_login("probe-after").await;
    assert_eq!(status, 200, "one failure did not reopen it: {answer}");
    assert_eq!(world.wechat.logins(), 6);
}
