//! New signing keys for `wxgate keygen`: HMAC secrets, or PKCS#8 PEM private keys (with their
//! SubjectPublicKeyInfo PEM) that `private_key_file` / `public_key_file` read back as they are.

use aws_lc_rs::encoding::{AsDer, Pkcs8V1Der, PublicKeyX509Der};
use aws_lc_rs::rsa::KeySize;
use aws_lc_rs::signature::{
    EcdsaKeyPair, Ed25519KeyPair, KeyPair, RsaKeyPair, ECDSA_P256_SHA256_FIXED_SIGNING,
};
use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use jsonwebtoken::Algorithm;

use crate::secret::Secret;

/// A new key: the secret part, and for asymmetric algorithms the public key PEM.
pub struct Generated {
    /// The HMAC secret (base64url) or the private key PEM.
    pub private: Secret,
    pub public: Option<String>,
}

/// Key generation failed inside aws-lc (no entropy, or an internal error).
#[derive(Debug, thiserror::Error)]
#[error("key generation failed")]
pub struct KeygenFailed;

/// A new key for `alg`; HMAC secrets are as long as the hash (RFC 7518 3.2).
pub fn generate(alg: Algorithm) -> Result<Generated, KeygenFailed> {
    let hmac = |bytes: usize| Generated {
        private: Secret::new(super::random_id(bytes)),
        public: None,
    };
    match alg {
        Algorithm::HS256 => Ok(hmac(32)),
        Algorithm::HS384 => Ok(hmac(48)),
        Algorithm::HS512 => Ok(hmac(64)),
        Algorithm::RS256 => {
            let pair = RsaKeyPair::generate(KeySize::Rsa2048).map_err(|_| KeygenFailed)?;
            let private: Pkcs8V1Der<'static> = pair.as_der().map_err(|_| KeygenFailed)?;
            let public: PublicKeyX509Der<'static> =
                pair.public_key().as_der().map_err(|_| KeygenFailed)?;
            Ok(pair_pem(private.as_ref(), public.as_ref()))
        }
        Algorithm::ES256 => {
            let pair = EcdsaKeyPair::generate(&ECDSA_P256_SHA256_FIXED_SIGNING)
                .map_err(|_| KeygenFailed)?;
            let private = pair.to_pkcs8v1().map_err(|_| KeygenFailed)?;
            let public: PublicKeyX509Der<'static> =
                pair.public_key().as_der().map_err(|_| KeygenFailed)?;
            Ok(pair_pem(private.as_ref(), public.as_ref()))
        }
        Algorithm::EdDSA => {
            let pair = Ed25519KeyPair::generate().map_err(|_| KeygenFailed)?;
            // PKCS#8 v1, as `openssl genpkey -algorithm ED25519` writes it.
            let private: Pkcs8V1Der<'static> = pair.as_der().map_err(|_| KeygenFailed)?;
            let public: PublicKeyX509Der<'static> =
                pair.public_key().as_der().map_err(|_| KeygenFailed)?;
            Ok(pair_pem(private.as_ref(), public.as_ref()))
        }
        _ => Err(KeygenFailed),
    }
}

fn pair_pem(private: &[u8], public: &[u8]) -> Generated {
    Generated {
        private: Secret::new(pem("PRIVATE KEY", private)),
        public: Some(pem("PUBLIC KEY", public)),
    }
}

/// RFC 7468 text: the label lines around base64 in lines of 64 characters.
pub fn pem(label: &str, der: &[u8]) -> String {
    let body = STANDARD.encode(der);
    let mut out = format!("-----BEGIN {label}-----\n");
    // Base64 is ASCII, so every 64-byte chunk is valid UTF-8.
    for line in body.as_bytes().chunks(64) {
        out.push_str(&String::from_utf8_lossy(line));
        out.push('\n');
    }
    out.push_str(&format!("-----END {label}-----\n"));
    out
}
