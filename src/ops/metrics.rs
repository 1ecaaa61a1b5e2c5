//! Process-wide metrics, rendered in the Prometheus/OpenMetrics text format on the admin
//! listener (`/metrics`).
//!
//! Per-request metrics go through handles made once per route and configuration
//! ([`RouteMetrics`]), so the hot path is a few atomic adds with no label lookup. Handles
//! of the same route label share their series, so counters continue across reloads.

use std::sync::atomic::AtomicU64;
use std::sync::{Arc, LazyLock};
use std::time::Duration;

use prometheus_client::encoding::text::encode;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

/// The content type of [`render`]'s output.
pub(crate) const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// Seconds: 0.5 ms to 10 s, for request and dependency latencies.
const LATENCY_BUCKETS: [f64; 14] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

const CLASSES: [&str; 5] = ["1xx", "2xx", "3xx", "4xx", "5xx"];

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RouteClass {
    route: String,
    class: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RouteLabel {
    route: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ErrcodeLabels {
    api: &'static str,
    errcode_class: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ApiLabels {
    api: &'static str,
    outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ApiLabel {
    api: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct Outcome {
    outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ListenerLabel {
    listener: &'static str,
}

fn latency_histogram() -> Histogram {
    Histogram::new(LATENCY_BUCKETS)
}

struct Metrics {
    registry: Registry,
    requests: Family<RouteClass, Counter>,
    request_seconds: Family<RouteClass, Histogram, fn() -> Histogram>,
    upstream_seconds: Family<RouteLabel, Histogram, fn() -> Histogram>,
    response_bytes: Family<RouteLabel, Counter>,
    logins: Family<Outcome, Counter>,
    errcodes: Family<ErrcodeLabels, Counter>,
    wechat_seconds: Family<ApiLabels, Histogram, fn() -> Histogram>,
    verifications: Family<Outcome, Counter>,
    verified_cache: Family<Outcome, Counter>,
    connections: Family<ListenerLabel, Gauge>,
    reloads: Family<Outcome, Counter>,
    last_reload: Gauge<f64, AtomicU64>,
    wechat_in_flight: Family<ApiLabel, Gauge>,
    wechat_shed: Family<ApiLabels, Counter>,
    breaker_open: Family<ApiLabel, Gauge>,
}

static METRICS: LazyLock<Metrics> = LazyLock::new(Metrics::new);

impl Metrics {
    fn new() -> Self {
        let m = Self {
            registry: Registry::with_prefix("wxgate"),
            requests: Family::default(),
            request_seconds: Family::new_with_constructor(latency_histogram),
            upstream_seconds: Family::new_with_constructor(latency_histogram),
            response_bytes: Family::default(),
            logins: Family::default(),
            errcodes: Family::default(),
            wechat_seconds: Family::new_with_constructor(latency_histogram),
            verifications: Family::default(),
            verified_cache: Family::default(),
            connections: Family::default(),
            reloads: Family::default(),
            last_reload: Gauge::default(),
            wechat_in_flight: Family::default(),
            wechat_shed: Family::default(),
            breaker_open: Family::default(),
        };
        let mut registry = Registry::with_prefix("wxgate");
        registry.register(
            "requests",
            "Requests answered, by route (or endpoint) and status class",
            m.requests.clone(),
        );
        registry.register(
            "request_duration_seconds",
            "Time from the request head to the end of the response body",
            m.request_seconds.clone(),
        );
        registry.register(
            "upstream_duration_seconds",
            "Time from forwarding to the upstream's response head",
            m.upstream_seconds.clone(),
        );
        registry.register(
            "response_body_bytes",
            "Response body bytes sent, by route",
            m.response_bytes.clone(),
        );
        registry.register(
            "logins",
            "Login attempts by outcome (ok, or the error answered)",
            m.logins.clone(),
        );
        registry.register(
            "wechat_errcodes",
            "Non-zero errcodes WeChat answered, by API and class",
            m.errcodes.clone(),
        );
        registry.register(
            "wechat_request_duration_seconds",
            "WeChat API calls by API and outcome",
            m.wechat_seconds.clone(),
        );
        registry.register(
            "token_verifications",
            "Access token checks by outcome",
            m.verifications.clone(),
        );
        registry.register(
            "verified_token_cache",
            "Verified-token cache lookups (hit or miss)",
            m.verified_cache.clone(),
        );
        registry.register(
            "open_connections",
            "Client connections currently open, by listener",
            m.connections.clone(),
        );
        registry.register(
            "config_reloads",
            "Configuration reloads by result",
            m.reloads.clone(),
        );
        registry.register(
            "config_last_reload_success_timestamp_seconds",
            "Unix time of the last successful configuration load",
            m.last_reload.clone(),
        );
        registry.register(
            "wechat_in_flight",
            "WeChat API calls in flight, by API",
            m.wechat_in_flight.clone(),
        );
        registry.register(
            "wechat_shed",
            "WeChat calls answered locally without calling out, by API and reason",
            m.wechat_shed.clone(),
        );
        registry.register(
            "wechat_circuit_open",
            "1 while the API's WeChat circuit breaker is open or probing, by API",
            m.breaker_open.clone(),
        );
        Self { registry, ..m }
    }
}

/// Per-route handles, made when a configuration is built.
pub struct RouteMetrics {
    label: String,
    requests: [Counter; 5],
    seconds: [Histogram; 5],
    upstream: Histogram,
    bytes: Counter,
}

impl RouteMetrics {
    /// Handles for `route` (a route prefix, `endpoint:login`, or `-` for unrouted requests).
    pub fn new(route: &str) -> Arc<Self> {
        let m = &*METRICS;
        let labels = |class| RouteClass {
            route: route.to_string(),
            class,
        };
        let route_label = RouteLabel {
            route: route.to_string(),
        };
        Arc::new(Self {
            label: route.to_string(),
            requests: CLASSES.map(|c| m.requests.get_or_create_owned(&labels(c))),
            seconds: CLASSES.map(|c| m.request_seconds.get_or_create_owned(&labels(c))),
            upstream: m.upstream_seconds.get_or_create_owned(&route_label),
            bytes: m.response_bytes.get_or_create_owned(&route_label),
        })
    }

    /// The route label: a prefix, `endpoint:login`…, or `-`.
    pub fn label(&self) -> &str {
        &self.label
    }

    pub fn record(&self, status: u16, total: Duration, bytes: u64) {
        let class = usize::from(status / 100).clamp(1, 5) - 1;
        self.requests[class].inc();
        self.seconds[class].observe(total.as_secs_f64());
        if bytes > 0 {
            self.bytes.inc_by(bytes);
        }
    }

    pub fn upstream(&self, elapsed: Duration) {
        self.upstream.observe(elapsed.as_secs_f64());
    }
}

/// A login's outcome: `ok` or the error code answered.
pub(crate) fn login(outcome: &'static str) {
    METRICS.logins.get_or_create(&Outcome { outcome }).inc();
}

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

pub(crate) fn render() -> String {
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
