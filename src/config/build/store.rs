//! `[store]`: sessions and codes in memory or in Redis.

use super::Builder;
use crate::config::file::StoreSection;
use crate::secret::Secret;
use crate::settings::{RedisSettings, StoreSettings};

impl Builder<'_> {
    pub(super) fn store(&mut self, s: &StoreSection) -> Option<StoreSettings> {
        let redis_only = [
            ("url", s.url.is_some()),
            ("key_prefix", s.key_prefix.is_some()),
            ("pool_size", s.pool_size.is_some()),
            ("timeout", s.timeout.is_some()),
            ("connect_timeout", s.connect_timeout.is_some()),
        ];
        match s.backend.as_str() {
            "memory" => {
                let mut ok = true;
                for (key, _) in redis_only.iter().filter(|(_, set)| *set) {
                    self.problem(
                        &format!("store.{key}"),
                        "is only used with backend = \"redis\"",
                    );
                    ok = false;
                }
                ok.then_some(StoreSettings::Memory)
            }
            "redis" => self.redis(s).map(StoreSettings::Redis),
            other => {
                self.problem(
                    "store.backend",
                    format!("`{other}` is not \"memory\" or \"redis\""),
                );
                None
            }
        }
    }

    fn redis(&mut self, s: &StoreSection) -> Option<RedisSettings> {
        let url = match s.url.as_deref() {
            None => {
                self.problem("store.url", "is required with backend = \"redis\"");
                None
            }
            // The URL may hold a password: the message never repeats it.
            Some(url)
                if !(url.starts_with("redis://")
                    || url.starts_with("redis+unix://")
                    || url.starts_with("unix://")) =>
            {
                self.problem(
                    "store.url",
                    "must start with redis://, redis+unix:// or unix:// (rediss:// is not supported)",
                );
                None
            }
            Some(url) if redis::Client::open(url).is_err() => {
                self.problem("store.url", "is not a valid Redis URL");
                None
            }
            Some(url) => Some(Secret::new(url)),
        };
        let key_prefix = s.key_prefix.clone().unwrap_or_else(|| "wxgate:".into());
        if key_prefix.len() > 64 || key_prefix.bytes().any(|b| !b.is_ascii_graphic()) {
            self.problem(
                "store.key_prefix",
                "must be at most 64 visible ASCII characters",
            );
        }
        let pool_size = s.pool_size.unwrap_or(2);
        if !(1..=64).contains(&pool_size) {
            self.problem("store.pool_size", "must be between 1 and 64");
        }
        let timeout = self.duration("store.timeout", s.timeout.as_deref().unwrap_or("500ms"));
        let connect_timeout = self.duration(
            "store.connect_timeout",
            s.connect_timeout.as_deref().unwrap_or("1s"),
        );
        Some(RedisSettings {
            url: url?,
            key_prefix,
            pool_size,
            timeout: timeout?,
            connect_timeout: connect_timeout?,
        })
    }
}
