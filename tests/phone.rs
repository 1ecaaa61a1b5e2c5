//! `POST /auth/phone`: the getPhoneNumber button's code becomes the session's phone number,
//! fetched with the managed access_token; `auth = "phone"` routes admit the new token and
//! `X-Phone` carries the number upstream.
// Test code may panic on what it set up, and its helpers are `pub` for the test files.
#![allow(clippy::unwrap_used, clippy::expect_used, unreachable_pub)]

mod support;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use serde_json::{json, Value};
use support::{World, APPID};

async fn phone_world() -> World {
    World::start_with(|c| {
        c.auth_tables = "[auth.claim_headers]\nphone = \"X-Phone\"\n".into();
        let route = format!(
            "[[routes]]\nprefix = \"/pay\"\nupstream = \"{}\"\nauth = \"phone\"\n",
            c.upstream
        );
        c.routes += &route;
    })
    .await
}

async fn phone(world: &World, token: &str, body: Value) -> (u16, Value) {
    let response = world
        .http
        .post(world.url("/auth/phone"))
        .bearer_auth(token)
        .json(&body)
        .send()
        .await
        .expect("phone");
    let status = response.status().as_u16();
    if status == 200 {
        assert_eq!(response.headers()["cache-control"], "no-store");
    }
    (status, response.json().await.unwrap_or(Value::Null))
}

fn claims(token: &str) -> Value {
    let payload = token.split('.').nth(1).expect("payload");
    serde_json::from_slice(&URL_SAFE_NO_PAD.decode(payload).expect("b64")).expect("json")
}

#[tokio::test]
async fn a_phone_code_gives_the_number_and_a_token_for_phone_routes() {
    let world = phone_world().await;
    let login = world.login("phone-user1").await;
    let first = login["access_token"].as_str().expect("token");
    let status = world.get_with_token("/pay/order", first).await.status();
    assert_eq!(status, 403, "no phone yet");

    let (status, answer) = phone(&world, first, json!({"code": "button1"})).await;
    assert_eq!(status, 200, "{answer}");
    let info = &answer["phone_info"];
    assert_eq!(info["watermark"]["appid"], APPID);
    let number = info["phoneNumber"].as_str().expect("number").to_string();
    let with_phone = answer["access_token"].as_str().expect("new token");
    assert_eq!(claims(with_phone)["phone"], number.as_str());
    assert_eq!(claims(with_phone)["sid"], login["session_id"]);

    assert_eq!(
        world
            .get_with_token("/pay/order", with_phone)
            .await
            .status(),
        200
    );
    let seen = world.upstream.last();
    assert_eq!(seen.one("x-phone"), Some(number.as_str()));
    assert_eq!(seen.one("x-openid"), login["openid"].as_str());

    // The number stays with the session: a refresh mints tokens that carry it.
    let renewed: Value = world
        .post_json(
            "/auth/refresh",
            json!({"refresh_token": login["refresh_token"]}),
        )
        .await
        .json()
        .await
        .expect("json");
    let renewed = renewed["access_token"].as_str().expect("renewed");
    assert_eq!(claims(renewed)["phone"], number.as_str());
    assert_eq!(
        world.get_with_token("/pay/order", renewed).await.status(),
        200
    );
    assert_eq!(
        world.wechat.mock.calls("/wxa/business/getuserphonenumber"),
        1
    );
}

#[tokio::test]
async fn phone_errors_map_like_login_errors() {
    let world = phone_world().await;
    let token = world.token().await;
    let table = [
        (json!({}), 400, "invalid_request"),
        (json!({"code": 5}), 400, "invalid_request"),
        (json!({"code": "bad code!"}), 400, "invalid_request"),
        (json!({"code": "err40029p"}), 400, "invalid_code"),
        (json!({"code": "err45011p"}), 429, "rate_limited"),
        (json!({"code": "err-1p"}), 503, "wechat_busy"),
        (json!({"code": "err40013p"}), 502, "server_misconfigured"),
    ];
    for (body, status, error) in table {
        let (got, answer) = phone(&world, &token, body.clone()).await;
        assert_eq!(
            (got, answer["error"].as_str()),
            (status, Some(error)),
            "{body}"
        );
        assert!(answer.get("phone_info").is_none());
    }
    let (status, _) = phone(&world, &token, json!({"code": "once1"})).await;
    assert_eq!(status, 200);
    let (status, answer) = phone(&world, &token, json!({"code": "once1"})).await;
    assert_eq!(
        (status, answer["error"].as_str()),
        (400, Some("invalid_code")),
        "a phone code is single use"
    );

    let anonymous = world
        .http
        .post(world.url("/auth/phone"))
        .json(&json!({"code": "x1"}))
        .send()
        .await
        .expect("anonymous");
    assert_eq!(anonymous.status(), 401);
    let minted = support::mint("o_no_session", 300);
    let (status, _) = phone(&world, &minted, json!({"code": "x2"})).await;
    assert_eq!(status, 401, "a token without a server-side session");
}

#[tokio::test]
async fn a_client_cannot_send_its_own_phone_header() {
    let world = phone_world().await;
    let token = world.token().await;
    let response = world
        .http
        .get(world.url("/api/x"))
        .bearer_auth(&token)
        .header("X-Phone", "13800000000")
        .header("x_phone", "13800000001")
        .send()
        .await
        .expect("request");
    assert_eq!(response.status(), 200);
    assert!(world.upstream.last().spellings("x-phone").is_empty());
}
