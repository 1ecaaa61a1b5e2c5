//! The configured signing keys: the first signs, every key verifies, each bound to one algorithm.

use std::fmt;

use bytes::Bytes;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey};
use serde_json::{json, Map, Value};

use super::asymmetric;
use crate::secret::Secret;

/// Smallest HMAC secret accepted, as RFC 7518 3.2 asks for HS256.
pub const MIN_HMAC_SECRET_BYTES: usize = 32;

/// Key material as configured, before it is turned into keys.
pub enum Material {
    /// An HMAC secret: signs and verifies, never published.
    Hmac(Secret),
    /// PEM text holding a private key: signs, verifies, and its public half is published.
    PrivatePem(Secret),
    /// PEM text holding a public key (SubjectPublicKeyInfo): verifies only, and is published.
    PublicPem(String),
}

/// What a key is, for `wxgate check`: never its material.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyKind {
    Secret,
    Rsa { bits: usize },
    P256,
    Ed25519,
}

impl fmt::Display for KeyKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Secret => f.write_str("HMAC secret"),
            Self::Rsa { bits } => write!(f, "RSA {bits}-bit"),
            Self::P256 => f.write_str("EC P-256"),
            Self::Ed25519 => f.write_str("Ed25519"),
        }
    }
}

/// One verification key, looked up by `kid` in a fixed table: the token never chooses the algorithm.
pub struct Key {
    pub kid: String,
    pub alg: Algorithm,
    pub kind: KeyKind,
    pub(crate) encoding: Option<EncodingKey>,
    pub(crate) decoding: DecodingKey,
    /// The public JWK (RFC 7517) of an asymmetric key; HMAC secrets have none.
    jwk: Option<Value>,
}

pub struct KeySet {
    keys: Vec<Key>,
    /// `/.well-known/jwks.json`, serialized once per key set (so once per config load).
    jwks: Bytes,
}

/// Parses an `alg` name of `gateway.toml`; only the algorithms wxgate can sign and verify.
pub fn parse_alg(name: &str) -> Result<Algorithm, String> {
    match name {
        "HS256" => Ok(Algorithm::HS256),
        "HS384" => Ok(Algorithm::HS384),
        "HS512" => Ok(Algorithm::HS512),
        "RS256" => Ok(Algorithm::RS256),
        "ES256" => Ok(Algorithm::ES256),
        "EdDSA" => Ok(Algorithm::EdDSA),
        other => Err(format!(
            "unknown algorithm `{other}` (expected HS256, HS384, HS512, RS256, ES256 or EdDSA)"
        )),
    }
}

/// HMAC algorithms take a shared secret; the others take PEM key files.
pub fn is_hmac(alg: Algorithm) -> bool {
    matches!(alg, Algorithm::HS256 | Algorithm::HS384 | Algorithm::HS512)
}

impl Key {
    /// Builds and self-tests a key. Error messages never contain key material.
    pub fn new(kid: String, alg: Algorithm, material: Material) -> Result<Self, String> {
        let key = match material {
            Material::Hmac(secret) => Self::hmac(kid, alg, &secret)?,
            Material::PrivatePem(_) | Material::PublicPem(_) if is_hmac(alg) => {
                return Err(format!(
                    "`{}` keys take `secret` or `secret_file`; \
                     PEM key files need RS256, ES256 or EdDSA",
                    super::alg_name(alg)
                ))
            }
            Material::PrivatePem(pem) => Self::asymmetric(
                kid,
                alg,
                asymmetric::private_key(alg, pem.expose().as_bytes())?,
            ),
            Material::PublicPem(pem) => {
                Self::asymmetric(kid, alg, asymmetric::public_key(alg, pem.as_bytes())?)
            }
        };
        key.self_test()?;
        Ok(key)
    }

    fn hmac(kid: String, alg: Algorithm, secret: &Secret) -> Result<Self, String> {
        if !is_hmac(alg) {
            return Err(format!(
                "`{}` keys take `private_key_file` (signs and verifies) or \
                 `public_key_file` (verifies only), not a secret",
                super::alg_name(alg)
            ));
        }
        let bytes = secret.expose().as_bytes();
        if bytes.len() < MIN_HMAC_SECRET_BYTES {
            return Err(format!(
                "HMAC secret is {} bytes; at least {MIN_HMAC_SECRET_BYTES} are required",
                bytes.len()
            ));
        }
        Ok(Self {
            kid,
            alg,
            kind: KeyKind::Secret,
            encoding: Some(EncodingKey::from_secret(bytes)),
            decoding: DecodingKey::from_secret(bytes),
            jwk: None,
        })
    }

    fn asymmetric(kid: String, alg: Algorithm, parts: asymmetric::Parts) -> Self {
        let mut jwk: Map<String, Value> = parts.jwk;
        jwk.insert("kid".into(), json!(kid));
        jwk.insert("alg".into(), json!(super::alg_name(alg)));
        jwk.insert("use".into(), json!("sig"));
        Self {
            kid,
            alg,
            kind: parts.kind,
            encoding: parts.encoding,
            decoding: parts.decoding,
            jwk: Some(Value::Object(jwk)),
        }
    }

    /// A key that can sign must verify its own signature: this catches a private key whose
    /// encoding jsonwebtoken reads differently from aws-lc, at start-up rather than at login.
    fn self_test(&self) -> Result<(), String> {
        let Some(encoding) = &self.encoding else {
            return Ok(());
        };
        let message = b"wxgate key self-test";
        let signed = jsonwebtoken::crypto::sign(message, encoding, self.alg)
            .map_err(|_| "the key cannot sign".to_string())?;
        match jsonwebtoken::crypto::verify(&signed, message, &self.decoding, self.alg) {
            Ok(true) => Ok(()),
            _ => Err("the key cannot verify its own signature".into()),
        }
    }

    /// Whether this key holds what it takes to sign (a secret or a private key).
    pub fn can_sign(&self) -> bool {
        self.encoding.is_some()
    }

    /// Whether this key appears in `/.well-known/jwks.json` (asymmetric keys only).
    pub fn is_published(&self) -> bool {
        self.jwk.is_some()
    }
}

impl KeySet {
    /// `keys` is non-empty and its first key can sign (validated with the config).
    pub fn new(keys: Vec<Key>) -> Self {
        let published: Vec<&Value> = keys.iter().filter_map(|k| k.jwk.as_ref()).collect();
        let jwks = Bytes::from(json!({ "keys": published }).to_string());
        Self { keys, jwks }
    }

    /// The key that signs new tokens: the first configured one.
    pub fn signing(&self) -> Option<&Key> {
        self.keys.first().filter(|k| k.can_sign())
    }

    /// The verification key for a token's `kid`; without `kid` only when exactly one key exists.
    pub fn verifying(&self, kid: Option<&str>) -> Option<&Key> {
        match kid {
            Some(kid) => self.keys.iter().find(|k| k.kid == kid),
            None if self.keys.len() == 1 => self.keys.first(),
            None => None,
        }
    }

    pub fn iter(&self) -> impl Iterator<Item = &Key> {
        self.keys.iter()
    }

    /// The JWK Set document (RFC 7517 5) of every asymmetric key, signing and verify-only;
    /// HMAC secrets are never in it, so an HMAC-only set gives `{"keys":[]}`.
    pub fn jwks(&self) -> &Bytes {
        &self.jwks
    }
}
