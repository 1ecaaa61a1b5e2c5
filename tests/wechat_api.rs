//! WeChat APIs behind the managed access_token: the relay on the admin listener, the
//! token's single-flight fetch, retry and held failures, `checksession` on decrypt, and two
//! instances sharing one token through Redis.
// Test code may panic on what it set up, and its helpers are `pub` for the test files.
#![allow(clippy::unwrap_used, clippy::expect_used, unreachable_pub)]

mod support;

use serde_json::{json, Value};
use support::redis::Redis;
use support::{client, ConfigBuilder, RunningGateway, Upstream, Wechat, World, APPID};

const SEND: &str = "/cgi-bin/message/subscribe/send";
const QR: &str = "/wxa/getwxacodeunlimit";
const STABLE_TOKEN: &str = "/cgi-bin/stable_token";

fn relay_config(c: &mut ConfigBuilder) {
    c.wechat_extra = format!("[wechat.relay]\nenabled = true\nallow = [\"{SEND}\", \"{QR}\"]\n");
}

async fn relay(gw: &RunningGateway, path_and_query: &str, body: Value) -> reqwest::Response {
    client()
        .post(format!("http://{}/wechat{path_and_query}", gw.admin))
        .json(&body)
        .send()
        .await
        .expect("relay request")
}

#[tokio::test]
async fn the_relay_adds_the_managed_token_and_passes_the_answer_back() {
    let world = World::start_with(relay_config).await;
    let message = json!({"touser": "o1", "template_id": "t1", "data": {}});
    let response = relay(
        &world.gateway,
        &format!("{SEND}?access_token=forged&lang=zh_CN"),
        message.clone(),
    )
    .await;
    assert_eq!(response.status(), 200);
    let answer: Value = response.json().await.expect("json");
    assert_eq!(
        answer["errcode"], 0,
        "the mock accepted the managed token: {answer}"
    );
    let received = world.wechat.mock.last_body(SEND).expect("relayed body");
    assert_eq!(
        serde_json::from_slice::<Value>(&received).expect("json"),
        message
    );
    let response = relay(&world.gateway, QR, json!({"scene": "a=1"})).await;
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["content-type"], "image/png");
    let image = response.bytes().await.expect("body");
    assert!(image.starts_with(b"\x89PNG"));
    assert_eq!(
        world.wechat.mock.calls(STABLE_TOKEN),
        1,
        "one token fetch serves every call"
    );
}

#[tokio::test]
async fn only_allowed_paths_on_the_admin_listener_are_relayed() {
    let world = World::start_with(relay_config).await;
    let other = relay(&world.gateway, "/cgi-bin/stable_token", json!({})).await;
    assert_eq!(other.status(), 404);
    let dotted = relay(
        &world.gateway,
        "/cgi-bin/message/subscribe/../send",
        json!({}),
    )
    .await;
    assert_eq!(dotted.status(), 404);
    let public = client()
        .post(world.url(&format!("/wechat{SEND}")))
        .json(&json!({}))
        .send()
        .await
        .expect("public");
    assert_eq!(public.status(), 404, "never on the public listener");
    let unknown_app = relay(&world.gateway, &format!("{SEND}?appid=wxother"), json!({})).await;
    assert_eq!(unknown_app.status(), 400);
    assert_eq!(world.wechat.mock.calls(SEND), 0);

    let disabled = World::start().await;
    assert_eq!(
        relay(&disabled.gateway, SEND, json!({})).await.status(),
        404
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_first_calls_fetch_one_token() {
    let world = World::start_with(relay_config).await;
    let url = format!("http://{}/wechat{SEND}", world.gateway.admin);
    let mut calls = tokio::task::JoinSet::new();
    for _ in 0..20 {
        let request = client().post(&url).json(&json!({"touser": "o1"}));
        calls.spawn(async move { request.send().await.map(|r| r.status().as_u16()) });
    }
    while let Some(done) = calls.join_next().await {
        assert_eq!(done.expect("task").expect("request"), 200);
    }
    assert_eq!(world.wechat.mock.calls(STABLE_TOKEN), 1);
}

#[tokio::test]
async fn a_refused_token_is_fetched_again_and_the_call_retried_once() {
    let world = World::start_with(relay_config).await;
    assert_eq!(relay(&world.gateway, SEND, json!({})).await.status(), 200);
    world.wechat.mock.revoke_access_tokens();
    let response = relay(&world.gateway, SEND, json!({})).await;
    assert_eq!(response.status(), 200);
    let answer: Value = response.json().await.expect("json");
    assert_eq!(answer["errcode"], 0, "{answer}");
    assert_eq!(world.wechat.mock.calls(STABLE_TOKEN), 2);
    assert_eq!(
        world.wechat.mock.calls(SEND),
        3,
        "one call, one retry, one call"
    );
}

#[tokio::test]
async fn a_token_that_expires_between_calls_is_replaced_without_failing_a_call() {
    let world = World::start_with(relay_config).await;
    let (token, _) = logged_in(&world, "between1").await;
    let (status, _) = phone(&world, &token, "pn-between-1").await;
    assert_eq!(status, 200);
    world.wechat.mock.expire_access_tokens();
    let (status, answer) = phone(&world, &token, "pn-between-2").await;
    assert_eq!(
        status, 200,
        "42001 led to a new token and one retry: {answer}"
    );
    assert_eq!(world.wechat.mock.calls(STABLE_TOKEN), 2);
    world.wechat.mock.expire_access_tokens();
    assert_eq!(relay(&world.gateway, SEND, json!({})).await.status(), 200);
    assert_eq!(world.wechat.mock.calls(STABLE_TOKEN), 3);
}

async fn phone(world: &World, token: &str, code: &str) -> (u16, Value) {
    world
        .post_bearer("/auth/phone", token, json!({ "code": code }))
        .await
}

#[tokio::test]
async fn quota_errors_are_answered_at_once_without_asking_wechat_again() {
    let world = World::start_with(relay_config).await;
    world.wechat.mock.fail_stable_token(Some(45009));
    for _ in 0..3 {
        let response = relay(&world.gateway, SEND, json!({})).await;
        assert_eq!(response.status(), 503);
        let answer: Value = response.json().await.expect("json");
        assert_eq!(answer["error"], "wechat_quota_exceeded");
    }
    assert_eq!(world.wechat.mock.calls(STABLE_TOKEN), 1, "no retry storm");
    assert_eq!(world.wechat.mock.calls(SEND), 0);

    let limited = World::start_with(relay_config).await;
    limited.wechat.mock.fail_stable_token(Some(45011));
    let response = relay(&limited.gateway, SEND, json!({})).await;
    assert_eq!(response.status(), 429);
    assert_eq!(response.headers()["retry-after"], "60");
}

/// Logs in and returns (access token, openid).
async fn logged_in(world: &World, code: &str) -> (String, String) {
    let login = world.login(code).await;
    (
        login["access_token"].as_str().expect("token").into(),
        login["openid"].as_str().expect("openid").into(),
    )
}

async fn decrypt(world: &World, token: &str, body: Value) -> (u16, Value) {
    world.post_bearer("/auth/decrypt", token, body).await
}

#[tokio::test]
async fn user_data_from_the_mock_opens_and_an_expired_session_key_asks_for_a_new_login() {
    let world = World::start().await;
    let (token, openid) = logged_in(&world, "profile1").await;
    let data = world
        .wechat
        .mock
        .user_info(APPID, "profile1")
        .expect("user info");
    let (status, opened) = decrypt(&world, &token, data.clone()).await;
    assert_eq!(status, 200, "{opened}");
    assert_eq!(opened["openId"], openid.as_str());

    let mut tampered = data.clone();
    tampered["iv"] = json!("AAAAAAAAAAAAAAAAAAAAAA==");
    let (status, answer) = decrypt(&world, &token, tampered).await;
    assert_eq!(
        (status, answer["error"].as_str()),
        (400, Some("decrypt_failed"))
    );
    assert_eq!(world.wechat.mock.calls("/wxa/checksession"), 1);

    world.wechat.mock.expire_session_key(&openid);
    let (status, answer) = decrypt(&world, &token, data).await;
    assert_eq!(
        status, 200,
        "the data still opens with the stored key: {answer}"
    );
    let garbage = json!({"encryptedData": "AAAA", "iv": "AAAA"});
    let (status, answer) = decrypt(&world, &token, garbage.clone()).await;
    assert_eq!(
        (status, answer["error"].as_str()),
        (400, Some("decrypt_failed")),
        "WeChat's verdict of a minute ago is remembered"
    );
    assert_eq!(world.wechat.mock.calls("/wxa/checksession"), 1);

    let (token, openid) = logged_in(&world, "profile1b").await;
    world.wechat.mock.expire_session_key(&openid);
    let (status, answer) = decrypt(&world, &token, garbage).await;
    assert_eq!(
        (status, answer["error"].as_str()),
        (401, Some("session_key_expired"))
    );
    assert_eq!(world.wechat.mock.calls("/wxa/checksession"), 2);
}

#[tokio::test]
async fn without_check_session_key_every_failure_is_decrypt_failed() {
    let world = World::start_with(|c| c.wechat_extra = "check_session_key = false\n".into()).await;
    let (token, openid) = logged_in(&world, "profile2").await;
    world.wechat.mock.expire_session_key(&openid);
    let (status, answer) = decrypt(
        &world,
        &token,
        json!({"encryptedData": "AAAA", "iv": "AAAA"}),
    )
    .await;
    assert_eq!(
        (status, answer["error"].as_str()),
        (400, Some("decrypt_failed"))
    );
    assert_eq!(world.wechat.mock.calls("/wxa/checksession"), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_instances_share_one_access_token_through_redis() {
    let Some(redis) = Redis::start("two_instances_share_one_access_token") else {
        return;
    };
    let wechat = Wechat::start().await;
    let upstream = Upstream::start().await;
    let mut config = ConfigBuilder::new(&wechat.base(), &upstream.base());
    relay_config(&mut config);
    config.store = format!(
        "[store]\nbackend = \"redis\"\nurl = \"{}\"\nkey_prefix = \"t{}:\"\n",
        redis.url(),
        support::unique()
    );
    let a = RunningGateway::start(&config.text()).await;
    let b = RunningGateway::start(&config.text()).await;
    assert_eq!(relay(&a, SEND, json!({})).await.status(), 200);
    assert_eq!(relay(&b, SEND, json!({})).await.status(), 200);
    assert_eq!(
        wechat.mock.calls(STABLE_TOKEN),
        1,
        "B used the token A fetched"
    );

    wechat.mock.revoke_access_tokens();
    assert_eq!(relay(&b, SEND, json!({})).await.status(), 200);
    assert_eq!(wechat.mock.calls(STABLE_TOKEN), 2, "B fetched a new one");
    assert_eq!(relay(&a, SEND, json!({})).await.status(), 200);
    assert_eq!(
        wechat.mock.calls(STABLE_TOKEN),
        2,
        "A's token was refused; it took B's new one from Redis instead of asking WeChat"
    );
}
