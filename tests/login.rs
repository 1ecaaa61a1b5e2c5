//! `POST /auth/login`: every row of SPEC's login error table, the first-wins code gate,
//! and what a successful answer does and does not contain.
// Test code may panic on what it set up, and its helpers are `pub` for the test files.
#![allow(clippy::unwrap_used, clippy::expect_used, unreachable_pub)]

mod support;

use serde_json::json;
use support::{World, APPID};

async fn login_status(
    world: &World,
    body: serde_json::Value,
) -> (u16, serde_json::Value, reqwest::header::HeaderMap) {
    let response = world.post_json("/auth/login", body).await;
    let status = response.status().as_u16();
    let headers = response.headers().clone();
    let body = response.json().await.unwrap_or(serde_json::Value::Null);
    (status, body, headers)
}

#[tokio::test]
async fn a_code_becomes_tokens_without_the_session_key() {
    let world = World::start().await;
    let response = world
        .post_json("/auth/login", json!({ "code": "goodcode1" }))
        .await;
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["cache-control"], "no-store");
    let text = response.text().await.expect("body");
    assert!(!text.contains("session_key"), "{text}");
    let body: serde_json::Value = serde_json::from_str(&text).expect("json");
    assert_eq!(body["token_type"], "Bearer");
    assert_eq!(body["expires_in"], 7200);
    assert_eq!(body["refresh_expires_in"], 30 * 86400);
    let openid = wxgate::devtools::mock_wechat::MockWechat::openid_for(APPID, "goodcode1");
    assert_eq!(body["openid"], openid.as_str());
    assert!(body.get("unionid").is_none());
    for field in ["access_token", "refresh_token", "session_id"] {
        assert!(
            body[field].as_str().is_some_and(|s| !s.is_empty()),
            "{field}"
        );
    }
    let key = world.wechat.mock.session_key(&openid).expect("issued");
    assert!(!text.contains(&key));
}

#[tokio::test]
async fn a_unionid_is_returned_when_wechat_gives_one() {
    let world = World::start().await;
    let body = world.login("withunion1").await;
    assert!(
        body["unionid"].as_str().is_some_and(|u| u.starts_with('u')),
        "{body}"
    );
}

#[tokio::test]
async fn malformed_requests_never_reach_wechat() {
    let world = World::start().await;
    let long = "a".repeat(129);
    let bodies = [
        json!({}),
        json!({ "code": 42 }),
        json!({ "code": "" }),
        json!({ "code": long }),
        json!({ "code": "abc&appid=evil" }),
        json!({ "code": "has space" }),
        json!({ "code": "中文" }),
        json!(["code"]),
        json!({ "code": "ok", "appid": "wxunknown000000000" }),
        json!({ "code": "ok", "appid": 7 }),
    ];
    for body in bodies {
        let (status, answer, _) = login_status(&world, body.clone()).await;
        assert_eq!(
            (status, answer["error"].as_str()),
            (400, Some("invalid_request")),
            "{body}"
        );
    }
    let response = world
        .http
        .post(world.url("/auth/login"))
        .body("code=abc")
        .send()
        .await
        .expect("request");
    assert_eq!(response.status(), 400);
    assert_eq!(world.wechat.logins(), 0);
}

#[tokio::test]
async fn every_wechat_error_maps_to_its_documented_answer() {
    let world = World::start().await;
    let table = [
        ("err40029a", 400, "invalid_code"),
        ("err40163a", 400, "code_used"),
        ("err40226a", 403, "code_blocked"),
        ("err45011a", 429, "rate_limited"),
        ("err-1a", 503, "wechat_busy"),
        ("err40013a", 502, "server_misconfigured"),
        ("err40125a", 502, "server_misconfigured"),
        ("err41002a", 502, "server_misconfigured"),
        ("err41004a", 502, "server_misconfigured"),
        ("err99999a", 502, "wechat_unavailable"),
        ("badhtml1", 502, "wechat_unavailable"),
        ("badstatus1", 502, "wechat_unavailable"),
        ("badbig1", 502, "wechat_unavailable"),
        ("badnokey1", 502, "wechat_unavailable"),
        ("badshortkey1", 502, "wechat_unavailable"),
        ("badopenid1", 502, "wechat_unavailable"),
        ("badtext1", 400, "invalid_code"),
    ];
    for (code, status, error) in table {
        let (got, body, headers) = login_status(&world, json!({ "code": code })).await;
        assert_eq!(
            (got, body["error"].as_str()),
            (status, Some(error)),
            "{code}: {body}"
        );
        assert!(body["error_description"].is_string(), "{code}");
        if matches!(error, "rate_limited" | "wechat_busy") {
            assert!(
                headers.contains_key("retry-after"),
                "{code} needs Retry-After"
            );
        }
        let text = body.to_string();
        assert!(
            !text.contains("rid") && !text.contains(support::APP_SECRET),
            "{code}: {text}"
        );
    }
    assert_eq!(
        world.wechat.logins(),
        table.len() as u64,
        "each code exchanged exactly once"
    );
}

#[tokio::test]
async fn a_string_errcode_zero_in_text_plain_is_a_success() {
    let world = World::start().await;
    world.login("okstring1").await;
}

#[tokio::test]
async fn wrong_app_credentials_are_a_misconfiguration() {
    let wechat = support::Wechat::start().await;
    let upstream = support::Upstream::start().await;
    let mut config = support::ConfigBuilder::new(&wechat.base(), &upstream.base());
    config.wechat_extra = String::new();
    let text = config.text().replace(support::APP_SECRET, "a-wrong-secret");
    let gateway = support::RunningGateway::start(&text).await;
    let response = support::client()
        .post(gateway.url("/auth/login"))
        .json(&json!({ "code": "fine1" }))
        .send()
        .await
        .expect("request");
    assert_eq!(response.status(), 502);
    let body: serde_json::Value = response.json().await.expect("json");
    assert_eq!(body["error"], "server_misconfigured");
}

#[tokio::test]
async fn wechat_unreachable_or_slow() {
    let closed = support::closed_port().await;
    let upstream = support::Upstream::start().await;
    let config = support::ConfigBuilder::new(&format!("http://{closed}"), &upstream.base());
    let gateway = support::RunningGateway::start(&config.text()).await;
    let response = support::client()
        .post(gateway.url("/auth/login"))
        .json(&json!({ "code": "anycode" }))
        .send()
        .await
        .expect("request");
    assert_eq!(response.status(), 502);
    let body: serde_json::Value = response.json().await.expect("json");
    assert_eq!(body["error"], "wechat_unavailable");

    // The test mock waits 3 s on `slow` codes; the gateway's WeChat timeout is 1 s.
    let world = World::start().await;
    let (status, body, _) = login_status(&world, json!({ "code": "slow1" })).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (504, Some("wechat_timeout"))
    );
}

#[tokio::test]
async fn a_code_is_exchanged_once_and_replays_are_code_used() {
    let world = World::start().await;
    world.login("once1").await;
    let (status, body, _) = login_status(&world, json!({ "code": "once1" })).await;
    assert_eq!((status, body["error"].as_str()), (400, Some("code_used")));
    assert_eq!(world.wechat.logins(), 1);
}

#[tokio::test]
async fn concurrent_duplicates_of_a_code_yield_one_set_of_tokens() {
    let world = World::start().await;
    let attempts = (0..12).map(|_| world.post_json("/auth/login", json!({ "code": "race1" })));
    let responses = futures_join(attempts).await;
    let mut statuses: Vec<u16> = responses.iter().map(|r| r.status().as_u16()).collect();
    statuses.sort();
    assert_eq!(
        statuses.iter().filter(|s| **s == 200).count(),
        1,
        "{statuses:?}"
    );
    assert_eq!(
        statuses.iter().filter(|s| **s == 400).count(),
        11,
        "{statuses:?}"
    );
    assert_eq!(world.wechat.logins(), 1, "WeChat called once");
}

#[tokio::test]
async fn a_code_in_flight_is_already_used() {
    let world = World::start().await;
    let first = world.post_json("/auth/login", json!({ "code": "slowflight" }));
    let second = async {
        // Wait until WeChat has the first exchange in hand, then replay the code.
        while world.wechat.logins() == 0 {
            tokio::task::yield_now().await;
        }
        world
            .post_json("/auth/login", json!({ "code": "slowflight" }))
            .await
    };
    let (first, second) = tokio::join!(first, second);
    assert_eq!(second.status(), 400);
    let body: serde_json::Value = second.json().await.expect("json");
    assert_eq!(body["error"], "code_used");
    assert_eq!(
        first.status(),
        504,
        "the slow exchange times out on its own"
    );
    assert_eq!(world.wechat.logins(), 1);
}

#[tokio::test]
async fn the_login_rate_limit_answers_before_wechat() {
    let world = World::start_with(|c| {
        c.auth_extra = "[auth.login_rate_limit]\nper_minute = 1\nburst = 2".into();
    })
    .await;
    for i in 0..2 {
        world.login(&format!("limited{i}")).await;
    }
    let (status, body, headers) = login_status(&world, json!({ "code": "limited9" })).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (429, Some("rate_limited"))
    );
    let retry: u64 = headers["retry-after"]
        .to_str()
        .expect("ascii")
        .parse()
        .expect("seconds");
    assert!((1..=60).contains(&retry), "{retry}");
    assert_eq!(world.wechat.logins(), 2);
}

#[tokio::test]
async fn an_appid_selects_the_app_and_unknown_ones_are_refused() {
    let world = World::start().await;
    let response = world
        .post_json("/auth/login", json!({ "code": "named1", "appid": APPID }))
        .await;
    assert_eq!(response.status(), 200);
}

#[tokio::test]
async fn login_only_accepts_post() {
    let world = World::start().await;
    let response = world.get("/auth/login").await;
    assert_eq!(response.status(), 405);
    assert_eq!(response.headers()["allow"], "POST");
    let body: serde_json::Value = response.json().await.expect("json");
    assert_eq!(body["error"], "method_not_allowed");
}

async fn futures_join<F: std::future::Future>(futures: impl Iterator<Item = F>) -> Vec<F::Output> {
    let handles: Vec<_> = futures.collect();
    let mut out = Vec::new();
    let joined = join_all(handles).await;
    out.extend(joined);
    out
}

async fn join_all<F: std::future::Future>(futures: Vec<F>) -> Vec<F::Output> {
    let mut pinned: Vec<std::pin::Pin<Box<F>>> = futures.into_iter().map(Box::pin).collect();
    let mut results: Vec<Option<F::Output>> = (0..pinned.len()).map(|_| None).collect();
    std::future::poll_fn(|cx| {
        let mut pending = false;
        for (i, f) in pinned.iter_mut().enumerate() {
            if results[i].is_none() {
                match f.as_mut().poll(cx) {
                    std::task::Poll::Ready(v) => results[i] = Some(v),
                    std::task::Poll::Pending => pending = true,
                }
            }
        }
        if pending {
            std::task::Poll::Pending
        } else {
            std::task::Poll::Ready(())
        }
    })
    .await;
    results.into_iter().flatten().collect()
}

/// A login from `client` as a trusted proxy (the loopback peer) reports it; the status.
async fn login_from(world: &World, client: &str, code: &str) -> u16 {
    world
        .http
        .post(world.url("/auth/login"))
        .header("X-Forwarded-For", client)
        .json(&json!({ "code": code }))
        .send()
        .await
        .expect("login")
        .status()
        .as_u16()
}

#[tokio::test]
async fn the_login_rate_limit_counts_an_ipv6_64_as_one_client_and_ipv4_per_address() {
    let world = World::start_with(|c| {
        c.auth_tables = "[auth.login_rate_limit]\nper_minute = 1\nburst = 2\n".into();
    })
    .await;
    let cases = [
        ("2001:db8:1:2::1", 200, "first of the /64"),
        (
            "2001:db8:1:2:ffff:ffff:ffff:fffe",
            200,
            "another address, same /64",
        ),
        (
            "2001:db8:1:2::3",
            429,
            "a third address cannot start afresh",
        ),
        ("2001:db8:1:3::1", 200, "the next /64 is another client"),
        ("198.51.100.1", 200, "IPv4"),
        ("198.51.100.1", 200, "IPv4, same address"),
        ("198.51.100.1", 429, "IPv4, its burst spent"),
        ("198.51.100.2", 200, "IPv4 is counted per address"),
    ];
    for (i, (client, status, why)) in cases.into_iter().enumerate() {
        assert_eq!(
            login_from(&world, client, &format!("prefix{i}")).await,
            status,
            "{why}"
        );
    }
    assert_eq!(world.wechat.logins(), 6);
}

#[tokio::test]
async fn the_rate_limit_prefix_lengths_are_configurable() {
    let world = World::start_with(|c| {
        c.auth_tables = "[auth.login_rate_limit]\nper_minute = 1\nburst = 1\nipv4_prefix = 24\nipv6_prefix = 128\n".into();
    })
    .await;
    let cases = [
        ("198.51.100.1", 200),
        ("198.51.100.200", 429),
        ("198.51.101.1", 200),
        ("2001:db8::1", 200),
        ("2001:db8::2", 200),
        ("2001:db8::1", 429),
    ];
    for (i, (client, status)) in cases.into_iter().enumerate() {
        assert_eq!(
            login_from(&world, client, &format!("prefixlen{i}")).await,
            status,
            "{client}"
        );
    }
}
