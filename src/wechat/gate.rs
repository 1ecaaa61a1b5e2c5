//! Quota protection in front of every WeChat call: a cap on calls in flight and a short
//! circuit breaker, so no burst can burn the app's WeChat quota.
//!
//! - More than `max_concurrent_calls` calls at once: the extra ones are answered 503
//!   `wechat_busy` at once instead of queueing behind a slow WeChat.
//! - `circuit_failures` failures in a row (unreachable, timeout, HTTP error, errcode -1 or
//!   45011) open the circuit: calls are answered at once, without calling out, with
//!   `Retry-After` — 429 `rate_limited` for a minute when the last failure was WeChat's
//!   45011 (its limits are per minute), else 503 `wechat_busy` for `circuit_open_for`.
//!   After that, calls go out again and one more failure opens the circuit again at once.
//!   A single 45011 is answered 429 like any other, and does not stop other calls.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use tokio::sync::{Semaphore, SemaphorePermit};

use crate::error::GatewayError;
use crate::metrics;

/// How long a 45011 keeps calls from going out: WeChat's limits are per minute.
const RATE_LIMITED_FOR: Duration = Duration::from_secs(60);

#[derive(Debug, Clone, Copy)]
pub struct GateSettings {
    pub max_concurrent_calls: usize,
    pub circuit_failures: u32,
    pub circuit_open_for: Duration,
}

pub struct Gate {
    permits: Semaphore,
    settings: GateSettings,
    breaker: Mutex<Breaker>,
}

#[derive(Default)]
struct Breaker {
    failures: u32,
    open: Option<(Instant, Opened)>,
}

#[derive(Clone, Copy)]
enum Opened {
    RateLimited,
    Failing,
}

/// Held while a call is in flight.
pub struct Admitted<'a> {
    _permit: SemaphorePermit<'a>,
}

impl Drop for Admitted<'_> {
    fn drop(&mut self) {
        metrics::wechat_in_flight(-1);
    }
}

fn retry_after(until: Instant) -> u64 {
    until.saturating_duration_since(Instant::now()).as_secs() + 1
}

impl Gate {
    pub fn new(settings: GateSettings) -> Self {
        Self {
            permits: Semaphore::new(settings.max_concurrent_calls.max(1)),
            settings,
            breaker: Mutex::new(Breaker::default()),
        }
    }

    /// Lets a call go out, or answers for WeChat at once.
    pub fn admit(&self) -> Result<Admitted<'_>, GatewayError> {
        if let Ok(mut breaker) = self.breaker.lock() {
            match breaker.open {
                Some((until, why)) if until > Instant::now() => {
                    let secs = retry_after(until);
                    return Err(match why {
                        Opened::RateLimited => {
                            metrics::wechat_shed("rate_limited");
                            GatewayError::RateLimited {
                                retry_after_secs: secs,
                            }
                        }
                        Opened::Failing => {
                            metrics::wechat_shed("circuit_open");
                            GatewayError::WechatShedding {
                                retry_after_secs: secs,
                            }
                        }
                    });
                }
                Some(_) => {
                    // Half open: calls go out again, and one more failure reopens.
                    breaker.open = None;
                    breaker.failures = self.settings.circuit_failures.saturating_sub(1);
                    metrics::wechat_circuit_open(false);
                }
                None => {}
            }
        }
        let permit = self.permits.try_acquire().map_err(|_| {
            metrics::wechat_shed("too_many_in_flight");
            GatewayError::WechatShedding {
                retry_after_secs: 1,
            }
        })?;
        metrics::wechat_in_flight(1);
        Ok(Admitted { _permit: permit })
    }

    /// WeChat answered with `errcode` (0 for success).
    pub fn answered(&self, errcode: i64) {
        match errcode {
            45011 => self.count_failure(Opened::RateLimited),
            -1 => self.count_failure(Opened::Failing),
            _ => {
                if let Ok(mut breaker) = self.breaker.lock() {
                    breaker.failures = 0;
                }
            }
        }
    }

    /// The call got no answer (unreachable, timeout, HTTP error).
    pub fn failed(&self) {
        self.count_failure(Opened::Failing);
    }

    fn count_failure(&self, why: Opened) {
        let open = match self.breaker.lock() {
            Ok(mut breaker) => {
                breaker.failures += 1;
                breaker.failures >= self.settings.circuit_failures
            }
            Err(_) => false,
        };
        if open {
            let duration = match why {
                Opened::RateLimited => RATE_LIMITED_FOR,
                Opened::Failing => self.settings.circuit_open_for,
            };
            self.open(why, duration);
        }
    }

    fn open(&self, why: Opened, duration: Duration) {
        if let Ok(mut breaker) = self.breaker.lock() {
            let until = Instant::now() + duration;
            if breaker.open.is_none_or(|(current, _)| current < until) {
                breaker.open = Some((until, why));
            }
            tracing::warn!(
                seconds = duration.as_secs(),
                reason = match why {
                    Opened::RateLimited => "WeChat answered 45011",
                    Opened::Failing => "WeChat keeps failing",
                },
                "WeChat circuit opened: calls are answered locally"
            );
        }
        metrics::wechat_circuit_open(true);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn gate(max: usize) -> Gate {
        Gate::new(GateSettings {
            max_concurrent_calls: max,
            circuit_failures: 3,
            circuit_open_for: Duration::from_secs(10),
        })
    }

    #[test]
    fn calls_beyond_the_cap_are_shed() {
        let gate = gate(2);
        let a = gate.admit();
        let b = gate.admit();
        assert!(a.is_ok() && b.is_ok());
        assert!(matches!(
            gate.admit(),
            Err(GatewayError::WechatShedding { .. })
        ));
        drop(a);
        assert!(gate.admit().is_ok());
    }

    #[test]
    fn failures_in_a_row_open_the_circuit_and_successes_reset_the_count() {
        let gate = gate(8);
        gate.failed();
        gate.failed();
        gate.answered(0);
        gate.failed();
        gate.failed();
        assert!(gate.admit().is_ok(), "not three in a row yet");
        gate.answered(-1);
        assert!(matches!(
            gate.admit(),
            Err(GatewayError::WechatShedding { retry_after_secs }) if retry_after_secs > 1
        ));
    }

    #[test]
    fn repeated_45011_hold_every_call_for_a_minute() {
        let gate = gate(8);
        gate.answered(45011);
        gate.answered(45011);
        assert!(gate.admit().is_ok(), "two are not a pattern yet");
        gate.answered(45011);
        assert!(matches!(
            gate.admit(),
            Err(GatewayError::RateLimited { retry_after_secs }) if retry_after_secs > 50
        ));
    }
}
