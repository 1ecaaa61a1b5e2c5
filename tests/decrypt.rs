//! `POST /auth/decrypt`: the session's key opens WeChat's encrypted user data; tampered IVs,
//! foreign watermarks, other users' openIds and bad signatures all get one answer.
// Test code may panic on what it set up, and its helpers are `pub` for the test files.
#![allow(clippy::unwrap_used, clippy::expect_used, unreachable_pub)]

mod support;

use aws_lc_rs::cipher::{EncryptionContext, PaddedBlockEncryptingKey, UnboundCipherKey, AES_128};
use aws_lc_rs::iv::FixedLength;
use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use serde_json::{json, Value};
use support::{World, APPID};

/// Encrypts `plain` as WeChat does: AES-128-CBC, PKCS#7, with the given key and IV.
fn encrypt(session_key: &str, iv: [u8; 16], plain: &Value) -> String {
    encrypt_text(session_key, iv, &plain.to_string())
}

fn encrypt_text(session_key: &str, iv: [u8; 16], plain: &str) -> String {
    let key = STANDARD.decode(session_key).expect("key");
    let key =
        PaddedBlockEncryptingKey::cbc_pkcs7(UnboundCipherKey::new(&AES_128, &key).expect("aes"))
            .expect("cbc");
    let mut data = plain.as_bytes().to_vec();
    key.less_safe_encrypt(&mut data, EncryptionContext::Iv128(FixedLength::from(iv)))
        .expect("encrypt");
    STANDARD.encode(data)
}

fn sha1_hex(text: &str) -> String {
    let digest = aws_lc_rs::digest::digest(
        &aws_lc_rs::digest::SHA1_FOR_LEGACY_USE_ONLY,
        text.as_bytes(),
    );
    digest.as_ref().iter().map(|b| format!("{b:02x}")).collect()
}

struct User {
    token: String,
    openid: String,
    key: String,
}

async fn user(world: &World) -> User {
    let login = world.login(&format!("decrypt{}", support::unique())).await;
    let openid = login["openid"].as_str().expect("openid").to_string();
    User {
        token: login["access_token"].as_str().expect("token").to_string(),
        key: world.wechat.mock.session_key(&openid).expect("session key"),
        openid,
    }
}

async fn decrypt(world: &World, token: &str, body: Value) -> (u16, Value) {
    world.post_bearer("/auth/decrypt", token, body).await
}

const IV: [u8; 16] = *b"0123456789abcdef";

fn profile(openid: &str, appid: &str) -> Value {
    json!({"openId": openid, "nickName": "Band", "gender": 1, "watermark": {"appid": appid, "timestamp": 1_700_000_000}})
}

#[tokio::test]
async fn the_sessions_key_opens_user_data_with_its_watermark() {
    let world = World::start().await;
    let u = user(&world).await;
    let plain = profile(&u.openid, APPID);
    let body = json!({"encryptedData": encrypt(&u.key, IV, &plain), "iv": STANDARD.encode(IV)});
    let (status, answer) = decrypt(&world, &u.token, body).await;
    assert_eq!((status, &answer), (200, &plain));
    // Phone-number style data carries no openId and is fine too.
    let phone = json!({"phoneNumber": "13580006666", "countryCode": "86", "watermark": {"appid": APPID, "timestamp": 1}});
    let body = json!({"encryptedData": encrypt(&u.key, IV, &phone), "iv": STANDARD.encode(IV)});
    assert_eq!(decrypt(&world, &u.token, body).await, (200, phone));
}

#[tokio::test]
async fn a_valid_raw_data_signature_is_accepted() {
    let world = World::start().await;
    let u = user(&world).await;
    let raw = r#"{"nickName":"Band","gender":1}"#;
    let body = json!({
        "encryptedData": encrypt(&u.key, IV, &profile(&u.openid, APPID)),
        "iv": STANDARD.encode(IV),
        "rawData": raw,
        "signature": sha1_hex(&format!("{raw}{}", u.key)),
    });
    assert_eq!(decrypt(&world, &u.token, body).await.0, 200);
}

#[tokio::test]
async fn every_failure_is_the_same_decrypt_failed() {
    let world = World::start().await;
    let u = user(&world).await;
    let other = user(&world).await;
    let good = encrypt(&u.key, IV, &profile(&u.openid, APPID));
    let good_bytes = STANDARD.decode(&good).expect("b64");
    let flip = |i: usize| {
        let mut b = good_bytes.clone();
        b[i] ^= 0x01;
        STANDARD.encode(b)
    };
    // wechat-api.md 3.5: with openId in the first block, XOR-ing the IV rewrites it exactly,
    // without the key; the data still decrypts cleanly, so only the openId check refuses it.
    let openid_first = format!(
        r#"{{"openId":"{}","watermark":{{"appid":"{APPID}","timestamp":1}}}}"#,
        u.openid
    );
    let clean = encrypt_text(&u.key, IV, &openid_first);
    let mut tampered_iv = IV;
    tampered_iv[11] ^= u.openid.as_bytes()[0] ^ b'X';
    let iv = STANDARD.encode(IV);
    let raw = r#"{"nickName":"Band"}"#;
    let cases = [
        (
            "tampered IV (openId rewritten)",
            json!({"encryptedData": clean, "iv": STANDARD.encode(tampered_iv)}),
        ),
        (
            "flipped last byte (padding)",
            json!({"encryptedData": flip(good_bytes.len() - 1), "iv": iv}),
        ),
        (
            "flipped first byte",
            json!({"encryptedData": flip(0), "iv": iv}),
        ),
        (
            "truncated",
            json!({"encryptedData": STANDARD.encode(&good_bytes[..good_bytes.len() - 3]), "iv": iv}),
        ),
        ("bad base64", json!({"encryptedData": "%%%", "iv": iv})),
        ("short iv", json!({"encryptedData": good, "iv": "AAAA"})),
        (
            "foreign watermark",
            json!({"encryptedData": encrypt(&u.key, IV, &profile(&u.openid, "wxotherapp0000000")), "iv": iv}),
        ),
        (
            "no watermark",
            json!({"encryptedData": encrypt(&u.key, IV, &json!({"openId": u.openid})), "iv": iv}),
        ),
        (
            "another user's openId",
            json!({"encryptedData": encrypt(&u.key, IV, &profile(&other.openid, APPID)), "iv": iv}),
        ),
        (
            "another user's key",
            json!({"encryptedData": encrypt(&other.key, IV, &profile(&u.openid, APPID)), "iv": iv}),
        ),
        (
            "not JSON inside",
            json!({"encryptedData": encrypt(&u.key, IV, &json!("just a string")), "iv": iv}),
        ),
        (
            "bad signature",
            json!({"encryptedData": good, "iv": iv, "rawData": raw, "signature": sha1_hex(raw)}),
        ),
        (
            "signature without rawData",
            json!({"encryptedData": good, "iv": iv, "signature": "00"}),
        ),
    ];
    let untampered = json!({"encryptedData": clean, "iv": STANDARD.encode(IV)});
    assert_eq!(
        decrypt(&world, &u.token, untampered).await.0,
        200,
        "the untampered openId-first data decrypts"
    );
    let mut descriptions = Vec::new();
    for (name, body) in cases {
        let (status, answer) = decrypt(&world, &u.token, body).await;
        assert_eq!(
            (status, answer["error"].as_str()),
            (400, Some("decrypt_failed")),
            "{name}: {answer}"
        );
        descriptions.push(answer["error_description"].to_string());
    }
    descriptions.dedup();
    assert_eq!(
        descriptions.len(),
        1,
        "failures must be indistinguishable: {descriptions:?}"
    );
}

#[tokio::test]
async fn decrypt_needs_a_token_and_the_fields() {
    let world = World::start().await;
    let response = world
        .http
        .post(world.url("/auth/decrypt"))
        .json(&json!({"encryptedData": "AA", "iv": "AA"}))
        .send()
        .await
        .expect("request");
    assert_eq!(response.status(), 401);
    let u = user(&world).await;
    let (status, answer) = decrypt(&world, &u.token, json!({"iv": "AA"})).await;
    assert_eq!(
        (status, answer["error"].as_str()),
        (400, Some("invalid_request"))
    );
    // A token without a server-side session has no session_key to decrypt with.
    let (status, _) = decrypt(
        &world,
        &support::mint("oNoSession", 600),
        json!({"encryptedData": "AA", "iv": "AA"}),
    )
    .await;
    assert_eq!(status, 401);
}

#[tokio::test]
async fn decrypt_shares_the_per_client_limit_with_login_and_phone() {
    let world = World::start_with(|c| {
        c.auth_tables = "[auth.login_rate_limit]\nper_minute = 1\nburst = 3\n".into();
    })
    .await;
    let u = user(&world).await;
    let body = json!({"encryptedData": "AAAA", "iv": "AAAA"});
    let (status, answer) = decrypt(&world, &u.token, body.clone()).await;
    assert_eq!(
        (status, answer["error"].as_str()),
        (400, Some("decrypt_failed"))
    );
    let (status, _) = decrypt(&world, &u.token, body.clone()).await;
    assert_eq!(status, 400, "the login and two decrypts fit the burst of 3");
    let (status, answer) = decrypt(&world, &u.token, body).await;
    assert_eq!(
        (status, answer["error"].as_str()),
        (429, Some("rate_limited"))
    );
    let (status, answer) = world
        .post_bearer("/auth/phone", &u.token, json!({"code": "pn-limited"}))
        .await;
    assert_eq!(
        (status, answer["error"].as_str()),
        (429, Some("rate_limited")),
        "phone draws on the same bucket"
    );
    assert_eq!(
        world.wechat.mock.calls("/wxa/business/getuserphonenumber"),
        0
    );
}
