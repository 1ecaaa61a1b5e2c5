//! Token parsing and verification (`tokens::verify`) with two fixed HS256 keys.
//!
//! Two kinds of input. A token (the seeds are valid tokens, which the fuzzer mutates):
//! if it is accepted, its header and payload decode to the same JSON as the token it was
//! mutated from, or its signature is a valid HMAC over exactly its own first two segments.
//! Or `{`-led JSON, `header \0 payload [\0 anything]`, which the target encodes and signs
//! itself (with the second key when a third part is there), so the claims checks behind
//! the signature are reached: if accepted, the header names the signing key and HS256,
//! and the claims meet the policy (issuer, audience, times, `sub`).
//! Either way an accepted token's claims are what its payload says.
#![no_main]

use std::sync::OnceLock;

use aws_lc_rs::hmac;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use jsonwebtoken::Algorithm;
use libfuzzer_sys::fuzz_target;
use serde_json::Value;
use wxgate::Secret;
use wxgate::tokens::{self, Claims, Key, KeySet, Material, Policy};

const SECRETS: [(&str, &str); 2] = [
    ("k1", "fuzz-secret-0123456789abcdef-0123456789"),
    ("k2", "fuzz-other-secret-0123456789abcdef-012"),
];
/// A fixed clock, so that a token's fate depends on the input alone.
const NOW: i64 = 1_700_000_000;
const LEEWAY: i64 = 60;
const POLICY: Policy<'static> = Policy {
    issuer: "wxgate",
    audience: "fuzz",
    leeway_secs: LEEWAY,
};

struct Fixture {
    keys: KeySet,
    /// The header and payload JSON of the token the seeds hold.
    original: (Value, Value),
}

fn fixture() -> &'static Fixture {
    static FIXTURE: OnceLock<Fixture> = OnceLock::new();
    FIXTURE.get_or_init(|| {
        let keys = KeySet::new(
            SECRETS
                .iter()
                .map(|(kid, secret)| {
                    match Key::new(
                        kid.to_string(),
                        Algorithm::HS256,
                        Material::Hmac(Secret::new(*secret)),
                    ) {
                        Ok(key) => key,
                        Err(e) => panic!("key: {e}"),
                    }
                })
                .collect(),
        );
        let claims = Claims {
            iss: "wxgate".into(),
            aud: "fuzz".into(),
            sub: "oFuzz0123456789abcdefghijkl".into(),
            iat: NOW,
            nbf: Some(NOW),
            exp: NOW + 3600,
            jti: Some("jti0123456789".into()),
            sid: Some("sid0123456789abcdef".into()),
            appid: Some("wx0123456789abcdef".into()),
            unionid: None,
            ext: None,
            phone: None,
        };
        let token = match tokens::mint(&keys, &claims) {
            Ok(token) => token,
            Err(e) => panic!("mint: {e}"),
        };
        let mut parts = token.split('.').map(segment_json);
        let (Some(Some(header)), Some(Some(payload))) = (parts.next(), parts.next()) else {
            panic!("minted token does not decode: {token}");
        };
        Fixture {
            keys,
            original: (header, payload),
        }
    })
}

fn segment_json(segment: &str) -> Option<Value> {
    let bytes = URL_SAFE_NO_PAD.decode(segment).ok()?;
    serde_json::from_slice(&bytes).ok()
}

fn mac(secret: &str, signing_input: &[u8]) -> Vec<u8> {
    let key = hmac::Key::new(hmac::HMAC_SHA256, secret.as_bytes());
    hmac::sign(&key, signing_input).as_ref().to_vec()
}

/// Whether `signature` is a valid HMAC over `signing_input` with any of the keys.
fn signed_by_a_key(signing_input: &str, signature: &str) -> bool {
    let Ok(signature) = URL_SAFE_NO_PAD.decode(signature) else {
        return false;
    };
    SECRETS
        .iter()
        .any(|(_, secret)| mac(secret, signing_input.as_bytes()) == signature)
}

/// An accepted token's claims are those its payload segment holds.
fn assert_claims_from_payload(payload_b64: &str, claims: &Claims) {
    let from_payload = URL_SAFE_NO_PAD
        .decode(payload_b64)
        .ok()
        .and_then(|bytes| serde_json::from_slice::<Claims>(&bytes).ok());
    assert_eq!(
        from_payload.as_ref(),
        Some(claims),
        "claims not from the payload"
    );
}

fn mutated_token(token: &str) {
    let fixture = fixture();
    let Ok(claims) = tokens::verify(&fixture.keys, &POLICY, token, NOW) else {
        return;
    };
    let parts: Vec<&str> = token.split('.').collect();
    let [header, payload, signature] = parts[..] else {
        panic!("accepted a token of {} segments: {token:?}", parts.len());
    };
    let same_json = segment_json(header).as_ref() == Some(&fixture.original.0)
        && segment_json(payload).as_ref() == Some(&fixture.original.1);
    let signed = signed_by_a_key(&token[..header.len() + 1 + payload.len()], signature);
    assert!(
        same_json || signed,
        "accepted a token whose content changed without a valid signature: {token:?}"
    );
    assert_claims_from_payload(payload, &claims);
}

fn signed_json(data: &[u8]) {
    let mut parts = data.splitn(3, |b| *b == 0);
    let (Some(header), Some(payload)) = (parts.next(), parts.next()) else {
        return;
    };
    let (kid, secret) = SECRETS[usize::from(parts.next().is_some_and(|p| !p.is_empty()))];
    let signing_input = format!(
        "{}.{}",
        URL_SAFE_NO_PAD.encode(header),
        URL_SAFE_NO_PAD.encode(payload)
    );
    let signature = URL_SAFE_NO_PAD.encode(mac(secret, signing_input.as_bytes()));
    let token = format!("{signing_input}.{signature}");
    let Ok(claims) = tokens::verify(&fixture().keys, &POLICY, &token, NOW) else {
        return;
    };
    let header: Value = match serde_json::from_slice(header) {
        Ok(header) => header,
        Err(e) => panic!("accepted an undecodable header ({e}): {token:?}"),
    };
    let typ = header["typ"].as_str().map(str::to_ascii_lowercase);
    assert!(
        header["alg"] == "HS256"
            && header["kid"] == kid
            && matches!(typ.as_deref(), Some("at+jwt" | "application/at+jwt"))
            && header.as_object().is_some_and(|h| h.len() == 3),
        "accepted header {header} signed by {kid}"
    );
    assert!(
        claims.iss == POLICY.issuer
            && claims.aud == POLICY.audience
            && claims.exp.saturating_add(LEEWAY) > NOW
            && claims.iat <= NOW + LEEWAY
            && claims.nbf.is_none_or(|nbf| nbf <= NOW + LEEWAY)
            && tokens::is_safe_id(&claims.sub),
        "accepted claims outside the policy: {claims:?}"
    );
    let Some(payload_b64) = signing_input.split('.').nth(1) else {
        return;
    };
    assert_claims_from_payload(payload_b64, &claims);
}

fuzz_target!(|data: &[u8]| {
    if data.first() == Some(&b'{') {
        signed_json(data);
    } else if let Ok(token) = std::str::from_utf8(data) {
        mutated_token(token);
    }
});
