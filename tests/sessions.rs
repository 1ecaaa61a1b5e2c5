//! Tokens over HTTP: refresh rotation and reuse detection, logout, `/auth/session`, the JWKS
//! document, and token tricks refused by a protected route.
// Test code may panic on what it set up, and its helpers are `pub` for the test files.
#![allow(clippy::unwrap_used, clippy::expect_used, unreachable_pub)]

mod support;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use serde_json::{json, Value};
use support::World;

async fn refresh(world: &World, token: &str) -> (u16, Value) {
    let response = world
        .post_json("/auth/refresh", json!({ "refresh_token": token }))
        .await;
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

async fn logout(world: &World, token: &str) -> u16 {
    let response = world
        .http
        .post(world.url("/auth/logout"))
        .bearer_auth(token)
        .send()
        .await
        .expect("request");
    response.status().as_u16()
}

fn claims(token: &str) -> Value {
    let payload = token.split('.').nth(1).expect("payload");
    serde_json::from_slice(&URL_SAFE_NO_PAD.decode(payload).expect("b64")).expect("json")
}

#[tokio::test]
async fn access_tokens_carry_the_documented_claims() {
    let world = World::start().await;
    let login = world.login("claims1").await;
    let token = login["access_token"].as_str().expect("token");
    let header: Value = serde_json::from_slice(
        &URL_SAFE_NO_PAD
            .decode(token.split('.').next().expect("h"))
            .expect("b64"),
    )
    .expect("json");
    assert_eq!(header["typ"], "at+jwt");
    assert_eq!(header["kid"], "k1");
    let c = claims(token);
    for name in [
        "iss", "aud", "sub", "iat", "nbf", "exp", "jti", "sid", "appid",
    ] {
        assert!(!c[name].is_null(), "claim {name} missing: {c}");
    }
    assert_eq!(c["sub"], login["openid"]);
    assert_eq!(c["sid"], login["session_id"]);
    assert!(!token.contains("session_key"));
}

#[tokio::test]
async fn refresh_rotates_and_keeps_the_session() {
    let world = World::start().await;
    let login = world.login("rot1").await;
    let (status, renewed) = refresh(&world, login["refresh_token"].as_str().expect("rt")).await;
    assert_eq!(status, 200, "{renewed}");
    assert_eq!(renewed["session_id"], login["session_id"]);
    assert_eq!(renewed["openid"], login["openid"]);
    assert_ne!(renewed["refresh_token"], login["refresh_token"]);
    assert_eq!(renewed["token_type"], "Bearer");
    let new_access = renewed["access_token"].as_str().expect("at");
    assert_eq!(
        world.get_with_token("/api/x", new_access).await.status(),
        200
    );
    // After a normal refresh the previous access token stays valid until it expires.
    let old_access = login["access_token"].as_str().expect("at");
    assert_eq!(
        world.get_with_token("/api/x", old_access).await.status(),
        200
    );
}

#[tokio::test]
async fn a_replayed_refresh_token_revokes_the_whole_session() {
    let world = World::start().await;
    let login = world.login("reuse1").await;
    let first = login["refresh_token"].as_str().expect("rt");
    let (_, renewed) = refresh(&world, first).await;
    let (status, body) = refresh(&world, first).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("invalid_grant"))
    );
    // Everything the session issued is dead now, the rotated tokens included.
    let (status, _) = refresh(&world, renewed["refresh_token"].as_str().expect("rt")).await;
    assert_eq!(status, 400);
    for token in [&login["access_token"], &renewed["access_token"]] {
        let response = world
            .get_with_token("/api/x", token.as_str().expect("at"))
            .await;
        assert_eq!(response.status(), 401);
    }
}

#[tokio::test]
async fn only_a_malformed_refresh_request_is_invalid_request() {
    let world = World::start().await;
    let error_of = |response: reqwest::Response| async move {
        let status = response.status().as_u16();
        let body: Value = response.json().await.unwrap_or(Value::Null);
        (status, body["error"].as_str().unwrap_or("").to_string())
    };
    let malformed = [
        "not json".to_string(),
        "[]".into(),
        "\"refresh_token\"".into(),
        "{}".into(),
        r#"{"refresh_token":5}"#.into(),
        r#"{"refresh_token":null}"#.into(),
        r#"{"refresh_token":["x"]}"#.into(),
        r#"{"refresh_token":""}"#.into(),
    ];
    for body in malformed {
        let response = world
            .http
            .post(world.url("/auth/refresh"))
            .header("content-type", "application/json")
            .body(body.clone())
            .send()
            .await
            .expect("request");
        assert_eq!(
            error_of(response).await,
            (400, "invalid_request".into()),
            "{body}"
        );
    }
    // Well-formed requests whose grant is not a live refresh token: the client must log in.
    let login = world.login("grant-kinds").await;
    let spent = login["refresh_token"].as_str().expect("rt").to_string();
    let (status, _) = refresh(&world, &spent).await;
    assert_eq!(status, 200);
    let bad_grants = [
        "not-a-real-refresh-token".to_string(),
        "x".repeat(257),
        "x".repeat(10_000),
        "has spaces in it".into(),
        "a+b/c=".into(),
        "令牌".into(),
        login["access_token"].as_str().expect("at").to_string(),
        spent,
    ];
    for grant in &bad_grants {
        let response = world
            .post_json("/auth/refresh", json!({ "refresh_token": grant }))
            .await;
        let shown: String = grant.chars().take(40).collect();
        assert_eq!(
            error_of(response).await,
            (400, "invalid_grant".into()),
            "{shown}"
        );
    }
}

#[tokio::test]
async fn an_expired_refresh_token_is_invalid_grant() {
    let world = World::start_with(|c| c.auth_extra = "refresh_ttl = \"1s\"\n".into()).await;
    let login = world.login("grant-expired").await;
    let rt = login["refresh_token"].as_str().expect("rt");
    // Nothing to wait on but the clock: the token's one second has to pass.
    tokio::time::sleep(std::time::Duration::from_millis(2100)).await;
    let (status, body) = refresh(&world, rt).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("invalid_grant"))
    );
}

#[tokio::test]
async fn concurrent_refreshes_of_one_token_have_one_winner() {
    let world = World::start().await;
    let login = world.login("race-refresh").await;
    let rt = login["refresh_token"].as_str().expect("rt");
    let (a, b) = tokio::join!(refresh(&world, rt), refresh(&world, rt));
    let mut statuses = [a.0, b.0];
    statuses.sort();
    assert_eq!(statuses, [200, 400]);
}

#[tokio::test]
async fn logout_rejects_the_sessions_tokens_from_then_on() {
    let world = World::start().await;
    let login = world.login("bye1").await;
    let access = login["access_token"].as_str().expect("at");
    assert_eq!(logout(&world, access).await, 204);
    let denied = world.get_with_token("/api/x", access).await;
    assert_eq!(denied.status(), 401);
    assert!(denied.headers()["www-authenticate"]
        .to_str()
        .expect("ascii")
        .contains("invalid_token"));
    let (status, _) = refresh(&world, login["refresh_token"].as_str().expect("rt")).await;
    assert_eq!(status, 400);
    assert_eq!(world.upstream.count(), 0);
}

#[tokio::test]
async fn logout_needs_a_token() {
    let world = World::start().await;
    let response = world
        .http
        .post(world.url("/auth/logout"))
        .send()
        .await
        .expect("request");
    assert_eq!(response.status(), 401);
    let body: Value = response.json().await.expect("json");
    assert_eq!(body["error"], "missing_token");
}

#[tokio::test]
async fn the_session_endpoint_describes_the_session() {
    let world = World::start().await;
    let login = world.login("withunion-session").await;
    let response = world
        .get_with_token("/auth/session", login["access_token"].as_str().expect("at"))
        .await;
    assert_eq!(response.status(), 200);
    let body: Value = response.json().await.expect("json");
    assert_eq!(body["openid"], login["openid"]);
    assert_eq!(body["unionid"], login["unionid"]);
    assert_eq!(body["appid"], support::APPID);
    assert_eq!(body["session_id"], login["session_id"]);
    let now = wxgate::tokens::now_unix();
    let expires_at = body["expires_at"].as_i64().expect("number");
    assert!((now + 30 * 86400 - 5..=now + 30 * 86400 + 5).contains(&expires_at));
    assert!(body.get("session_key").is_none());
}

#[tokio::test]
async fn tokens_from_wxgate_token_work_without_a_session() {
    let world = World::start().await;
    let token = support::mint("oMinted_1", 600);
    let response = world.get_with_token("/api/hello", &token).await;
    assert_eq!(response.status(), 200);
    assert_eq!(world.upstream.last().one("X-OpenId"), Some("oMinted_1"));
}

#[tokio::test]
async fn jwks_is_empty_for_hmac_only_setups() {
    let world = World::start().await;
    let response = world.get("/.well-known/jwks.json").await;
    assert_eq!(response.status(), 200);
    let body: Value = response.json().await.expect("json");
    assert_eq!(body, json!({ "keys": [] }));
}

/// Re-signs header and payload with the test key, as someone holding it could; every rule
/// besides the signature must still refuse these.
fn forge(header: &Value, payload: &Value) -> String {
    let input = format!(
        "{}.{}",
        URL_SAFE_NO_PAD.encode(header.to_string()),
        URL_SAFE_NO_PAD.encode(payload.to_string())
    );
    let key = jsonwebtoken::EncodingKey::from_secret(support::JWT_SECRET.as_bytes());
    let sig = jsonwebtoken::crypto::sign(input.as_bytes(), &key, jsonwebtoken::Algorithm::HS256)
        .expect("sign");
    format!("{input}.{sig}")
}

#[tokio::test]
async fn a_protected_route_refuses_every_token_trick() {
    let world = World::start().await;
    let good = support::mint("oGood", 600);
    let good_claims = claims(&good);
    let header = json!({"alg": "HS256", "typ": "at+jwt", "kid": "k1"});
    let with = |key: &str, value: Value| {
        let mut c = good_claims.clone();
        c[key] = value;
        c
    };
    let without = |key: &str| {
        let mut c = good_claims.clone();
        c.as_object_mut().expect("object").remove(key);
        c
    };
    let now = wxgate::tokens::now_unix();
    let (signed, _) = good.rsplit_once('.').expect("parts");
    let none_token = format!(
        "{}.{}.",
        URL_SAFE_NO_PAD.encode(json!({"alg":"none","typ":"at+jwt","kid":"k1"}).to_string()),
        signed.split('.').nth(1).expect("payload")
    );
    let cases: Vec<(&str, String)> = vec![
        ("alg none", none_token),
        ("stripped signature", format!("{signed}.")),
        (
            "wrong typ",
            forge(&json!({"alg":"HS256","typ":"JWT","kid":"k1"}), &good_claims),
        ),
        (
            "jku",
            forge(
                &json!({"alg":"HS256","typ":"at+jwt","kid":"k1","jku":"http://127.0.0.1:1/k"}),
                &good_claims,
            ),
        ),
        (
            "crit",
            forge(
                &json!({"alg":"HS256","typ":"at+jwt","kid":"k1","crit":["exp"]}),
                &good_claims,
            ),
        ),
        (
            "kid traversal",
            forge(
                &json!({"alg":"HS256","typ":"at+jwt","kid":"../../dev/null"}),
                &good_claims,
            ),
        ),
        ("expired", forge(&header, &with("exp", json!(now - 3600)))),
        (
            "issued in the future",
            forge(&header, &with("iat", json!(now + 3600))),
        ),
        (
            "not yet valid",
            forge(&header, &with("nbf", json!(now + 3600))),
        ),
        (
            "wrong issuer",
            forge(&header, &with("iss", json!("someone-else"))),
        ),
        (
            "wrong audience",
            forge(&header, &with("aud", json!("other-app"))),
        ),
        (
            "sub with CRLF",
            forge(&header, &with("sub", json!("o1\r\nX-Admin: yes"))),
        ),
        ("no sub", forge(&header, &without("sub"))),
        ("no exp", forge(&header, &without("exp"))),
        ("no iat", forge(&header, &without("iat"))),
        ("payload not an object", forge(&header, &json!(["sub"]))),
        ("oversized", format!("{good}{}", "A".repeat(5000))),
        ("padded", format!("{good}==")),
    ];
    for (name, token) in &cases {
        let response = world.get_with_token("/api/x", token).await;
        assert_eq!(response.status(), 401, "{name} was not refused");
        let body: Value = response.json().await.expect("json");
        assert!(
            matches!(
                body["error"].as_str(),
                Some("invalid_token" | "token_expired")
            ),
            "{name}: {body}"
        );
    }
    assert_eq!(world.upstream.count(), 0, "nothing reached the upstream");
    assert_eq!(world.get_with_token("/api/x", &good).await.status(), 200);
}

#[tokio::test]
async fn duplicate_json_keys_make_a_token_invalid() {
    let world = World::start().await;
    let good = support::mint("oDup", 600);
    let payload = String::from_utf8(
        URL_SAFE_NO_PAD
            .decode(good.split('.').nth(1).expect("p"))
            .expect("b64"),
    )
    .expect("utf8");
    let doubled = payload.replacen("\"sub\":\"oDup\"", "\"sub\":\"oDup\",\"sub\":\"oAdmin\"", 1);
    let input = format!(
        "{}.{}",
        good.split('.').next().expect("h"),
        URL_SAFE_NO_PAD.encode(doubled)
    );
    let key = jsonwebtoken::EncodingKey::from_secret(support::JWT_SECRET.as_bytes());
    let sig = jsonwebtoken::crypto::sign(input.as_bytes(), &key, jsonwebtoken::Algorithm::HS256)
        .expect("sign");
    let response = world
        .get_with_token("/api/x", &format!("{input}.{sig}"))
        .await;
    assert_eq!(response.status(), 401);
}

#[tokio::test]
async fn a_logout_is_noticed_on_a_connection_that_already_proved_the_token() {
    // A connection remembers the last token it proved; a revocation must still win.
    let world = World::start().await;
    let login = world.login("memo1").await;
    let access = login["access_token"].as_str().expect("at");
    let mut conn = tokio::net::TcpStream::connect(world.gateway.addr)
        .await
        .expect("connect");
    for _ in 0..2 {
        assert_eq!(support::get_on(&mut conn, access).await, 200);
    }
    assert_eq!(logout(&world, access).await, 204);
    assert_eq!(support::get_on(&mut conn, access).await, 401);
    assert_eq!(world.upstream.count(), 2);
}

#[tokio::test]
async fn a_token_verified_before_is_still_refused_after_logout() {
    let world = World::start().await;
    let login = world.login("cached1").await;
    let access = login["access_token"].as_str().expect("at");
    for _ in 0..3 {
        assert_eq!(world.get_with_token("/api/x", access).await.status(), 200);
    }
    assert_eq!(logout(&world, access).await, 204);
    assert_eq!(world.get_with_token("/api/x", access).await.status(), 401);
    assert_eq!(world.upstream.count(), 3);
}

#[tokio::test]
async fn a_reload_that_shortens_access_ttl_keeps_earlier_tokens_revoked() {
    let mut fw = support::keys::FileWorld::start(support::keys::hmac("k1")).await;
    let set_auth = |fw: &mut support::keys::FileWorld, extra: &str| {
        fw.config.auth_extra = extra.into();
        std::fs::write(&fw.path, fw.config.text()).expect("rewrite config");
        fw.world.gateway.state.reload().expect("reload");
    };
    set_auth(&mut fw, "access_ttl = \"1h\"\nleeway = \"0s\"\n");
    let login = fw.world.login("ttl-shrink").await;
    let token = login["access_token"].as_str().expect("token");
    set_auth(&mut fw, "access_ttl = \"1s\"\nleeway = \"0s\"\n");
    assert_eq!(logout(&fw.world, token).await, 204);
    // Past the new TTL (and the second of margin): a revocation sized by it would lapse,
    // while the token, minted under the hour-long TTL, is still unexpired.
    tokio::time::sleep(std::time::Duration::from_millis(2500)).await;
    let response = fw.world.get_with_token("/api/x", token).await;
    assert_eq!(response.status(), 401, "a logged-out token works again");
}
