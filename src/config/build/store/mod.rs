//! `[store]`: the embedded store, or Redis as one server, behind Sentinel, or a Cluster,
//! with TLS and credentials. Self-contained: the builder hands over the section, the folder
//! relative files live in and the list its problems go to.

use std::path::Path;
use std::time::Duration;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

use crate::config::duration;
use crate::config::file::StoreSection;
use crate::secret::Secret;
use crate::settings::{RedisAuth, RedisSettings, RedisTarget, RedisTls, StoreSettings};

const SCHEMES: [&str; 4] = ["redis://", "rediss://", "redis+unix://", "unix://"];

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

    /// Exactly one of `url`, `sentinels` (with `master_name`) and `cluster`.
    fn target(&mut self, s: &StoreSection) -> Option<RedisTarget> {
        let sentinel_only = [
            ("master_name", s.master_name.is_some()),
            ("sentinel_username", s.sentinel_username.is_some()),
            ("sentinel_password", s.sentinel_password.is_some()),
            ("sentinel_password_file", s.sentinel_password_file.is_some()),
            ("db", s.db.is_some()),
        ];
        if s.sentinels.is_none() {
            for (key, _) in sentinel_only.iter().filter(|(_, set)| *set) {
                self.problem(key, "is only used with store.sentinels");
            }
        }
        match (&s.url, &s.sentinels, &s.cluster) {
            (None, None, None) => {
                self.problem(
                    "url",
                    "is required with backend = \"redis\" (or store.sentinels, or store.cluster)",
                );
                None
            }
            (Some(url), None, None) => self.url(url, s),
            (None, Some(sentinels), None) => self.sentinel(sentinels, s),
            (None, None, Some(nodes)) => Some(RedisTarget::Cluster {
                nodes: self.nodes("cluster", nodes)?,
            }),
            _ => {
                self.problem(
                    "url",
                    "set only one of store.url, store.sentinels and store.cluster",
                );
                None
            }
        }
    }

    fn url(&mut self, url: &str, s: &StoreSection) -> Option<RedisTarget> {
        if s.tls.is_some() {
            self.problem("tls", "is chosen by store.url's scheme: rediss:// for TLS");
        }
        // The URL may hold a password: no message repeats it.
        if !SCHEMES.iter().any(|scheme| url.starts_with(scheme)) {
            self.problem(
                "url",
                "must start with redis://, rediss://, redis+unix:// or unix://",
            );
            return None;
        }
        // `#insecure` is the redis crate's switch for skipping certificate checks.
        if url.contains('#') {
            self.problem("url", "may not have a #fragment");
            return None;
        }
        if redis::Client::open(url).is_err() {
            self.problem("url", "is not a valid Redis URL");
            return None;
        }
        Some(RedisTarget::Url(Secret::new(url)))
    }

    fn sentinel(&mut self, sentinels: &[String], s: &StoreSection) -> Option<RedisTarget> {
        let nodes = self.nodes("sentinels", sentinels);
        let master_name = match s.master_name.as_deref() {
            Some(name) if !name.is_empty() && name.bytes().all(|b| b.is_ascii_graphic()) => {
                Some(name.to_string())
            }
            Some(_) => {
                self.problem("master_name", "must be visible ASCII without spaces");
                None
            }
            None => {
                self.problem("master_name", "is required with store.sentinels");
                None
            }
        };
        let db = s.db.unwrap_or(0);
        if db < 0 {
            self.problem("db", "must be 0 or more");
        }
        let sentinel_auth = self.auth(
            "sentinel_password",
            s.sentinel_username.as_deref(),
            s.sentinel_password.as_deref(),
            s.sentinel_password_file.as_deref(),
        );
        Some(RedisTarget::Sentinel {
            sentinels: nodes?,
            master_name: master_name?,
            db,
            sentinel_auth: sentinel_auth?,
        })
    }

    /// A non-empty list of `host:port` (`[v6]:port` for IPv6 addresses).
    fn nodes(&mut self, key: &str, list: &[String]) -> Option<Vec<(String, u16)>> {
        if list.is_empty() {
            self.problem(key, "must name at least one host:port");
            return None;
        }
        let mut nodes = Vec::with_capacity(list.len());
        for (i, text) in list.iter().enumerate() {
            match host_port(text) {
                Some(node) => nodes.push(node),
                None => self.problem(&format!("{key}[{i}]"), format!("`{text}` is not host:port")),
            }
        }
        (nodes.len() == list.len()).then_some(nodes)
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

    /// TLS when the URL says `rediss://` or `tls = true`; `None` inside means plain TCP.
    fn tls(&mut self, s: &StoreSection) -> Option<Option<RedisTls>> {
        let on = match &s.url {
            Some(url) => url.starts_with("rediss://"),
            None => s.tls.unwrap_or(false),
        };
        if !on {
            let files = [
                ("ca_file", s.ca_file.is_some()),
                ("cert_file", s.cert_file.is_some()),
                ("key_file", s.key_file.is_some()),
            ];
            for (key, _) in files.iter().filter(|(_, set)| *set) {
                self.problem(key, "is only used with TLS (rediss://, or tls = true)");
            }
            return Some(None);
        }
        let ca = match s.ca_file.as_deref() {
            None => None,
            Some(file) => {
                let pem = self.read("ca_file", file)?;
                let certs = CertificateDer::pem_slice_iter(&pem).collect::<Result<Vec<_>, _>>();
                if !certs.is_ok_and(|c| !c.is_empty()) {
                    self.problem("ca_file", "holds no PEM CERTIFICATE block");
                    return None;
                }
                Some(pem)
            }
        };
        let client = match (s.cert_file.as_deref(), s.key_file.as_deref()) {
            (None, None) => None,
            (Some(cert), Some(key)) => Some(self.client_pair(cert, key)?),
            _ => {
                self.problem("cert_file", "set both cert_file and key_file, or neither");
                return None;
            }
        };
        Some(Some(RedisTls { ca, client }))
    }

    /// The client certificate chain and key, checked to be a usable pair.
    fn client_pair(&mut self, cert_file: &str, key_file: &str) -> Option<(Vec<u8>, Secret)> {
        let chain_pem = self.read("cert_file", cert_file)?;
        let key_pem = self.read("key_file", key_file)?;
        let chain = CertificateDer::pem_slice_iter(&chain_pem).collect::<Result<Vec<_>, _>>();
        let chain = match chain {
            Ok(chain) if !chain.is_empty() => chain,
            _ => {
                self.problem("cert_file", "holds no PEM CERTIFICATE block");
                return None;
            }
        };
        // The message never shows the key's contents.
        let Ok(key) = PrivateKeyDer::from_pem_slice(&key_pem) else {
            self.problem("key_file", "holds no PEM private key");
            return None;
        };
        let provider = std::sync::Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let usable = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map(|b| {
                b.with_root_certificates(rustls::RootCertStore::empty())
                    .with_client_auth_cert(chain, key)
            });
        if let Err(e) | Ok(Err(e)) = usable.map(|r| r.map(drop)) {
            self.problem(
                "key_file",
                format!("does not make a usable pair with cert_file: {e}"),
            );
            return None;
        }
        let key_text = String::from_utf8(key_pem).ok()?;
        Some((chain_pem, Secret::new(key_text)))
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

/// `host:port`, or `[v6]:port`.
fn host_port(text: &str) -> Option<(String, u16)> {
    let (host, port) = text.rsplit_once(':')?;
    let host = match host.strip_prefix('[') {
        Some(v6) => v6.strip_suffix(']')?,
        None if host.contains(':') => return None,
        None => host,
    };
    let port: u16 = port.parse().ok().filter(|p| *p != 0)?;
    let plain = |b: u8| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'_' | b':');
    (!host.is_empty() && host.bytes().all(plain)).then(|| (host.to_string(), port))
}

#[cfg(test)]
mod tests {
    use super::host_port;

    #[test]
    fn nodes_are_host_and_port() {
        assert_eq!(
            host_port("10.0.0.1:26379"),
            Some(("10.0.0.1".into(), 26379))
        );
        assert_eq!(
            host_port("redis-a.internal:7000"),
            Some(("redis-a.internal".into(), 7000))
        );
        assert_eq!(host_port("[::1]:7000"), Some(("::1".into(), 7000)));
        for bad in [
            "10.0.0.1",
            "::1:7000",
            "host:0",
            "host:70000",
            ":7000",
            "a b:1",
            "[::1:7000",
        ] {
            assert_eq!(host_port(bad), None, "{bad}");
        }
    }
}
