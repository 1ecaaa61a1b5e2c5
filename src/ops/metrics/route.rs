//! Per-route handles: a route's request, latency and byte series, looked up once per
//! configuration so that recording a request is a few atomic adds.

use std::sync::Arc;
use std::time::Duration;

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::histogram::Histogram;

use super::registry::{RouteClass, RouteLabel, METRICS};

const CLASSES: [&str; 5] = ["1xx", "2xx", "3xx", "4xx", "5xx"];

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
