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
