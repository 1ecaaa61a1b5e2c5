//! Access tokens: minting (`typ: at+jwt`) and strict verification as RFC 8725 asks.
//!
//! Verification does its own parsing of the compact form so that nothing in the token
//! chooses how it is checked: the key comes from a fixed `kid` table and carries its one
//! algorithm, unknown header parameters (`jku`, `jwk`, `x5u`, `x5c`, `crit`...) are refused,
//! base64url must be canonical and unpadded, and duplicate JSON keys make a token invalid.

mod asymmetric;
mod distinct;
mod ext;
pub mod keygen;
mod keys;

use std::time::{SystemTime, UNIX_EPOCH};

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use jsonwebtoken::{Algorithm, Header};
use serde::{Deserialize, Serialize};

use crate::claims::{self, Ext};
pub use keys::{is_hmac, parse_alg, Key, KeyKind, KeySet, Material, MIN_HMAC_SECRET_BYTES};

/// Tokens longer than this are refused before any decoding.
pub const MAX_TOKEN_BYTES: usize = 4096;
/// The JOSE `typ` of wxgate access tokens (RFC 9068).
pub const TOKEN_TYPE: &str = "at+jwt";

/// Claims of a wxgate access token. `exp`, `iat`, `iss`, `aud` and `sub` are required;
/// wxgate's own claims are optional, so that tokens minted by other tooling with exactly
/// the registered claims verify. Claims wxgate does not know are ignored (RFC 7519 §4):
/// they are never read, so they can never reach a header.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Claims {
    pub iss: String,
    pub aud: String,
    pub sub: String,
    pub iat: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nbf: Option<i64>,
    pub exp: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub jti: Option<String>,
    /// The session: what logout revokes. A token without one lives until `exp`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sid: Option<String>,
    /// The mini-program; without it no `X-AppId` is injected and routes with `apps` refuse.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub appid: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unionid: Option<String>,
    /// The login hook's claims (scalars only); absent when there are none.
    #[serde(
        default,
        skip_serializing_if = "no_claims",
        deserialize_with = "ext::deserialize"
    )]
    pub ext: Option<Ext>,
    /// The session's phone number, once `/auth/phone` has set one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phone: Option<String>,
}

fn no_claims(ext: &Option<Ext>) -> bool {
    ext.as_ref().is_none_or(Ext::is_empty)
}

/// Why a token was refused. The text is safe to show to the client.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    #[error("the access token expired")]
    Expired,
    #[error("the access token is malformed")]
    Malformed,
    #[error("the access token is too large")]
    TooLarge,
    #[error("the access token header is not accepted")]
    BadHeader,
    #[error("the access token was signed by an unknown key")]
    UnknownKey,
    #[error("the access token signature is invalid")]
    BadSignature,
    #[error("the access token claims are invalid")]
    BadClaims,
    #[error("the access token is not valid yet")]
    NotYetValid,
    #[error("the access token was issued for another issuer or audience")]
    WrongAudience,
    #[error("the access token was revoked")]
    Revoked,
}

impl TokenError {
    /// A short name for metrics.
    pub fn label(self) -> &'static str {
        match self {
            Self::Expired => "expired",
            Self::Malformed => "malformed",
            Self::TooLarge => "too_large",
            Self::BadHeader => "bad_header",
            Self::UnknownKey => "unknown_key",
            Self::BadSignature => "bad_signature",
            Self::BadClaims => "bad_claims",
            Self::NotYetValid => "not_yet_valid",
            Self::WrongAudience => "wrong_audience",
            Self::Revoked => "revoked",
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct JoseHeader {
    alg: String,
    typ: Option<String>,
    kid: Option<String>,
}

/// What verification checks besides the signature.
pub struct Policy<'a> {
    pub issuer: &'a str,
    pub audience: &'a str,
    pub leeway_secs: i64,
}

pub fn now_unix() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

/// Signs `claims` with the first configured key.
pub fn mint(keys: &KeySet, claims: &Claims) -> Result<String, jsonwebtoken::errors::Error> {
    let key = keys
        .signing()
        .ok_or(jsonwebtoken::errors::ErrorKind::InvalidKeyFormat)?;
    let mut header = Header::new(key.alg);
    header.typ = Some(TOKEN_TYPE.into());
    header.kid = Some(key.kid.clone());
    let encoding = key
        .encoding
        .as_ref()
        .ok_or(jsonwebtoken::errors::ErrorKind::InvalidKeyFormat)?;
    jsonwebtoken::encode(&header, claims, encoding)
}

/// Verifies a compact JWS and returns its claims; revocation is the caller's check.
pub fn verify(
    keys: &KeySet,
    policy: &Policy<'_>,
    token: &str,
    now: i64,
) -> Result<Claims, TokenError> {
    if token.len() > MAX_TOKEN_BYTES {
        return Err(TokenError::TooLarge);
    }
    let mut parts = token.split('.');
    let (Some(header_b64), Some(payload_b64), Some(signature_b64), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(TokenError::Malformed);
    };
    let header: JoseHeader = decode_json(header_b64).map_err(|_| TokenError::BadHeader)?;
    if !header.typ.as_deref().is_some_and(is_access_token_type) {
        return Err(TokenError::BadHeader);
    }
    let key = keys
        .verifying(header.kid.as_deref())
        .ok_or(TokenError::UnknownKey)?;
    // The algorithm belongs to the key; the header must merely agree with it.
    if alg_name(key.alg) != header.alg {
        return Err(TokenError::BadHeader);
    }
    if signature_b64.is_empty() {
        return Err(TokenError::BadSignature);
    }
    let signed = &token[..header_b64.len() + 1 + payload_b64.len()];
    let valid =
        jsonwebtoken::crypto::verify(signature_b64, signed.as_bytes(), &key.decoding, key.alg)
            .map_err(|_| TokenError::BadSignature)?;
    if !valid {
        return Err(TokenError::BadSignature);
    }
    let payload = URL_SAFE_NO_PAD
        .decode(payload_b64)
        .map_err(|_| TokenError::BadClaims)?;
    // serde refuses a known claim given twice but skips unknown ones unseen, so the
    // payload is checked for duplicate keys at every depth first.
    if !distinct::keys_are_distinct(&payload) {
        return Err(TokenError::BadClaims);
    }
    let claims: Claims = serde_json::from_slice(&payload).map_err(|_| TokenError::BadClaims)?;
    check_claims(&claims, policy, now)?;
    Ok(claims)
}

fn check_claims(claims: &Claims, policy: &Policy<'_>, now: i64) -> Result<(), TokenError> {
    if claims.iss != policy.issuer || claims.aud != policy.audience {
        return Err(TokenError::WrongAudience);
    }
    if !is_safe_id(&claims.sub)
        || !claims.appid.as_deref().is_none_or(is_safe_id)
        || !claims.unionid.as_deref().is_none_or(is_safe_id)
        || claims.sid.as_deref().is_some_and(str::is_empty)
        || claims.jti.as_deref().is_some_and(str::is_empty)
        || !claims.phone.as_deref().is_none_or(claims::is_phone)
        || claims
            .ext
            .as_ref()
            .is_some_and(|ext| claims::check(ext).is_err())
    {
        return Err(TokenError::BadClaims);
    }
    let leeway = policy.leeway_secs;
    if claims.exp.saturating_add(leeway) <= now {
        return Err(TokenError::Expired);
    }
    let issued_in_future = claims.iat > now.saturating_add(leeway);
    let not_yet = claims
        .nbf
        .is_some_and(|nbf| nbf > now.saturating_add(leeway));
    if issued_in_future || not_yet {
        return Err(TokenError::NotYetValid);
    }
    Ok(())
}

fn decode_json<T: for<'de> Deserialize<'de>>(part: &str) -> Result<T, ()> {
    let bytes = URL_SAFE_NO_PAD.decode(part).map_err(|_| ())?;
    serde_json::from_slice(&bytes).map_err(|_| ())
}

fn is_access_token_type(typ: &str) -> bool {
    typ.eq_ignore_ascii_case(TOKEN_TYPE) || typ.eq_ignore_ascii_case("application/at+jwt")
}

/// `^[A-Za-z0-9_-]{1,64}$`: what may become a header value upstream.
pub fn is_safe_id(value: &str) -> bool {
    (1..=64).contains(&value.len())
        && value
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

pub fn alg_name(alg: Algorithm) -> &'static str {
    match alg {
        Algorithm::HS256 => "HS256",
        Algorithm::HS384 => "HS384",
        Algorithm::HS512 => "HS512",
        Algorithm::RS256 => "RS256",
        Algorithm::RS384 => "RS384",
        Algorithm::RS512 => "RS512",
        Algorithm::ES256 => "ES256",
        Algorithm::ES384 => "ES384",
        Algorithm::PS256 => "PS256",
        Algorithm::PS384 => "PS384",
        Algorithm::PS512 => "PS512",
        Algorithm::EdDSA => "EdDSA",
        _ => "unsupported",
    }
}

/// A fresh random identifier (`jti`, `sid`, refresh tokens): `bytes` random bytes, base64url.
pub fn random_id(bytes: usize) -> String {
    let mut buf = vec![0u8; bytes];
    // aws-lc's system RNG only fails if the OS has no entropy source at all.
    if aws_lc_rs::rand::fill(&mut buf).is_err() {
        panic!("the operating system's random number generator failed");
    }
    URL_SAFE_NO_PAD.encode(buf)
}

#[cfg(test)]
mod tests;
