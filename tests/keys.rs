//! Asymmetric signing keys over HTTP: login with RS256/ES256/EdDSA, the JWKS and how an
//! upstream verifies with it, algorithm confusion, zero-downtime rotation through reloads,
//! and `wxgate keygen` output used as a key file by `wxgate check`.
// Test code may panic on what it set up, and its helpers are `pub` for the test files.
#![allow(clippy::unwrap_used, clippy::expect_used, unreachable_pub)]

mod support;

use std::process::Command;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use jsonwebtoken::jwk::JwkSet;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde_json::{json, Value};
use support::binary::BIN;
use support::keys::{hmac, FileWorld, KeyDir};
use support::{World, AUDIENCE};

const ASYMMETRIC: [Algorithm; 3] = [Algorithm::RS256, Algorithm::ES256, Algorithm::EdDSA];

fn header_of(token: &str) -> Value {
    let header = token.split('.').next().expect("header");
    serde_json::from_slice(&URL_SAFE_NO_PAD.decode(header).expect("b64")).expect("json")
}

async fn jwks(world: &World) -> Value {
    let response = world.get("/.well-known/jwks.json").await;
    assert_eq!(response.status(), 200);
    response.json().await.expect("json")
}

fn kids(jwks: &Value) -> Vec<&str> {
    jwks["keys"]
        .as_array()
        .expect("keys")
        .iter()
        .map(|k| k["kid"].as_str().expect("kid"))
        .collect()
}

/// What README tells upstream services to do: pick the JWK by the token's `kid`, pin the
/// algorithm, and check `iss`, `aud`, `exp` and `typ`.
fn verify_like_an_upstream(jwks: &Value, token: &str) -> Result<Value, String> {
    let set: JwkSet = serde_json::from_value(jwks.clone()).map_err(|e| e.to_string())?;
    let header = jsonwebtoken::decode_header(token).map_err(|e| e.to_string())?;
    let kid = header.kid.ok_or("no kid")?;
    let jwk = set.find(&kid).ok_or("kid not in the JWKS")?;
    let alg = match jwk.common.key_algorithm.map(|a| a.to_string()).as_deref() {
        Some("RS256") => Algorithm::RS256,
        Some("ES256") => Algorithm::ES256,
        Some("EdDSA") => Algorithm::EdDSA,
        other => return Err(format!("algorithm {other:?} not allowed")),
    };
    if header.typ.as_deref() != Some("at+jwt") {
        return Err("typ is not at+jwt".into());
    }
    let key = DecodingKey::from_jwk(jwk).map_err(|e| e.to_string())?;
    let mut validation = Validation::new(alg);
    validation.set_issuer(&["wxgate"]);
    validation.set_audience(&[AUDIENCE]);
    validation.set_required_spec_claims(&["exp", "iss", "aud", "sub"]);
    jsonwebtoken::decode::<Value>(token, &key, &validation)
        .map(|data| data.claims)
        .map_err(|e| e.to_string())
}

async fn status_with(world: &World, token: &str) -> u16 {
    world
        .get_with_token("/api/x", token)
        .await
        .status()
        .as_u16()
}

/// Asserts that `GET /api/x` with `token` is refused as 401 `invalid_token`.
async fn assert_invalid_token(world: &World, token: &str, what: &str) {
    let response = world.get_with_token("/api/x", token).await;
    assert_eq!(response.status(), 401, "{what}");
    let body: Value = response.json().await.expect("json");
    assert_eq!(body["error"], "invalid_token", "{what}");
}

#[tokio::test]
async fn each_asymmetric_signing_key_gives_tokens_that_required_routes_accept() {
    let dir = KeyDir::new();
    for alg in ASYMMETRIC {
        let kid = format!("{alg:?}-1").to_lowercase();
        let key = dir.generate(&kid, alg);
        let world = World::start_with(|c| c.keys = key.signing(&kid) + &hmac("k1")).await;
        let login = world.login(&format!("code{}", support::unique())).await;
        let token = login["access_token"].as_str().expect("access_token");
        let header = header_of(token);
        assert_eq!(header["alg"], wxgate::tokens::alg_name(alg));
        assert_eq!(header["kid"], kid.as_str());
        let response = world.get_with_token("/api/x", token).await;
        assert_eq!(response.status(), 200, "{alg:?}");
        let openid = login["openid"].as_str().expect("openid");
        assert_eq!(world.upstream.last().one("X-OpenId"), Some(openid));
        // A token of the HMAC key that only verifies now is still good.
        assert_eq!(
            status_with(&world, &support::mint("oHmac_1", 600)).await,
            200
        );
    }
}

#[tokio::test]
async fn jwks_lists_every_public_key_and_no_hmac_secret() {
    let dir = KeyDir::new();
    let rsa = dir.generate("rsa", Algorithm::RS256);
    let ec = dir.generate("ec", Algorithm::ES256);
    let ed = dir.generate("ed", Algorithm::EdDSA);
    let keys = rsa.signing("rsa-1") + &hmac("k1") + &ec.verify_only("ec-1") + &ed.signing("ed-1");
    let world = World::start_with(|c| c.keys = keys).await;
    let response = world.get("/.well-known/jwks.json").await;
    assert_eq!(response.status(), 200);
    let header = |name: &str| {
        response
            .headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_string()
    };
    assert_eq!(header("content-type"), "application/json");
    assert_eq!(header("cache-control"), "public, max-age=300");
    let text = response.text().await.expect("body");
    assert!(!text.contains(support::JWT_SECRET), "{text}");
    assert!(!text.contains(&URL_SAFE_NO_PAD.encode(support::JWT_SECRET)));
    let body: Value = serde_json::from_str(&text).expect("json");
    let listed: Vec<Value> = body["keys"]
        .as_array()
        .expect("keys")
        .iter()
        .map(|k| json!([k["kid"], k["kty"], k["alg"], k["crv"], k["use"]]))
        .collect();
    assert_eq!(
        listed,
        [
            json!(["rsa-1", "RSA", "RS256", null, "sig"]),
            json!(["ec-1", "EC", "ES256", "P-256", "sig"]),
            json!(["ed-1", "OKP", "EdDSA", "Ed25519", "sig"]),
        ]
    );
    for key in body["keys"].as_array().expect("keys") {
        assert!(
            ["d", "p", "q", "dp", "dq", "qi", "k"]
                .iter()
                .all(|m| key.get(m).is_none()),
            "private member in {key}"
        );
    }
}

#[tokio::test]
async fn an_upstream_verifies_gateway_tokens_with_the_jwks_alone() {
    let dir = KeyDir::new();
    for alg in ASYMMETRIC {
        let key = dir.generate("signer", alg);
        let world = World::start_with(|c| c.keys = key.signing("s1")).await;
        let token = world.token().await;
        let published = jwks(&world).await;
        let claims = match verify_like_an_upstream(&published, &token) {
            Ok(c) => c,
            Err(e) => panic!("{alg:?}: an upstream could not verify: {e}"),
        };
        assert_eq!(claims["iss"], "wxgate");
        assert_eq!(claims["aud"], AUDIENCE);
        // A key set of another instance with the same kid does not verify it.
        let other = dir.generate("other", alg);
        let stranger = World::start_with(|c| c.keys = other.signing("s1")).await;
        assert!(verify_like_an_upstream(&jwks(&stranger).await, &token).is_err());
    }
}

#[tokio::test]
async fn hmac_tokens_keyed_with_the_published_key_are_refused() {
    let dir = KeyDir::new();
    let rsa = dir.generate("rsa", Algorithm::RS256);
    let world = World::start_with(|c| c.keys = rsa.signing("rsa-1") + &hmac("k1")).await;
    let jwk = jwks(&world).await["keys"][0].to_string();
    let pem = std::fs::read(&rsa.public).expect("public key");
    let good = world.token().await;
    let payload = good.split('.').nth(1).expect("payload");
    for secret in [jwk.as_bytes(), pem.as_slice()] {
        for alg in ["HS256", "RS256"] {
            let header = json!({ "alg": alg, "typ": "at+jwt", "kid": "rsa-1" });
            let input = format!("{}.{payload}", URL_SAFE_NO_PAD.encode(header.to_string()));
            let key = jsonwebtoken::EncodingKey::from_secret(secret);
            let sig =
                jsonwebtoken::crypto::sign(input.as_bytes(), &key, Algorithm::HS256).expect("sign");
            let forged = format!("{input}.{sig}");
            let what = format!("HMAC token claiming {alg}");
            assert_invalid_token(&world, &forged, &what).await;
        }
    }
    assert_eq!(status_with(&world, &good).await, 200);
}

#[tokio::test]
async fn keys_rotate_without_downtime_through_reloads() {
    let dir = KeyDir::new();
    let old = dir.generate("old", Algorithm::RS256);
    let new = dir.generate("new", Algorithm::ES256);

    // (a) Only the old key: it signs.
    let mut fw = FileWorld::start(old.signing("old")).await;
    let old_token = fw.world.token().await;
    assert_eq!(header_of(&old_token)["kid"], "old");
    assert_eq!(kids(&jwks(&fw.world).await), ["old"]);

    // (b) The new key first: it signs; the old one still verifies and is still published,
    // so upstreams that cached either JWKS keep verifying both generations.
    fw.reload_keys(new.signing("new") + &old.signing("old"));
    let new_token = fw.world.token().await;
    let header = header_of(&new_token);
    assert_eq!(
        (&header["kid"], &header["alg"]),
        (&json!("new"), &json!("ES256"))
    );
    assert_eq!(status_with(&fw.world, &old_token).await, 200);
    assert_eq!(status_with(&fw.world, &new_token).await, 200);
    let both = jwks(&fw.world).await;
    assert_eq!(kids(&both), ["new", "old"]);
    assert!(verify_like_an_upstream(&both, &old_token).is_ok());
    assert!(verify_like_an_upstream(&both, &new_token).is_ok());

    // (c) The old key removed: its tokens are refused, the new ones keep working.
    fw.reload_keys(new.signing("new"));
    assert_invalid_token(&fw.world, &old_token, "a token of the removed key").await;
    assert_eq!(status_with(&fw.world, &new_token).await, 200);
    let only_new = jwks(&fw.world).await;
    assert_eq!(kids(&only_new), ["new"]);
    assert!(verify_like_an_upstream(&only_new, &old_token).is_err());
}

#[tokio::test]
async fn a_removed_key_is_noticed_on_a_connection_that_already_proved_its_token() {
    // A connection remembers the last token it proved, for the configuration it proved it
    // under: a reload that drops the key must refuse the token on that connection too.
    let dir = KeyDir::new();
    let old = dir.generate("old", Algorithm::ES256);
    let new = dir.generate("new", Algorithm::ES256);
    let mut fw = FileWorld::start(old.signing("old")).await;
    let old_token = fw.world.token().await;
    let mut conn = tokio::net::TcpStream::connect(fw.world.gateway.addr)
        .await
        .expect("connect");
    for _ in 0..2 {
        assert_eq!(support::get_on(&mut conn, &old_token).await, 200);
    }
    fw.reload_keys(new.signing("new"));
    assert_eq!(support::get_on(&mut conn, &old_token).await, 401);
}

#[tokio::test]
async fn a_new_key_can_be_published_before_it_signs() {
    // The first step of a multi-instance rotation: the new key is added second, so it is in
    // the JWKS everywhere before any instance signs with it.
    let dir = KeyDir::new();
    let old = dir.generate("old", Algorithm::EdDSA);
    let new = dir.generate("new", Algorithm::EdDSA);
    let mut fw = FileWorld::start(old.signing("old")).await;
    fw.reload_keys(old.signing("old") + &new.verify_only("new"));
    assert_eq!(kids(&jwks(&fw.world).await), ["old", "new"]);
    let token = fw.world.token().await;
    assert_eq!(header_of(&token)["kid"], "old");
    assert_eq!(status_with(&fw.world, &token).await, 200);
}

#[test]
fn keygen_output_is_a_key_file_that_check_accepts() {
    let dir = KeyDir::new();
    let mut keys = String::new();
    for (i, alg) in ["ES256", "RS256", "EdDSA"].into_iter().enumerate() {
        let output = Command::new(BIN)
            .args(["keygen", "--alg", alg, "--public"])
            .output()
            .expect("run keygen");
        assert_eq!(output.status.code(), Some(0), "keygen --alg {alg}");
        let text = String::from_utf8(output.stdout).expect("utf8");
        assert!(text.starts_with("-----BEGIN PRIVATE KEY-----\n"), "{text}");
        assert!(text.contains("-----END PRIVATE KEY-----\n-----BEGIN PUBLIC KEY-----\n"));
        assert!(text.lines().all(|l| l.len() <= 64));
        // The whole output (private then public key) is the private key file.
        let file = dir.path.join(format!("{alg}.pem"));
        std::fs::write(&file, &text).expect("write key");
        let field = if i == 0 {
            "private_key_file"
        } else {
            "public_key_file"
        };
        keys.push_str(&format!(
            "[[auth.keys]]\nkid = \"{alg}-kid\"\nalg = \"{alg}\"\n{field} = \"{alg}.pem\"\n"
        ));
    }
    let mut config = support::ConfigBuilder::new("http://127.0.0.1:9", "http://127.0.0.1:9");
    config.keys = keys;
    let path = dir.path.join("gateway.toml");
    std::fs::write(&path, config.text()).expect("write config");
    let check = Command::new(BIN)
        .args(["check", "-c"])
        .arg(&path)
        .output()
        .expect("run check");
    let stdout = String::from_utf8_lossy(&check.stdout);
    assert_eq!(
        check.status.code(),
        Some(0),
        "{stdout}{}",
        String::from_utf8_lossy(&check.stderr)
    );
    for line in [
        "kid=ES256-kid alg=ES256 EC P-256 private key (signs and verifies, in JWKS)",
        "kid=RS256-kid alg=RS256 RSA 2048-bit public key (verifies only, in JWKS)",
        "kid=EdDSA-kid alg=EdDSA Ed25519 public key (verifies only, in JWKS)",
    ] {
        assert!(stdout.contains(line), "lacks `{line}`:\n{stdout}");
    }
    assert!(!stdout.contains("BEGIN"), "{stdout}");
    // `wxgate token` signs with the ES256 key.
    let token = Command::new(BIN)
        .args(["token", "--openid", "oCli_1", "-c"])
        .arg(&path)
        .output()
        .expect("run token");
    assert_eq!(token.status.code(), Some(0));
    let token = String::from_utf8(token.stdout).expect("utf8");
    assert_eq!(header_of(token.trim())["alg"], "ES256");
}

#[test]
fn keygen_refuses_unknown_algorithms_with_exit_code_2() {
    for alg in ["ES384", "none", "PS256"] {
        let output = Command::new(BIN)
            .args(["keygen", "--alg", alg])
            .output()
            .expect("run keygen");
        assert_eq!(output.status.code(), Some(2), "{alg}");
        assert!(output.stdout.is_empty());
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(stderr.contains(alg) && stderr.contains("EdDSA"), "{stderr}");
    }
}
