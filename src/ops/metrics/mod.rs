//! Process-wide metrics, rendered in the Prometheus/OpenMetrics text format on the admin
//! listener (`/metrics`).
//!
//! Per-request metrics go through handles made once per route and configuration
//! ([`RouteMetrics`]), so the hot path is a few atomic adds with no label lookup. Handles
//! of the same route label share their series, so counters continue across reloads.
//!
//! `registry` declares every family; `route` holds the per-route handles and `wechat` what
//! the WeChat client records; the rest (logins, token checks, connections, reloads) and the
//! text output are here.

mod registry;
mod route;
mod wechat;

use std::sync::{LazyLock, OnceLock};

use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::Gauge;

use registry::{ListenerLabel, Outcome, METRICS};
pub(crate) use route::RouteMetrics;
pub(crate) use wechat::{
    wechat_call, wechat_circuit_open, wechat_errcode, wechat_gate_created, wechat_in_flight,
    wechat_shed,
};

/// The content type of [`render`]'s output.
pub(crate) const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// A login's outcome: `ok` or the error code answered.
pub(crate) fn login(outcome: &'static str) {
    METRICS.logins.get_or_create(&Outcome { outcome }).inc();
}

/// Handles for the outcomes of every authenticated request, made once.
struct HotCounters {
    valid: Counter,
    hit: Counter,
    miss: Counter,
}

static HOT: LazyLock<HotCounters> = LazyLock::new(|| {
    let m = &*METRICS;
    let outcome = |outcome| Outcome { outcome };
    HotCounters {
        valid: m.verifications.get_or_create_owned(&outcome("valid")),
        hit: m.verified_cache.get_or_create_owned(&outcome("hit")),
        miss: m.verified_cache.get_or_create_owned(&outcome("miss")),
    }
});

/// An access-token check: `valid`, or the refusal (`expired`, `bad_signature`, `revoked`…).
pub(crate) fn verification(outcome: &'static str) {
    if outcome == "valid" {
        HOT.valid.inc();
    } else {
        METRICS
            .verifications
            .get_or_create(&Outcome { outcome })
            .inc();
    }
}

pub(crate) fn verified_cache(hit: bool) {
    if hit {
        HOT.hit.inc();
    } else {
        HOT.miss.inc();
    }
}

/// Counts an open connection until the guard drops.
pub(crate) struct ConnectionGuard(Gauge);

pub(crate) fn connection_opened(listener: &'static str) -> ConnectionGuard {
    let gauge = METRICS
        .connections
        .get_or_create_owned(&ListenerLabel { listener });
    gauge.inc();
    ConnectionGuard(gauge)
}

impl Drop for ConnectionGuard {
    fn drop(&mut self) {
        self.0.dec();
    }
}

/// Counts a parked connection until the guard drops.
pub(crate) struct ParkedGuard;

pub(crate) fn connection_parked() -> ParkedGuard {
    METRICS.parked.inc();
    ParkedGuard
}

impl Drop for ParkedGuard {
    fn drop(&mut self) {
        METRICS.parked.dec();
    }
}

/// Counts a configuration's runtime until it drops: the current one, and an earlier one
/// for as long as a request or tunnel started under it lasts.
pub(crate) struct RuntimeGuard;

pub(crate) fn runtime_made() -> RuntimeGuard {
    METRICS.runtimes.inc();
    RuntimeGuard
}

impl Drop for RuntimeGuard {
    fn drop(&mut self) {
        METRICS.runtimes.dec();
    }
}

/// A configuration load: `ok` (also at start-up) or `failed`.
pub(crate) fn reload(ok: bool) {
    let outcome = if ok { "ok" } else { "failed" };
    METRICS.reloads.get_or_create(&Outcome { outcome }).inc();
    if ok {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0.0, |d| d.as_secs_f64());
        METRICS.last_reload.set(now);
    }
}

/// What the allocator says about the heap: bytes allocated and not yet freed, and bytes
/// of physical memory it holds (freed pages it has not yet returned included). The gap
/// between the two, and between the second and the process's RSS, tells a growing data
/// structure from memory the allocator keeps for reuse.
#[derive(Clone, Copy, Debug)]
pub struct HeapStats {
    pub allocated: u64,
    pub resident: u64,
}

/// The binary's allocator, asked at each scrape. The library does not choose the global
/// allocator, so the `wxgate` binary, which does, installs this.
static HEAP_PROBE: OnceLock<fn() -> Option<HeapStats>> = OnceLock::new();

/// Installs the function that reads [`HeapStats`] for `/metrics`; the first call wins.
pub fn set_heap_probe(probe: fn() -> Option<HeapStats>) {
    let _ = HEAP_PROBE.set(probe);
}

pub(crate) fn render() -> String {
    if let Some(heap) = HEAP_PROBE.get().and_then(|probe| probe()) {
        let gauge = |bytes: u64| i64::try_from(bytes).unwrap_or(i64::MAX);
        METRICS.heap_allocated.set(gauge(heap.allocated));
        METRICS.heap_resident.set(gauge(heap.resident));
    }
    let mut out = String::new();
    if encode(&mut out, &METRICS.registry).is_err() {
        out.clear();
    }
    out
}

/// The current value of a counter-like sample, for tests: the sum of every line of
/// `text` whose series starts with `series` (name and, optionally, labels).
pub fn sample(text: &str, series: &str) -> f64 {
    text.lines()
        .filter(|l| !l.starts_with('#') && l.starts_with(series))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn route_handles_share_series_across_configurations() {
        let before = sample(
            &render(),
            "wxgate_requests_total{route=\"/unit-test\",class=\"2xx\"}",
        );
        RouteMetrics::new("/unit-test").record(200, Duration::from_millis(3), 10);
        RouteMetrics::new("/unit-test").record(204, Duration::from_millis(3), 0);
        let text = render();
        let after = sample(
            &text,
            "wxgate_requests_total{route=\"/unit-test\",class=\"2xx\"}",
        );
        assert_eq!(after - before, 2.0, "{text}");
        assert!(
            text.contains("wxgate_request_duration_seconds_bucket{"),
            "{text}"
        );
        assert!(text.ends_with("# EOF\n"));
    }
}
