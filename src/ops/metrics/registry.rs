//! The registry: every metric family wxgate exports, its labels, name and help text.

use std::sync::atomic::AtomicU64;
use std::sync::LazyLock;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

/// Seconds: 0.5 ms to 10 s, for request and dependency latencies.
const LATENCY_BUCKETS: [f64; 14] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(super) struct RouteClass {
    pub(super) route: String,
    pub(super) class: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(super) struct RouteLabel {
    pub(super) route: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(super) struct ErrcodeLabels {
    pub(super) api: &'static str,
    pub(super) errcode_class: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(super) struct ApiLabels {
    pub(super) api: &'static str,
    pub(super) outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(super) struct ApiLabel {
    pub(super) api: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(super) struct Outcome {
    pub(super) outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(super) struct ListenerLabel {
    pub(super) listener: &'static str,
}

fn latency_histogram() -> Histogram {
    Histogram::new(LATENCY_BUCKETS)
}

pub(super) struct Metrics {
    pub(super) registry: Registry,
    pub(super) requests: Family<RouteClass, Counter>,
    pub(super) request_seconds: Family<RouteClass, Histogram, fn() -> Histogram>,
    pub(super) upstream_seconds: Family<RouteLabel, Histogram, fn() -> Histogram>,
    pub(super) response_bytes: Family<RouteLabel, Counter>,
    pub(super) logins: Family<Outcome, Counter>,
    pub(super) errcodes: Family<ErrcodeLabels, Counter>,
    pub(super) wechat_seconds: Family<ApiLabels, Histogram, fn() -> Histogram>,
    pub(super) verifications: Family<Outcome, Counter>,
    pub(super) verified_cache: Family<Outcome, Counter>,
    pub(super) connections: Family<ListenerLabel, Gauge>,
    pub(super) parked: Gauge,
    pub(super) reloads: Family<Outcome, Counter>,
    pub(super) last_reload: Gauge<f64, AtomicU64>,
    pub(super) wechat_in_flight: Family<ApiLabel, Gauge>,
    pub(super) wechat_shed: Family<ApiLabels, Counter>,
    pub(super) breaker_open: Family<ApiLabel, Gauge>,
    pub(super) heap_allocated: Gauge,
    pub(super) heap_resident: Gauge,
    pub(super) runtimes: Gauge,
}

pub(super) static METRICS: LazyLock<Metrics> = LazyLock::new(Metrics::new);

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
            parked: Gauge::default(),
            reloads: Family::default(),
            last_reload: Gauge::default(),
            wechat_in_flight: Family::default(),
            wechat_shed: Family::default(),
            heap_allocated: Gauge::default(),
            heap_resident: Gauge::default(),
            runtimes: Gauge::default(),
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
            "parked_connections",
            "Idle HTTP/1 keep-alive connections parked (open, their buffers freed)",
            m.parked.clone(),
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
        registry.register(
            "config_runtimes",
            "Configurations in memory: the current one, plus each earlier one while a request or tunnel started under it lasts",
            m.runtimes.clone(),
        );
        registry.register(
            "heap_allocated_bytes",
            "Bytes the gateway has allocated and not freed, as its allocator counts them (0 when the allocator does not say)",
            m.heap_allocated.clone(),
        );
        registry.register(
            "heap_resident_bytes",
            "Bytes of physical memory the allocator holds, its free pages included (0 when the allocator does not say)",
            m.heap_resident.clone(),
        );
        Self { registry, ..m }
    }
}
