use super::*;

const OPEN_FOR: Duration = Duration::from_secs(10);
const RATE_LIMITED_FOR: Duration = Duration::from_secs(60);
const PROBE_FOR: Duration = Duration::from_secs(5);

const FAILURES: u32 = 3;

fn breaker() -> Breaker {
    Breaker::new(BreakerSettings {
        failures: FAILURES,
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
    /// As many calls as open the breaker arrive and fail, one after another.
    Trip,
}
use Step::{Admit, Finish, Trip};

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
            Trip => {
                for _ in 0..FAILURES {
                    match b.admit(now) {
                        Ok(ticket) => b.record(ticket, FAIL, now),
                        Err(shed) => panic!("{name}, step {i}: a failure was shed: {shed:?}"),
                    };
                }
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
                (0.0, Trip),
                (10.0, Admit("probe", None)),
                (11.0, Admit("other", Some(4.0))),
                (12.0, Finish("probe", OK)),
                (12.0, Admit("after", None)),
            ],
        ),
        (
            "a failed probe opens it for a full period again",
            &[
                (0.0, Trip),
                (10.0, Admit("probe", None)),
                (12.0, Finish("probe", FAIL)),
                (12.0, Admit("d", Some(10.0))),
                (22.0, Admit("probe2", None)),
            ],
        ),
        (
            "a probe answered 45011 holds calls for a minute",
            &[
                (0.0, Trip),
                (10.0, Admit("probe", None)),
                (11.0, Finish("probe", LIMITED)),
                (11.0, Admit("d", Some(60.0))),
            ],
        ),
        (
            "a failure that is not the probe's does not reopen it",
            &[
                (0.0, Admit("slow", None)),
                (0.0, Trip),
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
                (0.0, Trip),
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
                (0.0, Trip),
                (10.0, Admit("probe", None)),
                (11.0, Finish("probe", UNKNOWN)),
                (11.0, Admit("probe2", None)),
                (11.0, Admit("other", Some(5.0))),
            ],
        ),
        (
            "a probe past its bound is replaced, and its late verdict is ignored",
            &[
                (0.0, Trip),
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
    let open = play("open", &[(0.0, Trip)]);
    assert!(!open.is_closed());
    let probing = play("probing", &[(0.0, Trip), (10.0, Admit("probe", None))]);
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
