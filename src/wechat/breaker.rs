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
pub enum Why {
    /// No answer, or errcode -1: 503 `wechat_busy`.
    Failing,
    /// errcode 45011, WeChat's per-minute limit: 429 `rate_limited`.
    RateLimited,
}

/// What a finished call says about WeChat.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// WeChat answered (any errcode but -1 and 45011).
    Success,
    Failure(Why),
    /// Nothing learned: a malformed answer, or the call was abandoned.
    Unknown,
}

/// What an admitted call carries until its verdict.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ticket {
    Normal,
    /// The one call let through after an open period, numbered so that a late verdict of
    /// an earlier probe cannot decide for a later one.
    Probe(u64),
}

/// A call refused without calling out, and how long until the breaker may let one through.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Shed {
    pub why: Why,
    pub wait: Duration,
}

/// A change worth logging.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Change {
    Unchanged,
    Opened { why: Why, period: Duration },
    Closed,
}

#[derive(Debug, Clone, Copy)]
pub struct BreakerSettings {
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

pub struct Breaker {
    settings: BreakerSettings,
    state: State,
    probes: u64,
}

impl Breaker {
    pub fn new(settings: BreakerSettings) -> Self {
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
    pub fn admit(&mut self, now: Instant) -> Result<Ticket, Shed> {
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
    pub fn record(&mut self, ticket: Ticket, verdict: Verdict, now: Instant) -> Change {
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
mod tests {
    use super::*;

    const OPEN_FOR: Duration = Duration::from_secs(10);
    const RATE_LIMITED_FOR: Duration = Duration::from_secs(60);
    const PROBE_FOR: Duration = Duration::from_secs(5);

    fn breaker() -> Breaker {
        Breaker::new(BreakerSettings {
            failures: 3,
            open_for: OPEN_FOR,
            rate_limited_for: RATE_LIMITED_FOR,
            probe_for: PROBE_FOR,
        })
    }

    /// One step of a scenario, at a time in seconds from its start.
    enum Step {
        /// A call arrives; `Some(wait)`: it is shed, told to wait `wait` seconds.
        Admit(&'static str, Option<f64>),
        /// The call admitted as `name` finishes.
        Finish(&'static str, Verdict),
    }
    use Step::{Admit, Finish};

    const FAIL: Verdict = Verdict::Failure(Why::Failing);
    const LIMITED: Verdict = Verdict::Failure(Why::RateLimited);
    const OK: Verdict = Verdict::Success;
    const UNKNOWN: Verdict = Verdict::Unknown;

    /// Plays `steps` against a fresh breaker; names are the calls admitted so far.
    fn play(name: &str, steps: &[(f64, Step)]) -> Breaker {
        let start = Instant::now();
        let mut b = breaker();
        let mut tickets = std::collections::HashMap::new();
        for (i, (at, step)) in steps.iter().enumerate() {
            let now = start + Duration::from_secs_f64(*at);
            match step {
                Admit(call, expected) => {
                    let got = b.admit(now);
                    match (expected, got) {
                        (None, Ok(ticket)) => {
                            tickets.insert(*call, ticket);
                        }
                        (Some(wait), Err(shed)) => assert_eq!(
                            shed.wait,
                            Duration::from_secs_f64(*wait),
                            "{name}, step {i}: {call} was shed with the wrong wait"
                        ),
                        (expected, got) => {
                            panic!("{name}, step {i}: {call}: expected {expected:?}, got {got:?}")
                        }
                    }
                }
                Finish(call, verdict) => {
                    let ticket = tickets[call];
                    b.record(ticket, *verdict, now);
                }
            }
        }
        b
    }

    #[test]
    fn the_breaker_follows_its_state_machine() {
        let cases: &[(&str, &[(f64, Step)])] = &[
            (
                "failures in a row open it; the wait is what is left of the period",
                &[
                    (0.0, Admit("a", None)),
                    (0.0, Finish("a", FAIL)),
                    (0.0, Admit("b", None)),
                    (0.0, Finish("b", FAIL)),
                    (0.0, Admit("c", None)),
                    (1.0, Finish("c", FAIL)),
                    (1.0, Admit("d", Some(10.0))),
                    (7.5, Admit("e", Some(3.5))),
                ],
            ),
            (
                "a success resets the count",
                &[
                    (0.0, Admit("a", None)),
                    (0.0, Finish("a", FAIL)),
                    (0.0, Admit("b", None)),
                    (0.0, Finish("b", FAIL)),
                    (0.0, Admit("c", None)),
                    (0.0, Finish("c", OK)),
                    (0.0, Admit("d", None)),
                    (0.0, Finish("d", FAIL)),
                    (0.0, Admit("e", None)),
                    (0.0, Finish("e", FAIL)),
                    (0.0, Admit("f", None)),
                ],
            ),
            (
                "unknown verdicts neither count nor reset",
                &[
                    (0.0, Admit("a", None)),
                    (0.0, Finish("a", FAIL)),
                    (0.0, Admit("b", None)),
                    (0.0, Finish("b", UNKNOWN)),
                    (0.0, Admit("c", None)),
                    (0.0, Finish("c", FAIL)),
                    (0.0, Admit("d", None)),
                    (0.0, Finish("d", FAIL)),
                    (0.0, Admit("e", Some(10.0))),
                ],
            ),
            (
                "45011s in a row hold calls for a minute",
                &[
                    (0.0, Admit("a", None)),
                    (0.0, Finish("a", LIMITED)),
                    (0.0, Admit("b", None)),
                    (0.0, Finish("b", LIMITED)),
                    (0.0, Admit("c", None)),
                    (0.0, Finish("c", LIMITED)),
                    (30.0, Admit("d", Some(30.0))),
                ],
            ),
            (
                "after the period one probe goes out; others wait for the probe, not a period",
                &[
                    (0.0, Admit("a", None)),
                    (0.0, Finish("a", FAIL)),
                    (0.0, Admit("b", None)),
                    (0.0, Finish("b", FAIL)),
                    (0.0, Admit("c", None)),
                    (0.0, Finish("c", FAIL)),
                    (10.0, Admit("probe", None)),
                    (11.0, Admit("other", Some(4.0))),
                    (12.0, Finish("probe", OK)),
                    (12.0, Admit("after", None)),
                ],
            ),
            (
                "a failed probe opens it for a full period again",
                &[
                    (0.0, Admit("a", None)),
                    (0.0, Finish("a", FAIL)),
                    (0.0, Admit("b", None)),
                    (0.0, Finish("b", FAIL)),
                    (0.0, Admit("c", None)),
                    (0.0, Finish("c", FAIL)),
                    (10.0, Admit("probe", None)),
                    (12.0, Finish("probe", FAIL)),
                    (12.0, Admit("d", Some(10.0))),
                    (22.0, Admit("probe2", None)),
                ],
            ),
            (
                "a probe answered 45011 holds calls for a minute",
                &[
                    (0.0, Admit("a", None)),
                    (0.0, Finish("a", FAIL)),
                    (0.0, Admit("b", None)),
                    (0.0, Finish("b", FAIL)),
                    (0.0, Admit("c", None)),
                    (0.0, Finish("c", FAIL)),
                    (10.0, Admit("probe", None)),
                    (11.0, Finish("probe", LIMITED)),
                    (11.0, Admit("d", Some(60.0))),
                ],
            ),
            (
                "a failure that is not the probe's does not reopen it",
                &[
                    (0.0, Admit("slow", None)),
                    (0.0, Admit("a", None)),
                    (0.0, Finish("a", FAIL)),
                    (0.0, Admit("b", None)),
                    (0.0, Finish("b", FAIL)),
                    (0.0, Admit("c", None)),
                    (0.0, Finish("c", FAIL)),
                    (10.0, Admit("probe", None)),
                    (10.5, Finish("slow", FAIL)),
                    (11.0, Finish("probe", OK)),
                    (11.0, Admit("d", None)),
                    (11.0, Finish("d", FAIL)),
                    (11.0, Admit("e", None)),
                ],
            ),
            (
                "after the probe closes it, one failure does not reopen it",
                &[
                    (0.0, Admit("a", None)),
                    (0.0, Finish("a", FAIL)),
                    (0.0, Admit("b", None)),
                    (0.0, Finish("b", FAIL)),
                    (0.0, Admit("c", None)),
                    (0.0, Finish("c", FAIL)),
                    (10.0, Admit("probe", None)),
                    (10.0, Finish("probe", OK)),
                    (10.0, Admit("d", None)),
                    (10.0, Finish("d", LIMITED)),
                    (10.0, Admit("e", None)),
                    (10.0, Finish("e", FAIL)),
                    (10.0, Admit("f", None)),
                ],
            ),
            (
                "a probe without a verdict lets the next call probe at once",
                &[
                    (0.0, Admit("a", None)),
                    (0.0, Finish("a", FAIL)),
                    (0.0, Admit("b", None)),
                    (0.0, Finish("b", FAIL)),
                    (0.0, Admit("c", None)),
                    (0.0, Finish("c", FAIL)),
                    (10.0, Admit("probe", None)),
                    (11.0, Finish("probe", UNKNOWN)),
                    (11.0, Admit("probe2", None)),
                    (11.0, Admit("other", Some(5.0))),
                ],
            ),
            (
                "a probe past its bound is replaced, and its late verdict is ignored",
                &[
                    (0.0, Admit("a", None)),
                    (0.0, Finish("a", FAIL)),
                    (0.0, Admit("b", None)),
                    (0.0, Finish("b", FAIL)),
                    (0.0, Admit("c", None)),
                    (0.0, Finish("c", FAIL)),
                    (10.0, Admit("stuck", None)),
                    (15.0, Admit("probe2", None)),
                    (16.0, Finish("stuck", OK)),
                    (16.0, Admit("other", Some(4.0))),
                    (17.0, Finish("probe2", OK)),
                    (17.0, Admit("after", None)),
                ],
            ),
        ];
        for (name, steps) in cases {
            play(name, steps);
        }
    }

    #[test]
    fn only_a_closed_breaker_reports_closed() {
        let open = play(
            "open",
            &[
                (0.0, Admit("a", None)),
                (0.0, Finish("a", FAIL)),
                (0.0, Admit("b", None)),
                (0.0, Finish("b", FAIL)),
                (0.0, Admit("c", None)),
                (0.0, Finish("c", FAIL)),
            ],
        );
        assert!(!open.is_closed());
        let probing = play(
            "probing",
            &[
                (0.0, Admit("a", None)),
                (0.0, Finish("a", FAIL)),
                (0.0, Admit("b", None)),
                (0.0, Finish("b", FAIL)),
                (0.0, Admit("c", None)),
                (0.0, Finish("c", FAIL)),
                (10.0, Admit("probe", None)),
            ],
        );
        assert!(!probing.is_closed());
        assert!(breaker().is_closed());
    }

    #[test]
    fn changes_are_reported_once() {
        let now = Instant::now();
        let mut b = breaker();
        for _ in 0..2 {
            assert_eq!(b.record(Ticket::Normal, FAIL, now), Change::Unchanged);
        }
        assert_eq!(
            b.record(Ticket::Normal, FAIL, now),
            Change::Opened {
                why: Why::Failing,
                period: OPEN_FOR
            }
        );
        let probe = b.admit(now + OPEN_FOR).expect("probe");
        assert_eq!(b.record(probe, OK, now + OPEN_FOR), Change::Closed);
        assert_eq!(b.record(Ticket::Normal, OK, now), Change::Unchanged);
    }
}
