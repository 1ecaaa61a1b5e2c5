//! WeChat's side: errcodes, call latencies, and each API gate's calls in flight, shed calls
//! and breaker state.

use std::time::Duration;

use super::registry::{ApiLabel, ApiLabels, ErrcodeLabels, METRICS};

/// A non-zero errcode from WeChat, by class: `code` (the user's code or phone code was
/// refused), `token` (access_token refused), `rate_limit`, `quota`, `busy`,
/// `credentials` (our appid/secret), `session_key`, `other`.
pub(crate) fn wechat_errcode(api: &'static str, errcode: i64) {
    let errcode_class = match errcode {
        -1 => "busy",
        45011 => "rate_limit",
        45009 => "quota",
        40001 | 40014 | 42001 => "token",
        40013 | 40125 | 40164 | 41002 | 41004 | 48001 => "credentials",
        40029 | 40163 | 40226 | 42003 => "code",
        87009 => "session_key",
        _ => "other",
    };
    METRICS
        .errcodes
        .get_or_create(&ErrcodeLabels { api, errcode_class })
        .inc();
}

/// A WeChat API call and how it ended (`ok`, `errcode`, `timeout`, `error`).
pub(crate) fn wechat_call(api: &'static str, outcome: &'static str, elapsed: Duration) {
    METRICS
        .wechat_seconds
        .get_or_create(&ApiLabels { api, outcome })
        .observe(elapsed.as_secs_f64());
}

/// The WeChat call gates, one per API: calls in flight, shed calls and the breaker state.
///
/// A new gate makes its gauges' series exist (at 0 when new), so dashboards see every API.
pub(crate) fn wechat_gate_created(api: &'static str) {
    let label = ApiLabel { api };
    drop(METRICS.wechat_in_flight.get_or_create(&label));
    drop(METRICS.breaker_open.get_or_create(&label));
}

pub(crate) fn wechat_in_flight(api: &'static str, delta: i64) {
    METRICS
        .wechat_in_flight
        .get_or_create(&ApiLabel { api })
        .inc_by(delta);
}

/// A call answered locally: `too_many_in_flight`, `circuit_open` or `rate_limited`.
pub(crate) fn wechat_shed(api: &'static str, outcome: &'static str) {
    METRICS
        .wechat_shed
        .get_or_create(&ApiLabels { api, outcome })
        .inc();
}

pub(crate) fn wechat_circuit_open(api: &'static str, open: bool) {
    METRICS
        .breaker_open
        .get_or_create(&ApiLabel { api })
        .set(i64::from(open));
}
