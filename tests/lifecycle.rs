//! The process around the gateway: graceful shutdown, the real binary's exit codes and
//! signals, the admin listener, and a scan of everything it logged for secrets.
// Test code may panic on what it set up, and its helpers are `pub` for the test files.
#![allow(clippy::unwrap_used, clippy::expect_used, unreachable_pub)]

mod support;

use std::process::Command;
use std::time::Duration;

use serde_json::json;
use support::binary::{Binary, ConfigFile, BIN};
use support::{World, APP_SECRET, JWT_SECRET};

#[tokio::test]
async fn shutdown_lets_in_flight_requests_finish_and_refuses_new_ones() {
    let world = World::start().await;
    let token = world.token().await;
    let slow = world.get_with_token("/api/slow", &token);
    let stop = async {
        world.upstream.wait_for(1).await;
        let task = world.gateway.begin_shutdown();
        tokio::time::timeout(Duration::from_secs(10), task).await
    };
    let (response, drained) = tokio::join!(slow, stop);
    assert_eq!(response.status(), 200, "the in-flight request completed");
    drained.expect("drained in time").expect("task");
    let refused = support::client().get(world.url("/public/x")).send().await;
    assert!(refused.is_err(), "no new connections after shutdown");
}

#[tokio::test]
async fn the_grace_period_bounds_shutdown() {
    let world = World::start_with(|c| c.server_extra = "shutdown_grace = \"300ms\"".into()).await;
    let token = world.token().await;
    let slow = world.get_with_token("/api/slow", &token);
    let stop = async {
        world.upstream.wait_for(1).await;
        let started = std::time::Instant::now();
        let task = world.gateway.begin_shutdown();
        let _ = task.await;
        started.elapsed()
    };
    let (_, took) = tokio::join!(slow, stop);
    assert!(
        took < Duration::from_secs(2),
        "shutdown waited {took:?} despite a 300ms grace"
    );
}

#[tokio::test]
async fn admin_health_and_readiness_answer_on_their_own_port() {
    let world = World::start().await;
    let admin = |path: &str| format!("http://{}{path}", world.gateway.admin);
    for path in ["/healthz", "/readyz"] {
        let response = world.http.get(admin(path)).send().await.expect("request");
        assert_eq!(response.status(), 200, "{path}");
    }
    let metrics = world
        .http
        .get(admin("/metrics"))
        .send()
        .await
        .expect("request");
    assert_eq!(metrics.status(), 200);
    assert!(metrics
        .text()
        .await
        .expect("text")
        .contains("wxgate_requests_total"));
    // The public port does not serve them.
    let public = world.get("/healthz").await;
    assert_eq!(public.status(), 404);
}

#[test]
fn check_exits_zero_for_valid_and_two_for_invalid_configs() {
    let fixtures = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/config");
    let valid = Command::new(BIN)
        .args(["check", "-c", &format!("{fixtures}/valid/minimal.toml")])
        .output()
        .expect("run");
    assert_eq!(valid.status.code(), Some(0));
    let stdout = String::from_utf8_lossy(&valid.stdout);
    assert!(
        stdout.contains("/api") && !stdout.contains("app-secret"),
        "{stdout}"
    );
    let invalid = Command::new(BIN)
        .args([
            "check",
            "-c",
            &format!("{fixtures}/invalid/unknown_route_key.toml"),
        ])
        .output()
        .expect("run");
    assert_eq!(invalid.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&invalid.stderr).contains("routes[0].upstrem"));
    let run_invalid = Command::new(BIN)
        .args([
            "run",
            "-c",
            &format!("{fixtures}/invalid/bad_duration.toml"),
        ])
        .output()
        .expect("run");
    assert_eq!(
        run_invalid.status.code(),
        Some(2),
        "run exits 2 on a bad config"
    );
    let missing = Command::new(BIN)
        .args(["check", "-c", "/nonexistent/gateway.toml"])
        .output()
        .expect("run");
    assert_eq!(missing.status.code(), Some(2));
}

#[test]
fn wxgate_token_mints_a_token_the_config_verifies() {
    let fixtures = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/config");
    let out = Command::new(BIN)
        .args([
            "token",
            "-c",
            &format!("{fixtures}/valid/minimal.toml"),
            "--openid",
            "oCli_1",
            "--ttl",
            "10m",
        ])
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(0));
    let token = String::from_utf8_lossy(&out.stdout).trim().to_string();
    assert_eq!(token.split('.').count(), 3, "{token}");
    let settings = wxgate::config::load(std::path::Path::new(&format!(
        "{fixtures}/valid/minimal.toml"
    )))
    .expect("config");
    let policy = wxgate::tokens::Policy {
        issuer: "wxgate",
        audience: "test-app",
        leeway_secs: 0,
    };
    let claims = wxgate::tokens::verify(
        &settings.auth.keys,
        &policy,
        &token,
        wxgate::tokens::now_unix(),
    )
    .expect("valid");
    assert_eq!(claims.sub, "oCli_1");
    assert!(claims.exp - claims.iat <= 600);
}

#[tokio::test]
async fn the_binary_serves_stops_on_sigterm_and_never_logs_secrets() {
    let wechat = support::Wechat::start().await;
    let upstream = support::Upstream::start().await;
    let config = support::ConfigBuilder::new(&wechat.base(), &upstream.base()).text();
    let path = ConfigFile::new(&config);
    let mut wxgate = Binary::run(&path, &[("RUST_LOG", "debug")]);
    let addr = wxgate.listening().public;
    let http = support::client();
    let url = |p: &str| format!("http://{addr}{p}");
    let code = "secretcode12345";
    let login =
        support::json_of(http.post(url("/auth/login")).json(&json!({ "code": code }))).await;
    let access = login["access_token"].as_str().expect("access").to_string();
    let refresh = login["refresh_token"]
        .as_str()
        .expect("refresh")
        .to_string();
    let session_key = wechat
        .mock
        .session_key(login["openid"].as_str().expect("openid"))
        .expect("key");
    let api = http
        .get(url("/api/x?access_token=QUERYSECRET123"))
        .bearer_auth(&access)
        .send()
        .await
        .expect("api");
    assert_eq!(api.status(), 200);
    let renewed = support::json_of(
        http.post(url("/auth/refresh"))
            .json(&json!({ "refresh_token": refresh })),
    )
    .await;
    let failing_code = "err40125leakcheck";
    let misconfigured = http
        .post(url("/auth/login"))
        .json(&json!({ "code": failing_code }))
        .send()
        .await
        .expect("login");
    assert_eq!(misconfigured.status(), 502);
    let bad = http
        .get(url("/api/x"))
        .bearer_auth("garbage.token.value")
        .send()
        .await
        .expect("api");
    assert_eq!(bad.status(), 401);
    let (exit, logs) = wxgate.stop().await;
    assert_eq!(exit.code(), Some(0), "SIGTERM ends with exit code 0");
    let secrets = [
        ("app secret", APP_SECRET.to_string()),
        ("jwt secret", JWT_SECRET.to_string()),
        ("login code", code.to_string()),
        ("failing login code", failing_code.to_string()),
        ("session_key", session_key),
        ("access token", access),
        ("refresh token", refresh),
        (
            "renewed access token",
            renewed["access_token"].as_str().expect("at").to_string(),
        ),
        ("query string", "QUERYSECRET123".to_string()),
    ];
    for (what, value) in &secrets {
        assert!(
            !logs.contains(value.as_str()),
            "the {what} appeared in the logs:\n{logs}"
        );
    }
    assert!(
        logs.contains("wxgate::access"),
        "access log lines are written:\n{logs}"
    );
    assert!(logs.contains("path=/api/x"), "{logs}");
    let access_line = logs
        .lines()
        .find(|l| {
            l.contains("wxgate::access") && l.contains("path=/api/x") && l.contains("status=200")
        })
        .unwrap_or_else(|| panic!("no access line for /api/x:\n{logs}"));
    for field in [
        "request_id=",
        "client_ip=127.0.0.1",
        "method=GET",
        "route=\"/api\"",
        "total_ms=",
        "upstream_ms=",
        "bytes=",
    ] {
        assert!(
            access_line.contains(field),
            "{field} missing in {access_line}"
        );
    }
    assert!(
        logs.contains("errcode=40125"),
        "misconfiguration is logged with its errcode:\n{logs}"
    );
}

// Multi-threaded: waiting for the child's log lines blocks, and the fakes must keep serving.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sighup_swaps_in_a_valid_config_and_keeps_the_old_one_when_invalid() {
    let wechat = support::Wechat::start().await;
    let upstream = support::Upstream::start().await;
    let mut config = support::ConfigBuilder::new(&wechat.base(), &upstream.base());
    let path = ConfigFile::new(&config.text());
    let mut wxgate = Binary::run(&path, &[]);
    let addr = wxgate.listening().public;
    let http = support::client();
    let status = |p: &str| {
        let request = http.get(format!("http://{addr}{p}")).send();
        async move { request.await.expect("request").status().as_u16() }
    };
    assert_eq!(status("/extra/x").await, 404);
    config.routes.push_str(&format!(
        "[[routes]]\nprefix = \"/extra\"\nupstream = \"{}\"\nauth = \"none\"\n",
        upstream.base()
    ));
    std::fs::write(&path, config.text()).expect("rewrite config");
    wxgate.signal("HUP");
    wxgate.line_with("configuration reloaded");
    assert_eq!(
        status("/extra/x").await,
        200,
        "the new route serves after SIGHUP"
    );
    std::fs::write(&path, "this is [not valid toml").expect("break config");
    wxgate.signal("HUP");
    let failure = wxgate.line_with("reload failed");
    assert!(failure.contains("TOML"), "{failure}");
    assert_eq!(
        status("/extra/x").await,
        200,
        "the running config survives a bad file"
    );
    assert_eq!(status("/public/x").await, 200);
}

/// The value of an unlabelled metric in a `/metrics` text.
fn gauge(metrics: &str, name: &str) -> f64 {
    metrics
        .lines()
        .find_map(|line| line.strip_prefix(name)?.strip_prefix(' '))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("no {name} in:\n{metrics}"))
}

// Multi-threaded: waiting for the child's log lines blocks, and the fakes must keep serving.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reload_frees_the_configuration_it_replaces_and_metrics_show_the_heap() {
    let wechat = support::Wechat::start().await;
    let upstream = support::Upstream::start().await;
    let config = support::ConfigBuilder::new(&wechat.base(), &upstream.base()).text();
    let path = ConfigFile::new(&config);
    let mut wxgate = Binary::run(&path, &[]);
    let listening = wxgate.listening();
    let http = support::client();
    let metrics = || {
        let request = http
            .get(format!("http://{}/metrics", listening.admin))
            .send();
        async move { request.await.expect("metrics").text().await.expect("text") }
    };
    let login = support::json_of(
        http.post(format!("http://{}/auth/login", listening.public))
            .json(&json!({ "code": "reloadcode1" })),
    )
    .await;
    let access = login["access_token"].as_str().expect("access").to_string();
    let api = || {
        let request = http
            .get(format!("http://{}/api/x", listening.public))
            .bearer_auth(&access)
            .send();
        async move { request.await.expect("api").status().as_u16() }
    };
    assert_eq!(api().await, 200);
    assert_eq!(gauge(&metrics().await, "wxgate_config_runtimes"), 1.0);
    for round in 1..=2 {
        wxgate.signal("HUP");
        wxgate.line_with("configuration reloaded");
        // Verified (and cached) again under the new configuration.
        assert_eq!(api().await, 200);
        // With no request in flight, only the current configuration is left: an earlier
        // one kept alive would keep its caches, which nothing prunes any more.
        assert_eq!(
            gauge(&metrics().await, "wxgate_config_runtimes"),
            1.0,
            "after reload {round}"
        );
    }
    let text = metrics().await;
    let (allocated, resident) = (
        gauge(&text, "wxgate_heap_allocated_bytes"),
        gauge(&text, "wxgate_heap_resident_bytes"),
    );
    assert!(allocated > 0.0, "the binary's allocator reports its heap");
    assert!(resident >= allocated, "{resident} resident < {allocated}");
}

// Multi-threaded: waiting for the child's log lines blocks, and the fakes must keep serving.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_and_relay_errors_are_logged_by_who_caused_them() {
    const SEND: &str = "/cgi-bin/message/subscribe/send";
    let wechat = support::Wechat::start().await;
    let upstream = support::Upstream::start().await;
    let mut config = support::ConfigBuilder::new(&wechat.base(), &upstream.base());
    config.wechat_extra = format!("[wechat.relay]\nenabled = true\nallow = [\"{SEND}\"]\n");
    let path = ConfigFile::new(&config.text());
    let mut wxgate = Binary::run(&path, &[("RUST_LOG", "debug")]);
    let admin = wxgate.listening().admin;
    let http = support::client();

    let missing = http
        .get(format!("http://{admin}/nothing-here"))
        .send()
        .await
        .expect("admin request");
    assert_eq!(missing.status(), 404);
    let refused = wxgate.line_with("request refused");
    assert!(
        refused.contains("DEBUG") && refused.contains("error=no route"),
        "the client's mistake on the admin listener is logged at debug: {refused}"
    );

    wechat.mock.fail_stable_token(Some(-1));
    let busy = http
        .post(format!("http://{admin}/wechat{SEND}"))
        .json(&json!({}))
        .send()
        .await
        .expect("relay request");
    assert_eq!(busy.status(), 503);
    let failed = wxgate.line_with("dependency failed");
    assert!(
        failed.contains("WARN") && failed.contains("error=WeChat is busy"),
        "a relay call WeChat could not serve is logged at warn: {failed}"
    );
}
