//! Converts the serde mirror into runtime [`Settings`], collecting every problem with its path.
//!
//! One file per `gateway.toml` section builds that section's part of [`Settings`]; this one
//! holds the entry point and the checks the sections share.

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use http::HeaderName;

use super::duration;
use super::file::FileConfig;
use crate::secret::Secret;
use crate::settings::Settings;

mod admin;
mod auth;
mod hook;
mod keys;
mod log;
mod routes;
mod server;
mod store;
mod wechat;

struct Builder<'a> {
    base: &'a Path,
    problems: Vec<String>,
}

pub(super) fn build(file: FileConfig, base: &Path) -> Result<Settings, Vec<String>> {
    let mut b = Builder {
        base,
        problems: Vec::new(),
    };
    let server = b.server(&file.server);
    let log = b.log(&file.log.format, file.log.openid);
    let admin_listen = b.socket("admin.listen", &file.admin.listen);
    let admin_token = admin::token(&file.admin, base, &mut b.problems);
    let wechat = b.wechat(&file.wechat);
    let auth = b.auth(&file.auth);
    let store = store::build(&file.store, base, &mut b.problems);
    let routes = b.routes(&file.routes, server.as_ref().map(|s| s.max_body_bytes));
    match (server, log, admin_listen, wechat, auth, store, routes) {
        (
            Some(server),
            Some(log),
            Some(admin_listen),
            Some(wechat),
            Some(auth),
            Some(store),
            Some(routes),
        ) if b.problems.is_empty() => Ok(Settings {
            source: None,
            server,
            log,
            admin_listen,
            admin_token,
            wechat,
            auth,
            store,
            routes,
        }),
        _ => Err(b.problems),
    }
}

impl Builder<'_> {
    fn problem(&mut self, path: &str, message: impl std::fmt::Display) {
        self.problems.push(format!("{path}: {message}"));
    }

    fn duration(&mut self, path: &str, text: &str) -> Option<Duration> {
        match duration::parse(text) {
            Ok(d) if d.is_zero() => {
                self.problem(path, "must be greater than zero");
                None
            }
            Ok(d) => Some(d),
            Err(e) => {
                self.problem(path, e);
                None
            }
        }
    }

    fn socket(&mut self, path: &str, text: &str) -> Option<SocketAddr> {
        match text.parse() {
            Ok(addr) => Some(addr),
            Err(_) => {
                self.problem(
                    path,
                    format!("`{text}` is not an address like \"127.0.0.1:8080\""),
                );
                None
            }
        }
    }

    fn positive(&mut self, path: &str, value: u64) -> Option<u64> {
        if value == 0 {
            self.problem(path, "must be greater than zero");
            return None;
        }
        Some(value)
    }

    /// A network prefix length, `0..=max` bits.
    fn prefix_len(&mut self, path: &str, value: u32, max: u8) -> Option<u8> {
        match u8::try_from(value) {
            Ok(bits) if bits <= max => Some(bits),
            _ => {
                self.problem(path, format!("must be between 0 and {max}"));
                None
            }
        }
    }

    fn header_name(&mut self, path: &str, text: &str) -> Option<HeaderName> {
        match HeaderName::from_bytes(text.as_bytes()) {
            Ok(name) => Some(name),
            Err(_) => {
                self.problem(path, format!("`{text}` is not a valid header name"));
                None
            }
        }
    }

    /// A secret given inline or as `*_file` (trimmed; relative to the config's folder).
    fn secret(&mut self, path: &str, inline: Option<&str>, file: Option<&str>) -> Option<Secret> {
        match (inline, file) {
            (Some(_), Some(_)) => {
                self.problem(path, "set either `secret` or `secret_file`, not both");
                None
            }
            (Some(value), None) => Some(Secret::new(value)),
            (None, Some(file)) => self
                .read_file(&format!("{path}_file"), file)
                .map(|text| Secret::new(text.trim())),
            (None, None) => {
                self.problem(path, "missing: set `secret` or `secret_file`");
                None
            }
        }
    }

    fn read_file(&mut self, path: &str, file: &str) -> Option<String> {
        let full = self.base.join(file);
        match std::fs::read_to_string(&full) {
            Ok(text) => Some(text),
            Err(e) => {
                self.problem(path, format!("cannot read {}: {e}", full.display()));
                None
            }
        }
    }

    fn bounded(&mut self, path: &str, value: u64, min: u64, max: u64) -> Option<usize> {
        if !(min..=max).contains(&value) {
            self.problem(path, format!("must be between {min} and {max}"));
            return None;
        }
        usize::try_from(value).ok()
    }
}

/// Header names as Django, WSGI and PHP see them: case-insensitive, `_` and `-` alike.
pub(super) fn fold_header_name(name: &str) -> String {
    name.bytes()
        .map(|b| {
            if b == b'_' {
                '-'
            } else {
                b.to_ascii_lowercase() as char
            }
        })
        .collect()
}
