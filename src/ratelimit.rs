//! Per-client token buckets for the login endpoint, so no client burns the app's WeChat quota.

use std::net::IpAddr;
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
    buckets: Cache<IpAddr, Arc<Mutex<Bucket>>>,
}

impl LoginLimiter {
    pub fn new(limit: RateLimit) -> Self {
        Self {
            rate_per_sec: f64::from(limit.per_minute) / 60.0,
            burst: f64::from(limit.burst),
            buckets: Cache::builder()
                .max_capacity(200_000)
                .time_to_idle(Duration::from_secs(600))
                .build(),
        }
    }

    /// Takes one token for `ip`, or says how many seconds until one is available.
    pub fn check(&self, ip: IpAddr) -> Result<(), u64> {
        let now = Instant::now();
        let bucket = self.buckets.get_with(ip, || {
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

    #[test]
    fn a_burst_passes_then_the_client_waits() {
        let limiter = LoginLimiter::new(RateLimit {
            per_minute: 60,
            burst: 3,
        });
        let ip: IpAddr = "198.51.100.1".parse().expect("ip");
        for _ in 0..3 {
            assert_eq!(limiter.check(ip), Ok(()));
        }
        assert_eq!(limiter.check(ip), Err(1));
        let other: IpAddr = "198.51.100.2".parse().expect("ip");
        assert_eq!(limiter.check(other), Ok(()), "buckets are per client");
    }
}
