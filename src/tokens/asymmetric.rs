//! RS256, ES256 and EdDSA keys from PEM: checked with aws-lc-rs, then turned into the
//! jsonwebtoken keys that sign and verify and the public JWK that `/.well-known/jwks.json` shows.
//!
//! Error messages say what a file holds and what the algorithm needs, never key bytes.

use aws_lc_rs::encoding::{AsDer, PublicKeyX509Der};
use aws_lc_rs::signature::{
    EcdsaKeyPair, Ed25519KeyPair, KeyPair, ParsedPublicKey, RsaKeyPair, RsaPublicKeyComponents,
    ECDSA_P256_SHA256_FIXED, ECDSA_P256_SHA256_FIXED_SIGNING, ECDSA_P384_SHA384_FIXED,
    ECDSA_P384_SHA384_FIXED_SIGNING, ED25519,
};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{PrivateKeyDer, SubjectPublicKeyInfoDer};
use serde_json::{json, Map, Value};

use super::keys::KeyKind;

/// RSA moduli accepted, in bits: RFC 7518 3.3 asks for 2048 at least; aws-lc verifies up to 8192.
const RSA_BITS: std::ops::RangeInclusive<usize> = 2048..=8192;
/// The DER `SubjectPublicKeyInfo` of every uncompressed P-256 key starts with these bytes,
/// followed by the point `04 || x || y`.
const P256_SPKI_PREFIX: [u8; 26] = [
    0x30, 0x59, 0x30, 0x13, 0x06, 0x07, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01, 0x06, 0x08, 0x2a,
    0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07, 0x03, 0x42, 0x00,
];
/// The DER `SubjectPublicKeyInfo` of every Ed25519 key starts with these bytes, then the 32-byte key.
const ED25519_SPKI_PREFIX: [u8; 12] = [
    0x30, 0x2a, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x03, 0x21, 0x00,
];

/// An asymmetric key ready for use: `encoding` only when the private half was given.
pub(super) struct Parts {
    pub encoding: Option<EncodingKey>,
    pub decoding: DecodingKey,
    pub kind: KeyKind,
    /// The key's public JWK members (`kty`, `crv`, `n`, `e`, `x`, `y`).
    pub jwk: Map<String, Value>,
}

/// A private key (PKCS#8, PKCS#1 `RSA PRIVATE KEY` or SEC1 `EC PRIVATE KEY`) for `alg`.
pub(super) fn private_key(alg: Algorithm, pem: &[u8]) -> Result<Parts, String> {
    let der = PrivateKeyDer::from_pem_slice(pem).map_err(|_| no_private_key(pem))?;
    match alg {
        Algorithm::RS256 => rsa_private(alg, &der),
        Algorithm::ES256 => ec_private(alg, &der),
        Algorithm::EdDSA => ed_private(alg, &der),
        _ => Err(not_from_pem(alg)),
    }
}

/// A public key (`PUBLIC KEY`, a DER SubjectPublicKeyInfo) for `alg`: verifies only.
pub(super) fn public_key(alg: Algorithm, pem: &[u8]) -> Result<Parts, String> {
    let spki = SubjectPublicKeyInfoDer::from_pem_slice(pem).map_err(|_| {
        "the file holds no public key (a PEM `PUBLIC KEY` section); \
         a private key belongs in `private_key_file`"
            .to_string()
    })?;
    let spki = spki.as_ref();
    let wrong = || wrong_type(alg, spki_kind(spki));
    match alg {
        Algorithm::RS256 => {
            let key = aws_lc_rs::rsa::PublicKey::from_der(spki).map_err(|_| wrong())?;
            let components = RsaPublicKeyComponents::<Vec<u8>>::from(&key);
            rsa_parts(None, &components.n, &components.e)
        }
        Algorithm::ES256 => {
            let key = ParsedPublicKey::new(&ECDSA_P256_SHA256_FIXED, spki).map_err(|_| wrong())?;
            let point = canonical_spki(&key, &P256_SPKI_PREFIX)?;
            ec_parts(None, &point)
        }
        Algorithm::EdDSA => {
            let key = ParsedPublicKey::new(&ED25519, spki).map_err(|_| wrong())?;
            let x = canonical_spki(&key, &ED25519_SPKI_PREFIX)?;
            ed_parts(None, &x)
        }
        _ => Err(not_from_pem(alg)),
    }
}

fn rsa_private(alg: Algorithm, der: &PrivateKeyDer<'_>) -> Result<Parts, String> {
    // jsonwebtoken signs with `RsaKeyPair::from_der`, which takes the PKCS#1 `RSAPrivateKey`,
    // so a PKCS#8 key is checked as such and then its inner PKCS#1 structure is kept.
    let pkcs1 = match der {
        PrivateKeyDer::Pkcs1(key) => key.secret_pkcs1_der(),
        PrivateKeyDer::Pkcs8(key) => {
            let pkcs8 = key.secret_pkcs8_der();
            RsaKeyPair::from_pkcs8(pkcs8).map_err(|e| rsa_rejected(alg, &e, pkcs8_kind(pkcs8)))?;
            pkcs8_private_key(pkcs8).ok_or_else(|| wrong_type(alg, "an unreadable PKCS#8 key"))?
        }
        _ => return Err(wrong_type(alg, "an EC key (`EC PRIVATE KEY`)")),
    };
    let pair =
        RsaKeyPair::from_der(pkcs1).map_err(|e| rsa_rejected(alg, &e, "an invalid RSA key"))?;
    let public = RsaPublicKeyComponents::<Vec<u8>>::from(pair.public_key());
    rsa_parts(Some(EncodingKey::from_rsa_der(pkcs1)), &public.n, &public.e)
}

fn ec_private(alg: Algorithm, der: &PrivateKeyDer<'_>) -> Result<Parts, String> {
    let signing = &ECDSA_P256_SHA256_FIXED_SIGNING;
    let pair = match der {
        PrivateKeyDer::Pkcs8(key) => {
            let pkcs8 = key.secret_pkcs8_der();
            EcdsaKeyPair::from_pkcs8(signing, pkcs8)
                .map_err(|_| wrong_type(alg, pkcs8_kind(pkcs8)))?
        }
        PrivateKeyDer::Sec1(key) => {
            EcdsaKeyPair::from_private_key_der(signing, key.secret_sec1_der())
                .map_err(|_| wrong_type(alg, "an EC key on another curve"))?
        }
        _ => return Err(wrong_type(alg, "an RSA key (`RSA PRIVATE KEY`)")),
    };
    // jsonwebtoken signs with `EcdsaKeyPair::from_pkcs8`: SEC1 keys are re-encoded as PKCS#8.
    let pkcs8 = pair
        .to_pkcs8v1()
        .map_err(|_| "the EC key cannot be encoded as PKCS#8".to_string())?;
    ec_parts(
        Some(EncodingKey::from_ec_der(pkcs8.as_ref())),
        pair.public_key().as_ref(),
    )
}

fn ed_private(alg: Algorithm, der: &PrivateKeyDer<'_>) -> Result<Parts, String> {
    let PrivateKeyDer::Pkcs8(key) = der else {
        return Err(wrong_type(alg, "an RSA or EC key in a legacy format"));
    };
    let pkcs8 = key.secret_pkcs8_der();
    let pair = Ed25519KeyPair::from_pkcs8(pkcs8).map_err(|_| wrong_type(alg, pkcs8_kind(pkcs8)))?;
    ed_parts(
        Some(EncodingKey::from_ed_der(pkcs8)),
        pair.public_key().as_ref(),
    )
}

fn rsa_parts(encoding: Option<EncodingKey>, n: &[u8], e: &[u8]) -> Result<Parts, String> {
    // JWK integers carry no leading zero octets (RFC 7518 6.3.1.1), nor does aws-lc accept them.
    let n = strip_leading_zeros(n);
    let e = strip_leading_zeros(e);
    let bits = bit_length(n);
    if !RSA_BITS.contains(&bits) {
        return Err(format!(
            "the RSA key has {bits} bits; {} to {} are accepted",
            RSA_BITS.start(),
            RSA_BITS.end()
        ));
    }
    let mut jwk = Map::new();
    jwk.insert("kty".into(), json!("RSA"));
    jwk.insert("n".into(), json!(URL_SAFE_NO_PAD.encode(n)));
    jwk.insert("e".into(), json!(URL_SAFE_NO_PAD.encode(e)));
    Ok(Parts {
        encoding,
        decoding: DecodingKey::from_rsa_raw_components(n, e),
        kind: KeyKind::Rsa { bits },
        jwk,
    })
}

/// `point` is the uncompressed SEC1 point `04 || x || y` of a P-256 key.
fn ec_parts(encoding: Option<EncodingKey>, point: &[u8]) -> Result<Parts, String> {
    let (x, y) = match point {
        [0x04, xy @ ..] if xy.len() == 64 => xy.split_at(32),
        _ => return Err("the EC public key is not an uncompressed P-256 point".into()),
    };
    let (x, y) = (URL_SAFE_NO_PAD.encode(x), URL_SAFE_NO_PAD.encode(y));
    // Verification uses the very components the JWKS publishes.
    let decoding = DecodingKey::from_ec_components(&x, &y)
        .map_err(|_| "the EC public key cannot be used".to_string())?;
    let mut jwk = Map::new();
    jwk.insert("kty".into(), json!("EC"));
    jwk.insert("crv".into(), json!("P-256"));
    jwk.insert("x".into(), json!(x));
    jwk.insert("y".into(), json!(y));
    Ok(Parts {
        encoding,
        decoding,
        kind: KeyKind::P256,
        jwk,
    })
}

fn ed_parts(encoding: Option<EncodingKey>, public: &[u8]) -> Result<Parts, String> {
    if public.len() != 32 {
        return Err("the Ed25519 public key is not 32 bytes".into());
    }
    let x = URL_SAFE_NO_PAD.encode(public);
    let decoding = DecodingKey::from_ed_components(&x)
        .map_err(|_| "the Ed25519 public key cannot be used".to_string())?;
    let mut jwk = Map::new();
    jwk.insert("kty".into(), json!("OKP"));
    jwk.insert("crv".into(), json!("Ed25519"));
    jwk.insert("x".into(), json!(x));
    Ok(Parts {
        encoding,
        decoding,
        kind: KeyKind::Ed25519,
        jwk,
    })
}

/// The key bytes after `prefix` in aws-lc's own (canonical) encoding of a parsed public key.
fn canonical_spki(key: &ParsedPublicKey, prefix: &[u8]) -> Result<Vec<u8>, String> {
    let der: PublicKeyX509Der<'static> = key
        .as_der()
        .map_err(|_| "the public key cannot be re-encoded".to_string())?;
    der.as_ref()
        .strip_prefix(prefix)
        .map(<[u8]>::to_vec)
        .ok_or_else(|| "the public key uses an unsupported encoding".to_string())
}

/// The `privateKey` OCTET STRING of a PKCS#8 `PrivateKeyInfo` (RFC 5208 5):
/// `SEQUENCE { INTEGER version, SEQUENCE algorithm, OCTET STRING privateKey, ... }`.
pub(super) fn pkcs8_private_key(der: &[u8]) -> Option<&[u8]> {
    let (info, _) = der_element(der, 0x30)?;
    let (_, rest) = der_element(info, 0x02)?;
    let (_, rest) = der_element(rest, 0x30)?;
    der_element(rest, 0x04).map(|(key, _)| key)
}

/// Splits one DER element with tag `tag` off `input`: its contents and what follows it.
fn der_element(input: &[u8], tag: u8) -> Option<(&[u8], &[u8])> {
    let (&first, rest) = input.split_first()?;
    if first != tag {
        return None;
    }
    let (&len_byte, rest) = rest.split_first()?;
    let (len, rest) = match len_byte {
        0..=0x7f => (usize::from(len_byte), rest),
        0x81..=0x84 => {
            let n = usize::from(len_byte & 0x7f);
            if rest.len() < n {
                return None;
            }
            let (len_bytes, rest) = rest.split_at(n);
            let len = len_bytes
                .iter()
                .fold(0usize, |acc, &b| (acc << 8) | usize::from(b));
            (len, rest)
        }
        _ => return None,
    };
    (rest.len() >= len).then(|| rest.split_at(len))
}

/// Names what was wrong with an RSA key: its size, or `found` (what the file holds instead).
fn rsa_rejected(alg: Algorithm, error: &aws_lc_rs::error::KeyRejected, found: &str) -> String {
    match error.description_() {
        "TooSmall" => "the RSA key has fewer than 2048 bits; 2048 to 8192 are accepted".into(),
        "TooLarge" => "the RSA key has more than 8192 bits; 2048 to 8192 are accepted".into(),
        _ => wrong_type(alg, found),
    }
}

fn not_from_pem(alg: Algorithm) -> String {
    format!("`{}` keys are not read from PEM", super::alg_name(alg))
}

fn wrong_type(alg: Algorithm, found: &str) -> String {
    let needs = match alg {
        Algorithm::RS256 => "an RSA key of 2048 to 8192 bits",
        Algorithm::ES256 => "an EC key on the P-256 curve",
        Algorithm::EdDSA => "an Ed25519 key",
        _ => "another kind of key",
    };
    format!(
        "`{}` needs {needs}, but the file holds {found}",
        super::alg_name(alg)
    )
}

fn no_private_key(pem: &[u8]) -> String {
    let text = String::from_utf8_lossy(pem);
    if text.contains("ENCRYPTED PRIVATE KEY") {
        "the private key is encrypted; store it unencrypted \
         (`openssl pkcs8 -in key.pem -nocrypt -topk8`) and protect the file instead"
            .into()
    } else if text.contains("-----BEGIN PUBLIC KEY-----") {
        "the file holds a public key only; it belongs in `public_key_file` (verifies only)".into()
    } else {
        "the file holds no private key (a PEM `PRIVATE KEY`, `RSA PRIVATE KEY` \
         or `EC PRIVATE KEY` section)"
            .into()
    }
}

/// What a PKCS#8 private key holds, for error messages.
fn pkcs8_kind(pkcs8: &[u8]) -> &'static str {
    if RsaKeyPair::from_pkcs8(pkcs8).is_ok() {
        "an RSA key"
    } else if EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, pkcs8).is_ok() {
        "a P-256 EC key"
    } else if EcdsaKeyPair::from_pkcs8(&ECDSA_P384_SHA384_FIXED_SIGNING, pkcs8).is_ok() {
        "a P-384 EC key"
    } else if Ed25519KeyPair::from_pkcs8(pkcs8).is_ok() {
        "an Ed25519 key"
    } else {
        "a key of another type, or an invalid one"
    }
}

/// What a SubjectPublicKeyInfo holds, for error messages.
fn spki_kind(spki: &[u8]) -> &'static str {
    if aws_lc_rs::rsa::PublicKey::from_der(spki).is_ok() {
        "an RSA public key"
    } else if ParsedPublicKey::new(&ECDSA_P256_SHA256_FIXED, spki).is_ok() {
        "a P-256 EC public key"
    } else if ParsedPublicKey::new(&ECDSA_P384_SHA384_FIXED, spki).is_ok() {
        "a P-384 EC public key"
    } else if ParsedPublicKey::new(&ED25519, spki).is_ok() {
        "an Ed25519 public key"
    } else {
        "a public key of another type, or an invalid one"
    }
}

fn strip_leading_zeros(bytes: &[u8]) -> &[u8] {
    let start = bytes.iter().position(|&b| b != 0).unwrap_or(bytes.len());
    &bytes[start..]
}

/// Bits in a big-endian unsigned integer without leading zero octets.
fn bit_length(n: &[u8]) -> usize {
    match n.first() {
        Some(&first) => (n.len() - 1) * 8 + (8 - first.leading_zeros() as usize),
        None => 0,
    }
}
