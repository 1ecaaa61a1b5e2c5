//! Per-client token buckets for the endpoints that can make wxgate call WeChat (login,
//! phone, decrypt), so no client burns the app's WeChat quota.
//!
//! A client is its address cut to a prefix: one IPv4 address, but a whole IPv6 /64 by
//! default, because a subscriber is handed a /64 and can pick any address in it.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use moka::sync::Cache;

use crate::settings::RateLimit;

struct Bucket {
    tokens: f64,
    updated: Instant,
}

pub struct LoginLimiter {
    rate_per_sec: f64,
    burst: f64,
    ipv4_prefix: u8,
    ipv6_prefix: u8,
    buckets: Cache<IpAddr, Arc<Mutex<Bucket>>>,
}

impl LoginLimiter {
    pub fn new(limit: RateLimit) -> Self {
        Self {
            rate_per_sec: f64::from(limit.per_minute) / 60.0,
            burst: f64::from(limit.burst),
            ipv4_prefix: limit.ipv4_prefix.min(32),
            ipv6_prefix: limit.ipv6_prefix.min(128),
            buckets: Cache::builder()
                .max_capacity(200_000)
                .time_to_idle(Duration::from_secs(600))
                .build(),
        }
    }

    /// The network `ip` is counted under: its first `ipv4_prefix` / `ipv6_prefix` bits.
    /// An IPv4-mapped IPv6 address counts as its IPv4 address.
    fn client(&self, ip: IpAddr) -> IpAddr {
        let ip = match ip {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
            v4 => v4,
        };
        // A shift by the full width (a prefix of 0) overflows: then nothing is kept.
        match ip {
            IpAddr::V4(v4) => {
                let mask = u32::MAX.checked_shl(32 - u32::from(self.ipv4_prefix));
                IpAddr::V4(Ipv4Addr::from(u32::from(v4) & mask.unwrap_or(0)))
            }
            IpAddr::V6(v6) => {
                let mask = u128::MAX.checked_shl(128 - u32::from(self.ipv6_prefix));
                IpAddr::V6(Ipv6Addr::from(u128::from(v6) & mask.unwrap_or(0)))
            }
        }
    }

    /// Takes one token for `ip`'s network, or says how many seconds until one is available.
    pub fn check(&self, ip: IpAddr) -> Result<(), u64> {
        let now = Instant::now();
        let bucket = self.buckets.get_with(self.client(ip), || {
            Arc::new(Mutex::new(Bucket {
                tokens: self.burst,
                updated: now,
            }))
        });
        let mut b = bucket
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let elapsed = now.saturating_duration_since(b.updated).as_secs_f64();
        b.tokens = (b.tokens + elapsed * self.rate_per_sec).min(self.burst);
        b.updated = now;
        if b.tokens >= 1.0 {
            b.tokens -= 1.0;
            Ok(())
        } else {
            let wait = (1.0 - b.tokens) / self.rate_per_sec;
            Err(wait.ceil().max(1.0) as u64)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limiter(burst: u32, ipv4_prefix: u8, ipv6_prefix: u8) -> LoginLimiter {
        LoginLimiter::new(RateLimit {
            per_minute: 60,
            burst,
            ipv4_prefix,
            ipv6_prefix,
        })
    }

    fn ip(text: &str) -> IpAddr {
        text.parse().expect("ip")
    }

    #[test]
    fn a_burst_passes_then_the_client_waits() {
        let limiter = limiter(3, 32, 64);
        for _ in 0..3 {
            assert_eq!(limiter.check(ip("198.51.100.1")), Ok(()));
        }
        assert_eq!(limiter.check(ip("198.51.100.1")), Err(1));
        assert_eq!(
            limiter.check(ip("198.51.100.2")),
            Ok(()),
            "buckets are per client"
        );
    }

    #[test]
    fn clients_are_counted_per_network() {
        let cases = [
            // (ipv4_prefix, ipv6_prefix, address, its network)
            (32, 64, "198.51.100.7", "198.51.100.7"),
            (24, 64, "198.51.100.7", "198.51.100.0"),
            (0, 64, "198.51.100.7", "0.0.0.0"),
            (32, 64, "2001:db8:1:2:aaaa:bbbb:cccc:dddd", "2001:db8:1:2::"),
            (32, 48, "2001:db8:1:2:aaaa:bbbb:cccc:dddd", "2001:db8:1::"),
            (32, 128, "2001:db8::1", "2001:db8::1"),
            (32, 0, "2001:db8::1", "::"),
            (24, 64, "::ffff:198.51.100.7", "198.51.100.0"),
        ];
        for (v4, v6, address, network) in cases {
            assert_eq!(
                limiter(1, v4, v6).client(ip(address)),
                ip(network),
                "{address} with /{v4} and /{v6}"
            );
        }
    }

    #[test]
    fn addresses_of_one_ipv6_64_share_a_bucket() {
        let limiter = limiter(2, 32, 64);
        assert_eq!(limiter.check(ip("2001:db8:0:1::1")), Ok(()));
        assert_eq!(limiter.check(ip("2001:db8:0:1:ffff::2")), Ok(()));
        assert_eq!(limiter.check(ip("2001:db8:0:1::3")), Err(1), "same /64");
        assert_eq!(limiter.check(ip("2001:db8:0:2::1")), Ok(()), "next /64");
        assert_eq!(limiter.check(ip("192.0.2.1")), Ok(()));
        assert_eq!(limiter.check(ip("192.0.2.1")), Ok(()));
        assert_eq!(limiter.check(ip("192.0.2.2")), Ok(()), "IPv4 per address");
    }
}
