use super::*;

/// RS256, ES256 and EdDSA keys, algorithm confusion, the JWKS document and keygen output.
mod asymmetric;

const SECRET: &str = "0123456789abcdef0123456789abcdef";
const NOW: i64 = 1_800_000_000;

fn hmac_key(kid: &str, alg: Algorithm, secret: &str) -> Key {
    Key::new(
        kid.into(),
        alg,
        Material::Hmac(crate::secret::Secret::new(secret)),
    )
    .expect("valid key")
}

fn keys() -> KeySet {
    KeySet::new(vec![hmac_key("k1", Algorithm::HS256, SECRET)])
}

fn policy() -> Policy<'static> {
    Policy {
        issuer: "wxgate",
        audience: "app",
        leeway_secs: 30,
    }
}

fn claims() -> Claims {
    Claims {
        iss: "wxgate".into(),
        aud: "app".into(),
        sub: "oUser_1-x".into(),
        iat: NOW - 10,
        nbf: Some(NOW - 10),
        exp: NOW + 600,
        jti: Some("j1".into()),
        sid: Some("s1".into()),
        appid: Some("wx0123456789abcdef".into()),
        unionid: None,
        ext: None,
        phone: None,
    }
}

fn b64(text: &str) -> String {
    URL_SAFE_NO_PAD.encode(text)
}

/// Signs arbitrary header and payload JSON with HS256 and `secret`, as an attacker who knows
/// (or guesses) the key might, to check every rule besides the signature.
fn forge(header: &str, payload: &str, secret: &str) -> String {
    let signing_input = format!("{}.{}", b64(header), b64(payload));
    let key = jsonwebtoken::EncodingKey::from_secret(secret.as_bytes());
    let sig =
        jsonwebtoken::crypto::sign(signing_input.as_bytes(), &key, Algorithm::HS256).expect("sign");
    format!("{signing_input}.{sig}")
}

fn payload() -> String {
    serde_json::to_string(&claims()).expect("json")
}

const GOOD_HEADER: &str = r#"{"alg":"HS256","typ":"at+jwt","kid":"k1"}"#;

#[test]
fn minted_tokens_verify_and_round_trip_their_claims() {
    let token = mint(&keys(), &claims()).expect("mint");
    assert_eq!(verify(&keys(), &policy(), &token, NOW), Ok(claims()));
}

#[test]
fn forged_helper_matches_minting() {
    let token = forge(GOOD_HEADER, &payload(), SECRET);
    assert_eq!(verify(&keys(), &policy(), &token, NOW), Ok(claims()));
}

#[test]
fn refuses_header_tricks() {
    let cases = [
        r#"{"alg":"none","typ":"at+jwt","kid":"k1"}"#,
        r#"{"alg":"NONE","typ":"at+jwt","kid":"k1"}"#,
        r#"{"alg":"HS512","typ":"at+jwt","kid":"k1"}"#,
        r#"{"alg":"HS256","typ":"JWT","kid":"k1"}"#,
        r#"{"alg":"HS256","kid":"k1"}"#,
        r#"{"alg":"HS256","typ":"at+jwt","kid":"../../etc/passwd"}"#,
        r#"{"alg":"HS256","typ":"at+jwt","kid":"k1' OR '1'='1"}"#,
        r#"{"alg":"HS256","typ":"at+jwt","kid":"k1","jku":"http://evil/jwks"}"#,
        r#"{"alg":"HS256","typ":"at+jwt","kid":"k1","jwk":{"kty":"oct","k":"AA"}}"#,
        r#"{"alg":"HS256","typ":"at+jwt","kid":"k1","x5u":"http://evil"}"#,
        r#"{"alg":"HS256","typ":"at+jwt","kid":"k1","x5c":["AA"]}"#,
        r#"{"alg":"HS256","typ":"at+jwt","kid":"k1","crit":["exp"]}"#,
        r#"{"alg":"HS256","typ":"at+jwt","kid":"k1","kid":"k1"}"#,
        r#"{"alg":"HS256","alg":"none","typ":"at+jwt","kid":"k1"}"#,
        r#"["alg","HS256"]"#,
    ];
    for header in cases {
        let token = forge(header, &payload(), SECRET);
        assert!(
            verify(&keys(), &policy(), &token, NOW).is_err(),
            "accepted header {header}"
        );
    }
}

#[test]
fn refuses_signature_tricks() {
    let token = mint(&keys(), &claims()).expect("mint");
    let (signed, _sig) = token.rsplit_once('.').expect("three parts");
    let other_key = forge(GOOD_HEADER, &payload(), "another-secret-another-secret-xx");
    let cases = [
        format!("{signed}."),
        signed.to_string(),
        format!("{token}="),
        format!("{token}.extra"),
        other_key,
        format!("{signed}.AAAA"),
    ];
    for token in &cases {
        assert!(
            verify(&keys(), &policy(), token, NOW).is_err(),
            "accepted {token}"
        );
    }
}

#[test]
fn refuses_padded_or_non_canonical_base64() {
    let token = mint(&keys(), &claims()).expect("mint");
    let mut parts: Vec<String> = token.split('.').map(String::from).collect();
    parts[1].push_str("==");
    assert!(verify(&keys(), &policy(), &parts.join("."), NOW).is_err());
}

#[test]
fn refuses_claim_tricks() {
    let base = claims();
    let mut cases: Vec<String> = Vec::new();
    let mut expired = base.clone();
    expired.exp = NOW - 31;
    let mut future = base.clone();
    future.iat = NOW + 120;
    let mut not_yet = base.clone();
    not_yet.nbf = Some(NOW + 120);
    let mut wrong_iss = base.clone();
    wrong_iss.iss = "evil".into();
    let mut wrong_aud = base.clone();
    wrong_aud.aud = "other".into();
    let mut crlf = base.clone();
    crlf.sub = "o1\r\nX-Admin: 1".into();
    let mut long_sub = base.clone();
    long_sub.sub = "a".repeat(65);
    for c in [
        expired, future, not_yet, wrong_iss, wrong_aud, crlf, long_sub,
    ] {
        cases.push(serde_json::to_string(&c).expect("json"));
    }
    let p = payload();
    cases.push(p.replacen("\"sub\"", "\"sub\":\"other\",\"sub\"", 1));
    cases.push(p.replacen(",\"exp\":", ",\"exp\":1,\"exp\":", 1));
    cases.push(p.replace(&format!(",\"exp\":{}", NOW + 600), ""));
    cases.push(
        p.replace(",\"iss\":\"wxgate\"", "")
            .replace("{\"iss\":\"wxgate\",", "{"),
    );
    cases.push("[]".into());
    cases.push("\"text\"".into());
    for payload in &cases {
        let token = forge(GOOD_HEADER, payload, SECRET);
        assert!(
            verify(&keys(), &policy(), &token, NOW).is_err(),
            "accepted payload {payload}"
        );
    }
}

#[test]
fn a_token_with_only_the_required_claims_verifies() {
    let minimal = format!(
        r#"{{"iss":"wxgate","aud":"app","sub":"oMinimal","iat":{},"exp":{}}}"#,
        NOW - 10,
        NOW + 600
    );
    let token = forge(GOOD_HEADER, &minimal, SECRET);
    let claims = verify(&keys(), &policy(), &token, NOW).expect("minimal claims verify");
    assert_eq!(claims.sub, "oMinimal");
    assert_eq!(
        (claims.jti, claims.sid, claims.appid, claims.unionid),
        (None, None, None, None)
    );
    assert_eq!((claims.ext, claims.phone, claims.nbf), (None, None, None));
}

#[test]
fn unknown_claims_are_ignored_but_never_twice() {
    let p = payload();
    let with = |extra: &str| p.replacen('{', &format!("{{{extra},"), 1);
    for extra in [
        r#""admin":true"#,
        r#""scope":"read write""#,
        r#""roles":["a","b"],"meta":{"a":{"b":1}}"#,
        r#""X-OpenId":"oAdmin""#,
    ] {
        let token = forge(GOOD_HEADER, &with(extra), SECRET);
        assert_eq!(
            verify(&keys(), &policy(), &token, NOW),
            Ok(claims()),
            "{extra}"
        );
    }
    for extra in [
        r#""admin":true,"admin":false"#,
        r#""meta":{"a":1,"a":2}"#,
        r#""list":[{"k":1,"k":1}]"#,
    ] {
        let token = forge(GOOD_HEADER, &with(extra), SECRET);
        assert_eq!(
            verify(&keys(), &policy(), &token, NOW),
            Err(TokenError::BadClaims),
            "{extra}"
        );
    }
}

#[test]
fn optional_claims_that_are_present_keep_their_rules() {
    let required = format!(
        r#""iss":"wxgate","aud":"app","sub":"o1","iat":{},"exp":{}"#,
        NOW - 10,
        NOW + 600
    );
    for extra in [
        r#""sid":"""#,
        r#""sid":1"#,
        r#""jti":"""#,
        r#""jti":[]"#,
        r#""appid":"wx 1""#,
        r#""appid":true"#,
        r#""unionid":"u\r\n""#,
        r#""sid":null,"sid":"s""#,
        r#""nbf":"soon""#,
    ] {
        let token = forge(GOOD_HEADER, &format!("{{{required},{extra}}}"), SECRET);
        assert_eq!(
            verify(&keys(), &policy(), &token, NOW),
            Err(TokenError::BadClaims),
            "{extra}"
        );
    }
}

#[test]
fn hook_claims_and_a_phone_round_trip_and_are_left_out_when_absent() {
    let mut c = claims();
    let ext = serde_json::json!({"uid": 42, "role": "admin", "vip": true});
    c.ext = ext.as_object().cloned();
    c.phone = Some("+86 138-0013-8000".into());
    let token = mint(&keys(), &c).expect("mint");
    assert_eq!(verify(&keys(), &policy(), &token, NOW), Ok(c));

    let mut empty = claims();
    empty.ext = Some(Ext::new());
    let json = serde_json::to_string(&empty).expect("json");
    assert!(!json.contains("ext") && !json.contains("phone"), "{json}");
}

#[test]
fn refuses_malformed_ext_and_phone_claims() {
    let p = payload();
    let with = |extra: &str| p.replacen('{', &format!("{{{extra},"), 1);
    let cases = [
        with(r#""ext":{"uid":1,"uid":2}"#),
        with(r#""ext":{"uid":{"id":1}}"#),
        with(r#""ext":{"uid":[1]}"#),
        with(r#""ext":{"uid":null}"#),
        with(r#""ext":{"sub":"oAdmin"}"#),
        with(r#""ext":{"phone":"13800138000"}"#),
        with(r#""ext":{"a-b":1}"#),
        with(r#""ext":{"uid":"a\r\nX-OpenId: oAdmin"}"#),
        with(r#""ext":[1]"#),
        with(r#""ext":"uid""#),
        with(r#""phone":"tel:138""#),
        with(r#""phone":"""#),
        with(r#""phone":13800138000"#),
        with(r#""phone":"1","phone":"2""#),
    ];
    for payload in &cases {
        let token = forge(GOOD_HEADER, payload, SECRET);
        assert_eq!(
            verify(&keys(), &policy(), &token, NOW),
            Err(TokenError::BadClaims),
            "accepted payload {payload}"
        );
    }
    let fine = forge(
        GOOD_HEADER,
        &with(r#""ext":{"uid":"u-1"},"phone":"1""#),
        SECRET,
    );
    assert!(verify(&keys(), &policy(), &fine, NOW).is_ok());
}

#[test]
fn expiry_is_reported_as_such_and_leeway_applies() {
    let mut c = claims();
    c.exp = NOW - 20;
    let token = mint(&keys(), &c).expect("mint");
    assert!(
        verify(&keys(), &policy(), &token, NOW).is_ok(),
        "inside the leeway"
    );
    assert_eq!(
        verify(&keys(), &policy(), &token, NOW + 11),
        Err(TokenError::Expired)
    );
}

#[test]
fn refuses_oversized_tokens_before_decoding() {
    let token = "a".repeat(MAX_TOKEN_BYTES + 1);
    assert_eq!(
        verify(&keys(), &policy(), &token, NOW),
        Err(TokenError::TooLarge)
    );
}

#[test]
fn tokens_without_kid_only_verify_with_a_single_key() {
    let header = r#"{"alg":"HS256","typ":"at+jwt"}"#;
    let token = forge(header, &payload(), SECRET);
    assert!(verify(&keys(), &policy(), &token, NOW).is_ok());
    let two = KeySet::new(vec![
        hmac_key("k1", Algorithm::HS256, SECRET),
        hmac_key("k0", Algorithm::HS256, SECRET),
    ]);
    assert_eq!(
        verify(&two, &policy(), &token, NOW),
        Err(TokenError::UnknownKey)
    );
}

#[test]
fn older_keys_verify_but_never_sign() {
    let rotated = KeySet::new(vec![
        hmac_key(
            "k2",
            Algorithm::HS512,
            "a-brand-new-secret-a-brand-new-secret",
        ),
        hmac_key("k1", Algorithm::HS256, SECRET),
    ]);
    let old = mint(&keys(), &claims()).expect("mint");
    assert!(verify(&rotated, &policy(), &old, NOW).is_ok());
    let fresh = mint(&rotated, &claims()).expect("mint");
    let header = fresh.split('.').next().expect("header");
    let header = String::from_utf8(URL_SAFE_NO_PAD.decode(header).expect("b64")).expect("utf8");
    assert!(
        header.contains(r#""kid":"k2""#) && header.contains("HS512"),
        "{header}"
    );
    assert!(verify(&keys(), &policy(), &fresh, NOW).is_err());
}

#[test]
fn short_hmac_secrets_are_refused() {
    let short = Key::new(
        "k".into(),
        Algorithm::HS256,
        Material::Hmac(crate::secret::Secret::new("short")),
    );
    assert!(short.is_err());
}
