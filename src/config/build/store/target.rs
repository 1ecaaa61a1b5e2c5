//! `store.url`, `store.sentinels` or `store.cluster`: which Redis, and how it is reached.

use super::{Check, StoreSection};
use crate::secret::Secret;
use crate::settings::RedisTarget;

const SCHEMES: [&str; 4] = ["redis://", "rediss://", "redis+unix://", "unix://"];

impl Check<'_> {
    /// Exactly one of `url`, `sentinels` (with `master_name`) and `cluster`.
    pub(super) fn target(&mut self, s: &StoreSection) -> Option<RedisTarget> {
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
