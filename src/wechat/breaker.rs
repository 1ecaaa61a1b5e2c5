//! The circuit breaker of one WeChat API, as a state machine with time passed in.
//!
//! - **Closed**: calls go out; `failures` in a row open it.
//! - **Open** until a deadline: calls are shed, told to come back at the deadline.
//! - **Probing**: the open period is over and exactly one call (the probe) is out. Its
//!   success closes the breaker, its failure opens it for a full period again; every other
//!   call meanwhile is shed until the probe must have ended (it is bounded by the WeChat
//!   timeout). A probe that ends without a verdict (a malformed answer, a dropped request)
//!   proves nothing: the next call becomes the probe.
//!
//! Verdicts of calls that are not the current probe (calls that were already in flight when
//! the breaker opened) never change an open or probing breaker: only the probe speaks for
//! WeChat then.

use std::time::{Duration, Instant};

/// Why the breaker opened, which decides what shed calls are told.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Why {
    /// No answer, or errcode -1: 503 `wechat_busy`.
    Failing,
    /// errcode 45011, WeChat's per-minute limit: 429 `rate_limited`.
    RateLimited,
}

/// What a finished call says about WeChat.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Verdict {
    /// WeChat answered (any errcode but -1 and 45011).
    Success,
    Failure(Why),
    /// Nothing learned: a malformed answer, or the call was abandoned.
    Unknown,
}

/// What an admitted call carries until its verdict.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Ticket {
    Normal,
    /// The one call let through after an open period, numbered so that a late verdict of
    /// an earlier probe cannot decide for a later one.
    Probe(u64),
}

/// A call refused without calling out, and how long until the breaker may let one through.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Shed {
    pub why: Why,
    pub wait: Duration,
}

/// A change worth logging.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Change {
    Unchanged,
    Opened { why: Why, period: Duration },
    Closed,
}

#[derive(Debug, Clone, Copy)]
pub(super) struct BreakerSettings {
    /// Failures in a row that open a closed breaker.
    pub failures: u32,
    /// How long a failing WeChat is left alone.
    pub open_for: Duration,
    /// How long after 45011s: WeChat's limits are per minute.
    pub rate_limited_for: Duration,
    /// The longest a probe can take (the WeChat timeout).
    pub probe_for: Duration,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Closed {
        failures: u32,
    },
    Open {
        until: Instant,
        why: Why,
    },
    Probing {
        probe: u64,
        until: Instant,
        why: Why,
    },
}

pub(super) struct Breaker {
    settings: BreakerSettings,
    state: State,
    probes: u64,
}

impl Breaker {
    pub(super) fn new(settings: BreakerSettings) -> Self {
        Self {
            settings,
            state: State::Closed { failures: 0 },
            probes: 0,
        }
    }

    /// Closed means calls go out freely; open and probing both shed calls.
    fn is_closed(&self) -> bool {
        matches!(self.state, State::Closed { .. })
    }

    /// Lets a call out (perhaps as the probe) or sheds it.
    pub(super) fn admit(&mut self, now: Instant) -> Result<Ticket, Shed> {
        match self.state {
            State::Closed { .. } => Ok(Ticket::Normal),
            State::Open { until, why } | State::Probing { until, why, .. } if until > now => {
                Err(Shed {
                    why,
                    wait: until - now,
                })
            }
            // The open period is over, or a probe overran its bound (its verdict is then
            // stale and ignored): this call is the probe.
            State::Open { why, .. } | State::Probing { why, .. } => {
                self.probes += 1;
                self.state = State::Probing {
                    probe: self.probes,
                    until: now + self.settings.probe_for,
                    why,
                };
                Ok(Ticket::Probe(self.probes))
            }
        }
    }

    /// Takes a finished call's verdict.
    pub(super) fn record(&mut self, ticket: Ticket, verdict: Verdict, now: Instant) -> Change {
        match (self.state, ticket) {
            (State::Probing { probe, why, .. }, Ticket::Probe(id)) if probe == id => {
                match verdict {
                    Verdict::Success => self.close(),
                    Verdict::Failure(why) => self.open(why, now),
                    // Released: the next call probes at once.
                    Verdict::Unknown => {
                        self.state = State::Open { until: now, why };
                        Change::Unchanged
                    }
                }
            }
            (State::Closed { failures }, _) => match verdict {
                Verdict::Success => self.close(),
                Verdict::Failure(why) if failures + 1 >= self.settings.failures => {
                    self.open(why, now)
                }
                Verdict::Failure(_) => {
                    self.state = State::Closed {
                        failures: failures + 1,
                    };
                    Change::Unchanged
                }
                Verdict::Unknown => Change::Unchanged,
            },
            _ => Change::Unchanged,
        }
    }

    fn close(&mut self) -> Change {
        let was_closed = self.is_closed();
        self.state = State::Closed { failures: 0 };
        if was_closed {
            Change::Unchanged
        } else {
            Change::Closed
        }
    }

    fn open(&mut self, why: Why, now: Instant) -> Change {
        let period = match why {
            Why::Failing => self.settings.open_for,
            Why::RateLimited => self.settings.rate_limited_for,
        };
        self.state = State::Open {
            until: now + period,
            why,
        };
        Change::Opened { why, period }
    }
}

#[cfg(test)]
mod tests;
