//! The config loader (`config::from_str_with_env`: `from_str` with a fixed environment, so
//! a run depends on the input alone), on any TOML text.
//!
//! Asserts: a syntax error says where (line and column); an invalid configuration lists
//! at least one problem, and every problem names a key path: one in the document, or a
//! setting that should be there (its section is in the document, or it is a top-level
//! section), or, for the document as a whole, the field in backticks. A configuration
//! that loads routes only canonical prefixes.
#![no_main]

use std::borrow::Cow;
use std::path::Path;

use libfuzzer_sys::fuzz_target;
use wxgate::config::{self, ConfigError};

/// The only variable `${...}` finds.
fn env(name: &str) -> Option<String> {
    (name == "WXGATE_FUZZ").then(|| "from-env".to_string())
}

/// Sections `gateway.toml` may have.
const SECTIONS: [&str; 7] = [
    "server", "log", "admin", "wechat", "auth", "store", "routes",
];

/// Every key path in `table`, written as the loader writes them: `a.b`, `a[0].b`.
fn key_paths(value: &toml::Value, path: &mut String, out: &mut Vec<String>) {
    match value {
        toml::Value::Table(table) => {
            for (key, item) in table {
                let len = path.len();
                if !path.is_empty() {
                    path.push('.');
                }
                path.push_str(key);
                out.push(path.clone());
                key_paths(item, path, out);
                path.truncate(len);
            }
        }
        toml::Value::Array(items) => {
            for (i, item) in items.iter().enumerate() {
                let len = path.len();
                path.push_str(&format!("[{i}]"));
                out.push(path.clone());
                key_paths(item, path, out);
                path.truncate(len);
            }
        }
        _ => {}
    }
}

/// `routes[0].upstream` when `routes[0]` is in the document; `auth.keys` when `auth` is,
/// or is a section; `routes[0].upstreams[1]` when `routes[0].upstreams` is.
fn expected_setting(path: &str, present: &[String]) -> bool {
    let (parent, last) = match path.rfind(['.', '[']) {
        Some(i) => (&path[..i], &path[i..]),
        None => return SECTIONS.contains(&path),
    };
    let named = match last.strip_prefix('.') {
        Some(name) => !name.is_empty() && name.bytes().all(|b| b.is_ascii_lowercase() || b == b'_'),
        None => last.ends_with(']') && last[1..last.len() - 1].bytes().all(|b| b.is_ascii_digit()),
    };
    named && (present.iter().any(|p| p == parent) || SECTIONS.contains(&parent))
}

fn names_a_key_path(problem: &str, present: &[String]) -> bool {
    // The path is everything before the last ": " that leaves a known path (keys may hold
    // ": " themselves, messages too).
    let by_path = problem.match_indices(": ").any(|(i, _)| {
        let path = &problem[..i];
        present.iter().any(|p| p == path) || expected_setting(path, present)
    });
    // Unknown or missing top-level fields come without a path, the field in backticks.
    let top_level = ["unknown field `", "missing field `"]
        .iter()
        .any(|lead| problem.starts_with(lead));
    by_path || top_level
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    // No such folder: relative `*_file` paths read nothing.
    let base = Path::new("/nonexistent/wxgate-fuzz");
    match config::from_str_with_env(text, base, &env) {
        Ok(settings) => {
            for route in settings.routes.iter() {
                let canonical = wxgate::canonicalize(&route.prefix);
                assert!(
                    matches!(canonical, Ok(Cow::Borrowed(_))),
                    "routes[{}].prefix {:?} loaded but is not canonical",
                    route.index,
                    route.prefix
                );
            }
        }
        Err(ConfigError::Syntax(message)) => {
            assert!(
                message.contains("line ") && message.contains("column "),
                "a syntax error without a position: {message}"
            );
        }
        Err(ConfigError::Invalid(problems)) => {
            assert!(!problems.is_empty(), "invalid, with no problem named");
            let document = match toml::from_str::<toml::Table>(text) {
                Ok(table) => toml::Value::Table(table),
                Err(e) => panic!("the loader parsed what toml refuses ({e})"),
            };
            let mut present = Vec::new();
            key_paths(&document, &mut String::new(), &mut present);
            for problem in &problems {
                assert!(
                    names_a_key_path(problem, &present),
                    "no key path in {problem:?} (document paths: {present:?})"
                );
            }
        }
        Err(other) => panic!("from_str read a file: {other}"),
    }
});
