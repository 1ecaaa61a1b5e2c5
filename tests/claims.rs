//! Tokens other tooling mints: exactly SPEC's required claims verify, wxgate's own claims
//! are optional, and claims wxgate does not know are ignored, never forwarded.
// Test code may panic on what it set up, and its helpers are `pub` for the test files.
#![allow(clippy::unwrap_used, clippy::expect_used, unreachable_pub)]

mod support;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use serde_json::{json, Value};
use support::{World, APPID, AUDIENCE, JWT_SECRET};

/// Signs `claims` as another system would: HS256 with the test key, `typ: at+jwt`, `kid`.
fn foreign_token(claims: Value) -> String {
    sign(&claims.to_string())
}

/// Signs a payload given as JSON text (which may say what serde_json's map cannot).
fn sign(payload: &str) -> String {
    let header = r#"{"alg":"HS256","typ":"at+jwt","kid":"k1"}"#;
    let input = format!(
        "{}.{}",
        URL_SAFE_NO_PAD.encode(header),
        URL_SAFE_NO_PAD.encode(payload)
    );
    let key = jsonwebtoken::EncodingKey::from_secret(JWT_SECRET.as_bytes());
    let signature =
        jsonwebtoken::crypto::sign(input.as_bytes(), &key, jsonwebtoken::Algorithm::HS256)
            .expect("sign");
    format!("{input}.{signature}")
}

/// `exp`, `iat`, `iss`, `aud`, `sub` and nothing else, plus `extra`.
fn spec_claims(openid: &str, extra: Value) -> Value {
    let now = wxgate::tokens::now_unix();
    let mut claims = json!({
        "iss": "wxgate", "aud": AUDIENCE, "sub": openid, "iat": now, "exp": now + 300,
    });
    if let (Some(claims), Value::Object(extra)) = (claims.as_object_mut(), extra) {
        claims.extend(extra);
    }
    claims
}

async fn world() -> World {
    World::start_with(|c| {
        c.routes += &format!(
            "[[routes]]\nprefix = \"/pay\"\nupstream = \"{up}\"\nauth = \"phone\"\n\
             [[routes]]\nprefix = \"/app-only\"\nupstream = \"{up}\"\napps = [\"{APPID}\"]\n",
            up = c.upstream
        );
    })
    .await
}

async fn error_code(response: reqwest::Response) -> (u16, String) {
    let status = response.status().as_u16();
    let body: Value = response.json().await.unwrap_or(Value::Null);
    (status, body["error"].as_str().unwrap_or("").to_string())
}

#[tokio::test]
async fn a_token_with_only_spec_claims_passes_required_and_optional_routes() {
    let world = world().await;
    let token = foreign_token(spec_claims("oForeign1", json!({})));
    for path in ["/api/orders", "/optional/feed"] {
        let response = world.get_with_token(path, &token).await;
        assert_eq!(response.status(), 200, "{path}");
        let seen = world.upstream.last();
        assert_eq!(seen.one("x-openid"), Some("oForeign1"), "{path}");
        // No `appid` claim: no X-AppId, and nothing else invented.
        assert_eq!(seen.one("x-appid"), None, "{path}");
        assert_eq!(seen.one("x-unionid"), None, "{path}");
    }
}

#[tokio::test]
async fn a_token_without_appid_or_phone_is_refused_where_those_are_required() {
    let world = world().await;
    let bare = foreign_token(spec_claims("oForeign2", json!({})));
    let response = world.get_with_token("/app-only/x", &bare).await;
    assert_eq!(error_code(response).await, (403, "app_not_allowed".into()));
    let response = world.get_with_token("/pay/x", &bare).await;
    assert_eq!(error_code(response).await, (403, "phone_required".into()));

    // The same kind of token carrying the optional claims those routes need is admitted.
    let full = foreign_token(spec_claims(
        "oForeign2",
        json!({"appid": APPID, "phone": "13800138000"}),
    ));
    assert_eq!(
        world.get_with_token("/app-only/x", &full).await.status(),
        200
    );
    assert_eq!(world.upstream.last().one("x-appid"), Some(APPID));
    assert_eq!(world.get_with_token("/pay/x", &full).await.status(), 200);
}

#[tokio::test]
async fn unknown_claims_are_ignored_and_never_forwarded() {
    let world = world().await;
    let token = foreign_token(spec_claims(
        "oForeign3",
        json!({"scope": "admin", "X-OpenId": "oAdmin", "uid": 7, "roles": ["root"]}),
    ));
    let response = world.get_with_token("/api/x", &token).await;
    assert_eq!(response.status(), 200);
    let seen = world.upstream.last();
    assert_eq!(seen.all("x-openid"), vec!["oForeign3"]);
    for (name, value) in &seen.headers {
        for planted in ["admin", "oAdmin", "root"] {
            assert!(!value.contains(planted), "{name}: {value} leaked a claim");
        }
    }
}

#[tokio::test]
async fn known_claims_of_the_wrong_type_or_repeated_keys_stay_refused() {
    let world = world().await;
    for extra in [
        json!({"sid": 5}),
        json!({"appid": ["wx"]}),
        json!({"unionid": "u\r\nX-Admin: 1"}),
        json!({"phone": "tel:1"}),
    ] {
        let token = foreign_token(spec_claims("oForeign4", extra.clone()));
        let response = world.get_with_token("/api/x", &token).await;
        assert_eq!(
            error_code(response).await,
            (401, "invalid_token".into()),
            "{extra}"
        );
    }
    // A repeated key cannot be written with serde_json's map; splice it into the text.
    let text =
        spec_claims("oForeign4", json!({}))
            .to_string()
            .replacen('{', r#"{"note":1,"note":2,"#, 1);
    let response = world.get_with_token("/api/x", &sign(&text)).await;
    assert_eq!(error_code(response).await, (401, "invalid_token".into()));
}

#[tokio::test]
async fn a_token_without_sid_has_no_session_to_end() {
    let world = world().await;
    let token = foreign_token(spec_claims("oForeign5", json!({"appid": APPID})));
    let (status, body) = world.post_bearer("/auth/logout", &token, json!({})).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("invalid_request"))
    );
    // It was not revoked: it keeps working until `exp`.
    assert_eq!(world.get_with_token("/api/x", &token).await.status(), 200);
    let response = world.get_with_token("/auth/session", &token).await;
    assert_eq!(error_code(response).await, (401, "invalid_token".into()));
}
