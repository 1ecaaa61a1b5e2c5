//! Quota protection in front of every WeChat call: one gate per WeChat API, each with a cap
//! on calls in flight and a circuit breaker ([`super::breaker`]), so no burst can burn the
//! app's WeChat quota and no failing API sheds calls to another.
//!
//! - More than `max_concurrent_calls` calls of one API at once: the extra ones are answered
//!   503 `wechat_busy` at once instead of queueing behind a slow WeChat.
//! - `circuit_failures` failures in a row (no answer, errcode -1 or 45011) open that API's
//!   circuit: its calls are answered at once, without calling out, with an honest
//!   `Retry-After` — 429 `rate_limited` for a minute when the last failure was WeChat's
//!   45011 (its limits are per minute), else 503 `wechat_busy` for `circuit_open_for`.
//!   Then one probe call goes out, and it alone decides whether the circuit closes.
//!
//! Separate gates matter because a client can make wxgate call the auxiliary APIs (a
//! failed decrypt asks `checksession`): had they shared login's breaker, an API that
//! answers errors would turn into every user's login answering 503.

use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use tokio::sync::{Semaphore, SemaphorePermit};

use super::breaker::{Breaker, BreakerSettings, Change, Ticket, Verdict, Why};
use crate::error::GatewayError;
use crate::ops::metrics;
use crate::settings::GateSettings;

/// How long 45011s keep calls from going out: WeChat's limits are per minute.
const RATE_LIMITED_FOR: Duration = Duration::from_secs(60);

/// The WeChat APIs wxgate calls, each behind its own gate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Api {
    Jscode2session,
    StableToken,
    PhoneNumber,
    CheckSession,
    /// Every call relayed for legacy services, whatever its path.
    Relay,
}

impl Api {
    /// Every API, in declaration order: `ALL[a as usize] == a`.
    pub(crate) const ALL: [Api; 5] = [
        Self::Jscode2session,
        Self::StableToken,
        Self::PhoneNumber,
        Self::CheckSession,
        Self::Relay,
    ];

    /// The `api` label of metrics and logs.
    pub(crate) fn name(self) -> &'static str {
        match self {
            Self::Jscode2session => "jscode2session",
            Self::StableToken => "stable_token",
            Self::PhoneNumber => "getuserphonenumber",
            Self::CheckSession => "checksession",
            Self::Relay => "relay",
        }
    }
}

/// How a call ended, as far as the breaker cares.
#[derive(Debug, Clone, Copy)]
pub(super) enum Outcome {
    /// WeChat answered with this errcode (0 for success).
    Answered(i64),
    /// Unreachable, timed out, or an HTTP error.
    NoAnswer,
    /// An answer that could not be read (WeChat is up; repeating would not change it).
    Unusable,
}

impl Outcome {
    fn verdict(self) -> Verdict {
        match self {
            Self::Answered(45011) => Verdict::Failure(Why::RateLimited),
            Self::Answered(-1) | Self::NoAnswer => Verdict::Failure(Why::Failing),
            Self::Answered(_) => Verdict::Success,
            Self::Unusable => Verdict::Unknown,
        }
    }
}

/// One gate per [`Api`].
pub(super) struct Gates {
    gates: [Gate; Api::ALL.len()],
}

impl Gates {
    /// `probe_for` bounds a probe call: the WeChat timeout.
    pub(super) fn new(settings: GateSettings, probe_for: Duration) -> Self {
        let breaker = BreakerSettings {
            failures: settings.circuit_failures.max(1),
            open_for: settings.circuit_open_for,
            rate_limited_for: RATE_LIMITED_FOR,
            probe_for,
        };
        Self {
            gates: Api::ALL.map(|api| Gate::new(api, settings.max_concurrent_calls, breaker)),
        }
    }

    /// Lets a call to `api` go out, or answers for WeChat at once.
    pub(super) fn admit(&self, api: Api) -> Result<Admitted<'_>, GatewayError> {
        self.gates[api as usize].admit()
    }
}

struct Gate {
    api: Api,
    permits: Semaphore,
    breaker: Mutex<Breaker>,
}

/// Held while a call is in flight; [`Admitted::finish`] reports how it ended. Dropped
/// unfinished (the request was abandoned), it reports nothing learned.
pub(super) struct Admitted<'a> {
    gate: &'a Gate,
    ticket: Ticket,
    finished: bool,
    _permit: SemaphorePermit<'a>,
}

impl Admitted<'_> {
    pub(super) fn finish(mut self, outcome: Outcome) {
        self.finished = true;
        self.gate.record(self.ticket, outcome.verdict());
    }
}

impl Drop for Admitted<'_> {
    fn drop(&mut self) {
        if !self.finished {
            self.gate.record(self.ticket, Verdict::Unknown);
        }
        metrics::wechat_in_flight(self.gate.api.name(), -1);
    }
}

/// Whole seconds, rounded up: the earliest retry that can find the circuit let it through.
fn retry_after_secs(wait: Duration) -> u64 {
    (wait.as_secs() + u64::from(wait.subsec_nanos() > 0)).max(1)
}

impl Gate {
    fn new(api: Api, max_concurrent_calls: usize, breaker: BreakerSettings) -> Self {
        metrics::wechat_gate_created(api.name());
        Self {
            api,
            permits: Semaphore::new(max_concurrent_calls.max(1)),
            breaker: Mutex::new(Breaker::new(breaker)),
        }
    }

    fn breaker(&self) -> MutexGuard<'_, Breaker> {
        // The state stays consistent whatever panicked while holding it.
        self.breaker.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn admit(&self) -> Result<Admitted<'_>, GatewayError> {
        let api = self.api.name();
        let ticket = self.breaker().admit(Instant::now()).map_err(|shed| {
            let retry_after_secs = retry_after_secs(shed.wait);
            match shed.why {
                Why::RateLimited => {
                    metrics::wechat_shed(api, "rate_limited");
                    GatewayError::RateLimited { retry_after_secs }
                }
                Why::Failing => {
                    metrics::wechat_shed(api, "circuit_open");
                    GatewayError::WechatShedding { retry_after_secs }
                }
            }
        })?;
        let Ok(permit) = self.permits.try_acquire() else {
            // A probe that cannot go out must not hold the circuit shut.
            self.record(ticket, Verdict::Unknown);
            metrics::wechat_shed(api, "too_many_in_flight");
            return Err(GatewayError::WechatShedding {
                retry_after_secs: 1,
            });
        };
        if matches!(ticket, Ticket::Probe(_)) {
            tracing::info!(api, "WeChat circuit half open: one probe call goes out");
        }
        metrics::wechat_in_flight(api, 1);
        Ok(Admitted {
            gate: self,
            ticket,
            finished: false,
            _permit: permit,
        })
    }

    fn record(&self, ticket: Ticket, verdict: Verdict) {
        let change = self.breaker().record(ticket, verdict, Instant::now());
        let api = self.api.name();
        match change {
            Change::Opened { why, period } => {
                tracing::warn!(
                    api,
                    seconds = period.as_secs(),
                    reason = match why {
                        Why::RateLimited => "WeChat answered 45011",
                        Why::Failing => "WeChat keeps failing",
                    },
                    "WeChat circuit opened: calls are answered locally"
                );
                metrics::wechat_circuit_open(api, true);
            }
            Change::Closed => {
                tracing::info!(api, "WeChat circuit closed: the probe succeeded");
                metrics::wechat_circuit_open(api, false);
            }
            Change::Unchanged => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn gates(max: usize) -> Gates {
        Gates::new(
            GateSettings {
                max_concurrent_calls: max,
                circuit_failures: 3,
                circuit_open_for: Duration::from_secs(10),
            },
            Duration::from_secs(5),
        )
    }

    fn call(gates: &Gates, api: Api, outcome: Outcome) {
        gates.admit(api).expect("admitted").finish(outcome);
    }

    #[test]
    fn calls_beyond_the_cap_are_shed() {
        let gates = gates(2);
        let a = gates.admit(Api::Jscode2session);
        let b = gates.admit(Api::Jscode2session);
        assert!(a.is_ok() && b.is_ok());
        assert!(matches!(
            gates.admit(Api::Jscode2session),
            Err(GatewayError::WechatShedding {
                retry_after_secs: 1
            })
        ));
        assert!(
            gates.admit(Api::CheckSession).is_ok(),
            "each API has its own cap"
        );
        drop(a);
        assert!(gates.admit(Api::Jscode2session).is_ok());
    }

    #[test]
    fn failures_in_a_row_open_the_circuit_and_successes_reset_the_count() {
        let gates = gates(8);
        let api = Api::Jscode2session;
        call(&gates, api, Outcome::NoAnswer);
        call(&gates, api, Outcome::NoAnswer);
        call(&gates, api, Outcome::Answered(0));
        call(&gates, api, Outcome::NoAnswer);
        call(&gates, api, Outcome::Unusable);
        call(&gates, api, Outcome::NoAnswer);
        assert!(gates.admit(api).is_ok(), "not three in a row yet");
        call(&gates, api, Outcome::Answered(-1));
        assert!(matches!(
            gates.admit(api),
            Err(GatewayError::WechatShedding { retry_after_secs }) if (9..=10).contains(&retry_after_secs)
        ));
    }

    #[test]
    fn repeated_45011_hold_every_call_for_a_minute() {
        let gates = gates(8);
        let api = Api::PhoneNumber;
        call(&gates, api, Outcome::Answered(45011));
        call(&gates, api, Outcome::Answered(45011));
        assert!(gates.admit(api).is_ok(), "two are not a pattern yet");
        call(&gates, api, Outcome::Answered(45011));
        assert!(matches!(
            gates.admit(api),
            Err(GatewayError::RateLimited { retry_after_secs }) if (59..=60).contains(&retry_after_secs)
        ));
    }

    #[test]
    fn a_failing_api_leaves_the_others_open() {
        let gates = gates(8);
        for _ in 0..3 {
            call(&gates, Api::CheckSession, Outcome::NoAnswer);
            call(&gates, Api::PhoneNumber, Outcome::Answered(-1));
        }
        assert!(gates.admit(Api::CheckSession).is_err());
        assert!(gates.admit(Api::PhoneNumber).is_err());
        for api in [Api::Jscode2session, Api::StableToken, Api::Relay] {
            assert!(gates.admit(api).is_ok(), "{api:?}");
        }
    }

    #[test]
    fn an_abandoned_call_reports_nothing_learned() {
        let gates = gates(8);
        let api = Api::Relay;
        call(&gates, api, Outcome::NoAnswer);
        call(&gates, api, Outcome::NoAnswer);
        drop(gates.admit(api).expect("admitted"));
        assert!(gates.admit(api).is_ok(), "the dropped call did not count");
    }

    #[test]
    fn retry_after_rounds_up_to_whole_seconds() {
        let cases = [(0, 1), (1, 1), (999, 1), (1000, 1), (1001, 2), (9_500, 10)];
        for (millis, secs) in cases {
            assert_eq!(
                retry_after_secs(Duration::from_millis(millis)),
                secs,
                "{millis} ms"
            );
        }
    }
}
