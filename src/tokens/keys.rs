//! The configured signing keys: the first signs, every key verifies, each bound to one algorithm.

use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey};

use crate::secret::Secret;

/// Smallest HMAC secret accepted, as RFC 7518 3.2 asks for HS256.
pub const MIN_HMAC_SECRET_BYTES: usize = 32;

/// Key material as configured, before it is turned into keys.
pub enum Material {
    Hmac(Secret),
}

/// One verification key, looked up by `kid` in a fixed table: the token never chooses the algorithm.
pub struct Key {
    pub kid: String,
    pub alg: Algorithm,
    pub(crate) encoding: Option<EncodingKey>,
    pub(crate) decoding: DecodingKey,
}

pub struct KeySet {
    keys: Vec<Key>,
}

/// Parses an `alg` name of `gateway.toml`; only the algorithms wxgate can sign and verify.
pub fn parse_alg(name: &str) -> Result<Algorithm, String> {
    match name {
        "HS256" => Ok(Algorithm::HS256),
        "HS384" => Ok(Algorithm::HS384),
        "HS512" => Ok(Algorithm::HS512),
        "RS256" | "ES256" | "EdDSA" => Err(format!(
            "`{name}` keys are not supported by this version; use HS256, HS384 or HS512"
        )),
        other => Err(format!(
            "unknown algorithm `{other}` (expected HS256, HS384 or HS512)"
        )),
    }
}

impl Key {
    pub fn new(kid: String, alg: Algorithm, material: Material) -> Result<Self, String> {
        match material {
            Material::Hmac(secret) => {
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
                    encoding: Some(EncodingKey::from_secret(bytes)),
                    decoding: DecodingKey::from_secret(bytes),
                })
            }
        }
    }
}

impl KeySet {
    /// `keys` is non-empty (validated with the config).
    pub fn new(keys: Vec<Key>) -> Self {
        Self { keys }
    }

    /// The key that signs new tokens: the first configured one.
    pub fn signing(&self) -> Option<&Key> {
        self.keys.first().filter(|k| k.encoding.is_some())
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
}
