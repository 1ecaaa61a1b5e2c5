//! `[store]`: the embedded store, or Redis as one server, behind Sentinel, or a Cluster,
//! with TLS and credentials. Self-contained: the builder hands over the section, the folder
//! relative files live in and the list its problems go to. Which Redis (`url`,
//! `sentinels` or `cluster`) is checked in `target`, TLS to it in `tls`.

mod target;
mod tls;

use std::path::Path;
use std::time::Duration;

use crate::config::duration;
use crate::config::file::StoreSection;
use crate::secret::Secret;
use crate::settings::{RedisAuth, RedisSettings, RedisTarget, StoreSettings};

pub(super) fn build(
    s: &StoreSection,
    base: &Path,
    problems: &mut Vec<String>,
) -> Option<StoreSettings> {
    let mut check = Check { base, problems };
    match s.backend.as_str() {
        "memory" => {
            let set = redis_keys(s);
            for key in &set {
                check.problem(key, "is only used with backend = \"redis\"");
            }
            set.is_empty().then_some(StoreSettings::Memory)
        }
        "redis" => check.redis(s).map(|r| StoreSettings::Redis(Box::new(r))),
        other => {
            check.problem(
                "backend",
                format!("`{other}` is not \"memory\" or \"redis\""),
            );
            None
        }
    }
}

/// The keys set in `s` that only Redis uses.
fn redis_keys(s: &StoreSection) -> Vec<&'static str> {
    [
        ("url", s.url.is_some()),
        ("sentinels", s.sentinels.is_some()),
        ("master_name", s.master_name.is_some()),
        ("sentinel_username", s.sentinel_username.is_some()),
        ("sentinel_password", s.sentinel_password.is_some()),
        ("sentinel_password_file", s.sentinel_password_file.is_some()),
        ("cluster", s.cluster.is_some()),
        ("username", s.username.is_some()),
        ("password", s.password.is_some()),
        ("password_file", s.password_file.is_some()),
        ("db", s.db.is_some()),
        ("tls", s.tls.is_some()),
        ("ca_file", s.ca_file.is_some()),
        ("cert_file", s.cert_file.is_some()),
        ("key_file", s.key_file.is_some()),
        ("key_prefix", s.key_prefix.is_some()),
        ("pool_size", s.pool_size.is_some()),
        ("timeout", s.timeout.is_some()),
        ("connect_timeout", s.connect_timeout.is_some()),
    ]
    .into_iter()
    .filter_map(|(key, set)| set.then_some(key))
    .collect()
}

struct Check<'a> {
    base: &'a Path,
    problems: &'a mut Vec<String>,
}

impl Check<'_> {
    /// A problem with `store.{key}`.
    fn problem(&mut self, key: &str, message: impl std::fmt::Display) {
        self.problems.push(format!("store.{key}: {message}"));
    }

    fn redis(&mut self, s: &StoreSection) -> Option<RedisSettings> {
        let target = self.target(s);
        let auth = self.auth(
            "password",
            s.username.as_deref(),
            s.password.as_deref(),
            s.password_file.as_deref(),
        );
        if let Some(RedisTarget::Url(url)) = &target {
            self.credentials_once(url, s);
        }
        let tls = self.tls(s);
        let key_prefix = s.key_prefix.clone().unwrap_or_else(|| "wxgate:".into());
        if key_prefix.len() > 64 || key_prefix.bytes().any(|b| !b.is_ascii_graphic()) {
            self.problem("key_prefix", "must be at most 64 visible ASCII characters");
        }
        // Cluster keys are placed by the `{...}` hash tag in their name; a brace in the
        // prefix would move that tag and split a session's keys across slots.
        if s.cluster.is_some() && key_prefix.contains(['{', '}']) {
            self.problem(
                "key_prefix",
                "may not contain `{` or `}` with store.cluster",
            );
        }
        let pool_size = s.pool_size.unwrap_or(2);
        if !(1..=64).contains(&pool_size) {
            self.problem("pool_size", "must be between 1 and 64");
        }
        let timeout = self.duration("timeout", s.timeout.as_deref().unwrap_or("500ms"));
        let connect_timeout = self.duration(
            "connect_timeout",
            s.connect_timeout.as_deref().unwrap_or("1s"),
        );
        Some(RedisSettings {
            target: target?,
            auth: auth?,
            tls: tls?,
            key_prefix,
            pool_size,
            timeout: timeout?,
            connect_timeout: connect_timeout?,
        })
    }

    /// The ACL user and the password each come from the URL or from their own key, not both.
    fn credentials_once(&mut self, url: &Secret, s: &StoreSection) {
        let Ok(parsed) = url::Url::parse(url.expose()) else {
            return;
        };
        if !parsed.username().is_empty() && s.username.is_some() {
            self.problem("username", "is in store.url already; set it in one place");
        }
        if parsed.password().is_some() && (s.password.is_some() || s.password_file.is_some()) {
            self.problem("password", "is in store.url already; set it in one place");
        }
    }

    /// An optional ACL user and password; `password_key` names the password's key.
    fn auth(
        &mut self,
        password_key: &str,
        username: Option<&str>,
        password: Option<&str>,
        password_file: Option<&str>,
    ) -> Option<RedisAuth> {
        if username.is_some_and(|u| u.is_empty() || !u.bytes().all(|b| b.is_ascii_graphic())) {
            let key = password_key.replace("password", "username");
            self.problem(&key, "must be visible ASCII without spaces");
            return None;
        }
        let password = match (password, password_file) {
            (Some(_), Some(_)) => {
                let message =
                    format!("set either `{password_key}` or `{password_key}_file`, not both");
                self.problem(password_key, message);
                return None;
            }
            (Some(inline), None) => Some(Secret::new(inline)),
            (None, Some(file)) => {
                let text = self.read(&format!("{password_key}_file"), file)?;
                Some(Secret::new(String::from_utf8_lossy(&text).trim()))
            }
            (None, None) => None,
        };
        Some(RedisAuth {
            username: username.map(str::to_string),
            password,
        })
    }

    fn read(&mut self, key: &str, file: &str) -> Option<Vec<u8>> {
        let full = self.base.join(file);
        match std::fs::read(&full) {
            Ok(bytes) => Some(bytes),
            Err(e) => {
                self.problem(key, format!("cannot read {}: {e}", full.display()));
                None
            }
        }
    }

    fn duration(&mut self, key: &str, text: &str) -> Option<Duration> {
        match duration::parse(text) {
            Ok(d) if d.is_zero() => {
                self.problem(key, "must be greater than zero");
                None
            }
            Ok(d) => Some(d),
            Err(e) => {
                self.problem(key, e);
                None
            }
        }
    }
}
