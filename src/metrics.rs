//! Process-wide counters rendered in the Prometheus text format on the admin listener.

use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering};

static REQUESTS_BY_CLASS: [AtomicU64; 5] = [const { AtomicU64::new(0) }; 5];

/// Counts a finished request by status class (1xx..5xx).
pub fn record_request(status: u16) {
    let class = usize::from(status / 100).clamp(1, 5) - 1;
    REQUESTS_BY_CLASS[class].fetch_add(1, Ordering::Relaxed);
}

pub fn render() -> String {
    let mut out = String::new();
    out.push_str("# HELP wxgate_requests_total Requests answered, by status class.\n");
    out.push_str("# TYPE wxgate_requests_total counter\n");
    for (i, counter) in REQUESTS_BY_CLASS.iter().enumerate() {
        let _ = writeln!(
            out,
            "wxgate_requests_total{{class=\"{}xx\"}} {}",
            i + 1,
            counter.load(Ordering::Relaxed)
        );
    }
    out
}
