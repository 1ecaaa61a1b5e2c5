//! Asymmetric keys (RS256, ES256, EdDSA) from PEM made by `wxgate keygen`: minting and
//! verifying, algorithm confusion, the JWKS document, legacy PEM forms, and refusals.

use rustls_pki_types::pem::PemObject;
use serde_json::Value;

use super::*;

/// A new key pair for `alg`: (private PEM, public PEM).
fn pem_pair(alg: Algorithm) -> (String, String) {
    let generated = keygen::generate(alg).expect("keygen");
    let public = generated
        .public
        .expect("asymmetric keys have a public half");
    (generated.private.expose().to_string(), public)
}

fn private_key(kid: &str, alg: Algorithm, pem: &str) -> Key {
    Key::new(
        kid.into(),
        alg,
        Material::PrivatePem(crate::secret::Secret::new(pem)),
    )
    .expect("valid private key")
}

fn public_key(kid: &str, alg: Algorithm, pem: &str) -> Key {
    Key::new(kid.into(), alg, Material::PublicPem(pem.into())).expect("valid public key")
}

fn header_of(token: &str) -> Value {
    let header = token.split('.').next().expect("header");
    serde_json::from_slice(&URL_SAFE_NO_PAD.decode(header).expect("b64")).expect("json")
}

/// Re-signs `token`'s signing input under a new header with HMAC-SHA256 keyed by `secret`.
fn hmac_signed(header: &str, secret: &[u8]) -> String {
    let signing_input = format!("{}.{}", b64(header), b64(&payload()));
    let key = jsonwebtoken::EncodingKey::from_secret(secret);
    let sig =
        jsonwebtoken::crypto::sign(signing_input.as_bytes(), &key, Algorithm::HS256).expect("sign");
    format!("{signing_input}.{sig}")
}

const ASYMMETRIC: [Algorithm; 3] = [Algorithm::RS256, Algorithm::ES256, Algorithm::EdDSA];

#[test]
fn every_asymmetric_alg_mints_tokens_that_its_public_key_verifies() {
    for alg in ASYMMETRIC {
        let (private, public) = pem_pair(alg);
        let signer = KeySet::new(vec![private_key("a1", alg, &private)]);
        let token = mint(&signer, &claims()).expect("mint");
        let header = header_of(&token);
        assert_eq!(header["alg"], alg_name(alg), "{alg:?}");
        assert_eq!(header["kid"], "a1");
        assert_eq!(header["typ"], TOKEN_TYPE);
        assert_eq!(
            verify(&signer, &policy(), &token, NOW),
            Ok(claims()),
            "{alg:?}"
        );
        let verifier = KeySet::new(vec![
            hmac_key("k1", Algorithm::HS256, SECRET),
            public_key("a1", alg, &public),
        ]);
        assert_eq!(
            verify(&verifier, &policy(), &token, NOW),
            Ok(claims()),
            "{alg:?}"
        );
        let (_, other_public) = pem_pair(alg);
        let stranger = KeySet::new(vec![public_key("a1", alg, &other_public)]);
        assert_eq!(
            verify(&stranger, &policy(), &token, NOW),
            Err(TokenError::BadSignature),
            "{alg:?} verified with another key"
        );
    }
}

#[test]
fn hmac_signed_with_the_public_key_is_refused() {
    // The classic algorithm confusion: the attacker knows the public key (it is in the JWKS)
    // and uses its bytes as an HMAC secret, hoping the verifier follows the token's `alg`.
    for alg in ASYMMETRIC {
        let (private, public) = pem_pair(alg);
        let keys = KeySet::new(vec![
            private_key("a1", alg, &private),
            hmac_key("k1", Algorithm::HS256, SECRET),
        ]);
        let jwks: Value = serde_json::from_slice(keys.jwks()).expect("jwks");
        let jwk = jwks["keys"][0].to_string();
        let der = rustls_pki_types::pem::PemObject::from_pem_slice(public.as_bytes())
            .map(|spki: rustls_pki_types::SubjectPublicKeyInfoDer<'_>| spki.as_ref().to_vec())
            .expect("spki");
        for secret in [public.as_bytes(), der.as_slice(), jwk.as_bytes()] {
            for claimed in ["HS256", alg_name(alg)] {
                let header = format!(r#"{{"alg":"{claimed}","typ":"at+jwt","kid":"a1"}}"#);
                let token = hmac_signed(&header, secret);
                // Another algorithm than the key's is refused before any signature check.
                let expected = if claimed == "HS256" {
                    TokenError::BadHeader
                } else {
                    TokenError::BadSignature
                };
                assert_eq!(
                    verify(&keys, &policy(), &token, NOW),
                    Err(expected),
                    "{alg:?} key, HMAC token claiming {claimed}"
                );
            }
        }
    }
}

#[test]
fn a_token_is_checked_with_the_algorithm_of_its_kid_only() {
    let (rsa, _) = pem_pair(Algorithm::RS256);
    let (ec, _) = pem_pair(Algorithm::ES256);
    let keys = KeySet::new(vec![
        private_key("rsa", Algorithm::RS256, &rsa),
        private_key("ec", Algorithm::ES256, &ec),
    ]);
    let es_only = KeySet::new(vec![private_key("ec", Algorithm::ES256, &ec)]);
    let es_token = mint(&es_only, &claims()).expect("mint");
    assert!(verify(&keys, &policy(), &es_token, NOW).is_ok());
    let (_, rest) = es_token.split_once('.').expect("parts");
    for header in [
        r#"{"alg":"ES256","typ":"at+jwt","kid":"rsa"}"#,
        r#"{"alg":"RS256","typ":"at+jwt","kid":"rsa"}"#,
    ] {
        let moved = format!("{}.{rest}", b64(header));
        assert!(
            verify(&keys, &policy(), &moved, NOW).is_err(),
            "ES256 signature accepted under {header}"
        );
    }
}

#[test]
fn verify_only_keys_never_sign() {
    let (_, public) = pem_pair(Algorithm::ES256);
    let key = public_key("p1", Algorithm::ES256, &public);
    assert!(!key.can_sign());
    let keys = KeySet::new(vec![key]);
    assert!(keys.signing().is_none());
    assert!(mint(&keys, &claims()).is_err());
}

#[test]
fn the_jwks_publishes_public_keys_and_never_secrets() {
    let (rsa, _) = pem_pair(Algorithm::RS256);
    let (_, ec_public) = pem_pair(Algorithm::ES256);
    let (ed, _) = pem_pair(Algorithm::EdDSA);
    let keys = KeySet::new(vec![
        private_key("r1", Algorithm::RS256, &rsa),
        hmac_key("h1", Algorithm::HS256, SECRET),
        public_key("e1", Algorithm::ES256, &ec_public),
        private_key("d1", Algorithm::EdDSA, &ed),
    ]);
    let text = String::from_utf8(keys.jwks().to_vec()).expect("utf8");
    let jwks: Value = serde_json::from_str(&text).expect("json");
    let listed = jwks["keys"].as_array().expect("keys");
    let summary: Vec<(&str, &str, &str, &str)> = listed
        .iter()
        .map(|k| {
            let s = |name: &str| k[name].as_str().unwrap_or("-");
            (s("kid"), s("kty"), s("alg"), s("crv"))
        })
        .collect();
    assert_eq!(
        summary,
        [
            ("r1", "RSA", "RS256", "-"),
            ("e1", "EC", "ES256", "P-256"),
            ("d1", "OKP", "EdDSA", "Ed25519"),
        ]
    );
    for jwk in listed {
        assert_eq!(jwk["use"], "sig");
        for member in ["d", "p", "q", "dp", "dq", "qi", "k"] {
            assert!(
                jwk.get(member).is_none(),
                "private member {member} in {jwk}"
            );
        }
        // Upstreams build their keys from these members: they must verify our tokens.
        let parsed: jsonwebtoken::jwk::Jwk = serde_json::from_value(jwk.clone()).expect("jwk");
        assert!(jsonwebtoken::DecodingKey::from_jwk(&parsed).is_ok());
    }
    assert_eq!(listed[0]["e"], "AQAB");
    assert_eq!(
        URL_SAFE_NO_PAD
            .decode(listed[0]["n"].as_str().expect("n"))
            .expect("n")
            .len(),
        256
    );
    assert!(!text.contains(SECRET) && !text.contains(&b64(SECRET)));
    let hmac_only = KeySet::new(vec![hmac_key("h1", Algorithm::HS256, SECRET)]);
    assert_eq!(&hmac_only.jwks()[..], br#"{"keys":[]}"#);
}

#[test]
fn legacy_pkcs1_and_sec1_private_keys_are_read() {
    use aws_lc_rs::encoding::AsDer;
    let (rsa, _) = pem_pair(Algorithm::RS256);
    let pkcs8 =
        rustls_pki_types::PrivatePkcs8KeyDer::from_pem_slice(rsa.as_bytes()).expect("pkcs8");
    let pkcs1 =
        crate::tokens::asymmetric::pkcs8_private_key(pkcs8.secret_pkcs8_der()).expect("inner");
    let pkcs1_pem = keygen::pem("RSA PRIVATE KEY", pkcs1);
    let ec = aws_lc_rs::signature::EcdsaKeyPair::generate(
        &aws_lc_rs::signature::ECDSA_P256_SHA256_FIXED_SIGNING,
    )
    .expect("ec");
    let sec1 = ec.private_key().as_der().expect("sec1");
    let sec1_pem = keygen::pem("EC PRIVATE KEY", sec1.as_ref());
    for (alg, pem) in [(Algorithm::RS256, pkcs1_pem), (Algorithm::ES256, sec1_pem)] {
        let keys = KeySet::new(vec![private_key("l1", alg, &pem)]);
        let token = mint(&keys, &claims()).expect("mint");
        assert_eq!(
            verify(&keys, &policy(), &token, NOW),
            Ok(claims()),
            "{alg:?}"
        );
    }
}

#[test]
fn wrong_or_missing_key_material_is_refused_without_echoing_it() {
    let (rsa, rsa_public) = pem_pair(Algorithm::RS256);
    let (ec, _) = pem_pair(Algorithm::ES256);
    let (ed, _) = pem_pair(Algorithm::EdDSA);
    let private = |pem: &str| Material::PrivatePem(crate::secret::Secret::new(pem));
    let cases = [
        (Algorithm::ES256, private(&rsa), "P-256"),
        (Algorithm::RS256, private(&ec), "RSA"),
        (Algorithm::EdDSA, private(&ec), "Ed25519"),
        (Algorithm::ES256, private(&ed), "Ed25519"),
        (Algorithm::RS256, private(&rsa_public), "public_key_file"),
        (
            Algorithm::ES256,
            Material::PublicPem(rsa_public.clone()),
            "RSA",
        ),
        (
            Algorithm::EdDSA,
            Material::PublicPem(rsa.clone()),
            "no public key",
        ),
        (Algorithm::HS256, private(&ec), "secret"),
        (
            Algorithm::RS256,
            Material::Hmac(crate::secret::Secret::new(SECRET)),
            "private_key_file",
        ),
        (
            Algorithm::RS256,
            private("not a PEM file"),
            "no private key",
        ),
    ];
    for (alg, material, fragment) in cases {
        let message = match Key::new("x".into(), alg, material) {
            Ok(_) => panic!("{alg:?} accepted the wrong key"),
            Err(e) => e,
        };
        assert!(message.contains(fragment), "{alg:?}: {message}");
        for pem in [&rsa, &rsa_public, &ec, &ed] {
            for line in pem.lines().filter(|l| !l.starts_with("-----")) {
                assert!(!message.contains(line), "key material in: {message}");
            }
        }
    }
}

#[test]
fn keygen_writes_pem_in_64_column_lines() {
    for alg in ASYMMETRIC {
        let (private, public) = pem_pair(alg);
        assert!(
            private.starts_with("-----BEGIN PRIVATE KEY-----\n"),
            "{private}"
        );
        assert!(private.ends_with("-----END PRIVATE KEY-----\n"));
        assert!(public.starts_with("-----BEGIN PUBLIC KEY-----\n"));
        assert!(private.lines().chain(public.lines()).all(|l| l.len() <= 64));
    }
    for (alg, bytes) in [
        (Algorithm::HS256, 32),
        (Algorithm::HS384, 48),
        (Algorithm::HS512, 64),
    ] {
        let generated = keygen::generate(alg).expect("keygen");
        assert!(generated.public.is_none());
        let secret = URL_SAFE_NO_PAD
            .decode(generated.private.expose())
            .expect("base64url");
        assert_eq!(secret.len(), bytes);
    }
}

#[test]
fn ecdsa_signatures_of_zeros_are_refused() {
    // CVE-2022-21449 ("psychic signatures"): r = s = 0 verified everything in some JDKs.
    let (ec, _) = pem_pair(Algorithm::ES256);
    let keys = KeySet::new(vec![private_key("ec", Algorithm::ES256, &ec)]);
    let token = mint(&keys, &claims()).expect("mint");
    let (signed, _) = token.rsplit_once('.').expect("parts");
    for zeros in [vec![0u8; 64], vec![0u8; 8], Vec::new()] {
        let forged = format!("{signed}.{}", URL_SAFE_NO_PAD.encode(&zeros));
        assert_eq!(
            verify(&keys, &policy(), &forged, NOW),
            Err(TokenError::BadSignature),
            "{} zero bytes",
            zeros.len()
        );
    }
}
