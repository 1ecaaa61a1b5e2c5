//! The grammar pinned by fixture folders: every valid file loads, every invalid file fails
//! with the message fragments listed in its `.expected` sibling.

use std::path::{Path, PathBuf};

use super::*;

fn fixtures(kind: &str) -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/config")
        .join(kind);
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .expect("fixture folder")
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e == "toml"))
        .collect();
    files.sort();
    assert!(!files.is_empty(), "no fixtures in {}", dir.display());
    files
}

#[test]
fn every_valid_fixture_loads() {
    for file in fixtures("valid") {
        if let Err(e) = load(&file) {
            panic!("{} should be valid:\n{e}", file.display());
        }
    }
}

#[test]
fn every_invalid_fixture_fails_with_its_expected_message() {
    for file in fixtures("invalid") {
        let expected =
            std::fs::read_to_string(file.with_extension("expected")).expect("expected file");
        let message = match load(&file) {
            Ok(_) => panic!("{} should be invalid", file.display()),
            Err(e) => e.to_string(),
        };
        for fragment in expected.lines().filter(|l| !l.trim().is_empty()) {
            assert!(
                message.contains(fragment),
                "{}: message lacks `{fragment}`:\n{message}",
                file.display()
            );
        }
    }
}

#[test]
fn the_shipped_gateway_toml_is_valid() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("gateway.toml");
    let text = std::fs::read_to_string(&path).expect("gateway.toml");
    let env = |name: &str| match name {
        "WXGATE_APP_SECRET" => Some("app-secret".to_string()),
        "WXGATE_JWT_SECRET" => Some("0123456789abcdef0123456789abcdef".to_string()),
        _ => None,
    };
    let settings = match from_str_with_env(&text, Path::new("."), &env) {
        Ok(s) => s,
        Err(e) => panic!("gateway.toml is invalid:\n{e}"),
    };
    assert_eq!(settings.routes.len(), 2);
    assert_eq!(settings.auth.endpoint_prefix, "/auth");
}

#[test]
fn secrets_from_files_are_trimmed_and_relative_to_the_config() {
    let path =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/config/valid/secret_files.toml");
    let settings = load(&path).expect("valid");
    assert_eq!(settings.wechat.apps[0].secret.expose(), "file-app-secret");
}

#[test]
fn secrets_never_appear_in_check_output() {
    let path =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/config/valid/minimal.toml");
    let settings = load(&path).expect("valid");
    let described = crate::cli::describe(&settings);
    assert!(!described.contains("app-secret"), "{described}");
    assert!(
        !described.contains("0123456789abcdef0123456789abcdef"),
        "{described}"
    );
    assert!(described.contains("/api"), "{described}");
}

#[test]
fn the_redis_password_never_appears_in_check_output() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/config/valid/redis.toml");
    let settings = load(&path).expect("valid");
    let described = crate::cli::describe(&settings);
    assert!(!described.contains("password"), "{described}");
    assert!(
        described.contains("redis://:***@127.0.0.1:6379/2"),
        "{described}"
    );
    assert!(described.contains("key_prefix=shop:"), "{described}");
}

#[test]
fn sentinel_cluster_and_tls_settings_are_described_without_their_secrets() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/config/valid");
    let cases = [
        (
            "redis_sentinel.toml",
            "redis sentinels=10.0.0.1:26379,10.0.0.2:26379,[fd00::3]:26379 master_name=mymaster \
             db=1 username=wxgate password=***",
        ),
        (
            "redis_cluster.toml",
            "redis cluster=10.0.0.1:7000,10.0.0.2:7000,10.0.0.3:7000 username=wxgate \
             password=*** tls=(ca_file)",
        ),
        (
            "redis_tls.toml",
            "redis url=rediss://wxgate@cache.internal:6380/0 password=*** \
             tls=(ca_file, client certificate)",
        ),
    ];
    for (file, shown) in cases {
        let settings = load(&dir.join(file)).expect("valid");
        let described = crate::cli::describe(&settings);
        assert!(described.contains(shown), "{file}: {described}");
        let secrets = ["-secret", "redis-acl-password", "PRIVATE KEY"];
        for secret in secrets {
            assert!(!described.contains(secret), "{file}: {described}");
        }
    }
}

/// A config in a fresh temp folder whose `keys/` holds a new private key per `(file, alg)`.
fn with_private_keys(
    keys_toml: &str,
    files: &[(&str, jsonwebtoken::Algorithm)],
) -> (PathBuf, Vec<String>) {
    static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let dir = std::env::temp_dir().join(format!("wxgate-config-{}-{n}", std::process::id()));
    std::fs::create_dir_all(dir.join("keys")).expect("temp dir");
    let mut pems = Vec::new();
    for (file, alg) in files {
        let generated = crate::tokens::keygen::generate(*alg).expect("keygen");
        let pem = generated.private.expose().to_string();
        std::fs::write(dir.join("keys").join(file), &pem).expect("write key");
        pems.push(pem);
    }
    let text = format!(
        "[wechat]\napi_base = \"http://127.0.0.1:9100\"\n[[wechat.apps]]\nappid = \"wx0123456789abcdef\"\n\
         secret = \"app-secret\"\n[auth]\naudience = \"test-app\"\n{keys_toml}"
    );
    let path = dir.join("gateway.toml");
    std::fs::write(&path, text).expect("write config");
    (path, pems)
}

fn key_body_lines(pems: &[String]) -> impl Iterator<Item = &str> {
    pems.iter()
        .flat_map(|p| p.lines())
        .filter(|l| !l.starts_with("-----"))
}

#[test]
fn private_key_files_are_relative_to_the_config_and_check_shows_no_material() {
    use jsonwebtoken::Algorithm::{EdDSA, ES256, RS256};
    let keys = r#"
[[auth.keys]]
kid = "ec1"
alg = "ES256"
private_key_file = "keys/ec.pem"
[[auth.keys]]
kid = "rsa1"
alg = "RS256"
private_key_file = "keys/rsa.pem"
[[auth.keys]]
kid = "ed1"
alg = "EdDSA"
private_key_file = "keys/ed.pem"
[[auth.keys]]
kid = "h1"
alg = "HS256"
secret = "0123456789abcdef0123456789abcdef"
"#;
    let files = [("ec.pem", ES256), ("rsa.pem", RS256), ("ed.pem", EdDSA)];
    let (path, pems) = with_private_keys(keys, &files);
    let settings = match load(&path) {
        Ok(s) => s,
        Err(e) => panic!("should be valid:\n{e}"),
    };
    let signing = settings.auth.keys.signing().expect("signing key");
    assert_eq!(signing.kid, "ec1");
    let described = crate::cli::describe(&settings);
    for line in [
        "kid=ec1 alg=ES256 EC P-256 private key (signs and verifies, in JWKS)",
        "kid=rsa1 alg=RS256 RSA 2048-bit private key (verifies only, in JWKS)",
        "kid=ed1 alg=EdDSA Ed25519 private key (verifies only, in JWKS)",
        "kid=h1 alg=HS256 secret=*** (verifies only)",
    ] {
        assert!(described.contains(line), "lacks `{line}`:\n{described}");
    }
    for line in key_body_lines(&pems) {
        assert!(!described.contains(line), "key material in:\n{described}");
    }
    remove_folder_of(&path);
}

#[test]
fn a_private_key_of_the_wrong_type_is_named_by_its_file_key() {
    use jsonwebtoken::Algorithm::{ES256, RS256};
    let keys = r#"
[[auth.keys]]
kid = "ec1"
alg = "ES256"
private_key_file = "keys/rsa.pem"
[[auth.keys]]
kid = "rsa1"
alg = "RS256"
private_key_file = "keys/ec.pem"
"#;
    let (path, pems) = with_private_keys(keys, &[("rsa.pem", RS256), ("ec.pem", ES256)]);
    let message = match load(&path) {
        Ok(_) => panic!("should be invalid"),
        Err(e) => e.to_string(),
    };
    for fragment in [
        "auth.keys[0].private_key_file: `ES256` needs an EC key on the P-256 curve, but the file holds an RSA key",
        "auth.keys[1].private_key_file: `RS256` needs an RSA key of 2048 to 8192 bits, but the file holds a P-256 EC key",
    ] {
        assert!(message.contains(fragment), "lacks `{fragment}`:\n{message}");
    }
    for line in key_body_lines(&pems) {
        assert!(!message.contains(line), "key material in:\n{message}");
    }
    remove_folder_of(&path);
}

fn remove_folder_of(config: &Path) {
    if let Some(dir) = config.parent() {
        let _ = std::fs::remove_dir_all(dir);
    }
}

#[test]
fn the_login_hook_and_its_claim_headers_are_loaded_and_stripped_from_clients() {
    let path =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/config/valid/login_hook.toml");
    let settings = load(&path).expect("valid");
    let hook = settings.auth.on_login.as_ref().expect("hook");
    assert_eq!(
        hook.url,
        "https://hooks.internal:8443/internal/wx-login?source=wxgate"
    );
    assert_eq!(hook.timeout, std::time::Duration::from_millis(800));
    let claims: Vec<(&str, &str)> = settings
        .auth
        .claim_headers
        .iter()
        .map(|(c, h)| (c.as_str(), h.as_str()))
        .collect();
    assert_eq!(
        claims,
        [
            ("phone", "x-phone"),
            ("tenant_id", "x-tenant"),
            ("uid", "x-user-id")
        ]
    );
    for header in ["x-phone", "x-tenant", "x-user-id", "x-openid"] {
        assert!(
            settings.auth.identity.strip.iter().any(|s| s == header),
            "{header} is not stripped"
        );
    }
    let described = crate::cli::describe(&settings);
    assert!(
        described.contains(
            "login hook    POST https://hooks.internal:8443/internal/wx-login?*** (timeout 800ms)"
        ),
        "{described}"
    );
    assert!(!described.contains("source=wxgate"), "{described}");
    assert!(
        described.contains("claim       uid -> x-user-id"),
        "{described}"
    );
}

#[test]
fn hook_url_credentials_are_refused_without_being_repeated() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/config/invalid/login_hook_with_credentials.toml");
    let message = match load(&path) {
        Ok(_) => panic!("should be invalid"),
        Err(e) => e.to_string(),
    };
    assert!(!message.contains("hunter2"), "{message}");
}
