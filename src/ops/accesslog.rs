//! The access line: one per request, target `wxgate::access`, with the request id, client
//! IP, method, path (never the query), route, status, total and upstream milliseconds,
//! response body bytes, and the openid only with `[log] openid = true`. Tokens, codes and
//! query strings never appear: the path is logged without its query, and nothing else
//! carries client input.
//!
//! When the binary set up logging through [`logwriter`], the line is formatted here, as
//! `tracing_subscriber::fmt` would write it.

use std::net::IpAddr;
use std::time::Duration;

use crate::ops::logwriter::{self, Format};
use crate::proxy::access::Record;

thread_local! {
    static LINE: std::cell::RefCell<String> = const { std::cell::RefCell::new(String::new()) };
}

/// Writes `record`'s access line, when access lines are enabled.
pub(crate) fn write(record: &Record, total: Duration, bytes: u64, complete: bool) {
    if !tracing::enabled!(target: "wxgate::access", tracing::Level::INFO) {
        return;
    }
    if let Some(format) = logwriter::format() {
        // The same line `tracing` would write, formatted directly: this runs for every
        // request, and the generic formatter costs several times more.
        LINE.with_borrow_mut(|line| {
            line.clear();
            format_line(record, line, format, total, bytes, complete);
            logwriter::append(line.as_bytes());
        });
        return;
    }
    tracing::info!(
        target: "wxgate::access",
        request_id = record.request_id.to_str().unwrap_or(""),
        client_ip = %record.client_ip,
        method = %record.method,
        path = %record.path,
        route = record.metrics.label(),
        status = record.status,
        total_ms = total.as_secs_f64() * 1000.0,
        upstream_ms = record.upstream.map(|d| d.as_secs_f64() * 1000.0),
        bytes,
        complete,
        openid = record.openid.as_deref(),
    );
}

/// One access line in the format of `tracing_subscriber::fmt` (text, or JSON with
/// flattened fields), ending with a newline.
fn format_line(
    record: &Record,
    out: &mut String,
    format: Format,
    total: Duration,
    bytes: u64,
    complete: bool,
) {
    let request_id = record.request_id.to_str().unwrap_or("");
    let now = std::time::SystemTime::now();
    match format {
        Format::Text => {
            push_timestamp(out, now);
            out.push_str("  INFO wxgate::access: request_id=");
            push_debug_str(out, request_id);
            out.push_str(" client_ip=");
            push_ip(out, record.client_ip);
            out.push_str(" method=");
            out.push_str(record.method.as_str());
            out.push_str(" path=");
            push_escaped(out, &record.path, false);
            out.push_str(" route=");
            push_debug_str(out, record.metrics.label());
            push_measures(record, out, format, total, bytes, complete);
            if let Some(openid) = &record.openid {
                out.push_str(" openid=");
                push_debug_str(out, openid);
            }
        }
        Format::Json => {
            out.push_str("{\"timestamp\":\"");
            push_timestamp(out, now);
            out.push_str("\",\"level\":\"INFO\",\"request_id\":\"");
            push_escaped(out, request_id, true);
            out.push_str("\",\"client_ip\":\"");
            push_ip(out, record.client_ip);
            out.push_str("\",\"method\":\"");
            push_escaped(out, record.method.as_str(), true);
            out.push_str("\",\"path\":\"");
            push_escaped(out, &record.path, true);
            out.push_str("\",\"route\":\"");
            push_escaped(out, record.metrics.label(), true);
            out.push('"');
            push_measures(record, out, format, total, bytes, complete);
            if let Some(openid) = &record.openid {
                out.push_str(",\"openid\":\"");
                push_escaped(out, openid, true);
                out.push('"');
            }
            out.push_str(",\"target\":\"wxgate::access\"}");
        }
    }
    out.push('\n');
}

/// The unquoted fields, in either format: status, durations, bytes, completeness.
fn push_measures(
    record: &Record,
    out: &mut String,
    format: Format,
    total: Duration,
    bytes: u64,
    complete: bool,
) {
    // Each key with its separators, as one string: ` status=` or `,"status":`.
    let keys: &[&str; 5] = match format {
        Format::Text => &[
            " status=",
            " total_ms=",
            " upstream_ms=",
            " bytes=",
            " complete=",
        ],
        Format::Json => &[
            ",\"status\":",
            ",\"total_ms\":",
            ",\"upstream_ms\":",
            ",\"bytes\":",
            ",\"complete\":",
        ],
    };
    out.push_str(keys[0]);
    push_num(out, u64::from(record.status));
    out.push_str(keys[1]);
    push_ms(out, total);
    if let Some(upstream) = record.upstream {
        out.push_str(keys[2]);
        push_ms(out, upstream);
    }
    out.push_str(keys[3]);
    push_num(out, bytes);
    out.push_str(keys[4]);
    out.push_str(if complete { "true" } else { "false" });
}

/// `"text"` as `Debug` quotes it (the values here never need more than the quotes).
fn push_debug_str(out: &mut String, text: &str) {
    out.push('"');
    push_escaped(out, text, true);
    out.push('"');
}

/// Escapes quotes, backslashes and control characters (JSON-style); outside quotes
/// (`quoted` false) only control characters are escaped, so a line stays one line.
fn push_escaped(out: &mut String, text: &str, quoted: bool) {
    // The usual text (ids, paths, route labels) has nothing to escape.
    let plain = |b: u8| (0x20..0x7f).contains(&b) && !(quoted && (b == b'"' || b == b'\\'));
    if text.bytes().all(plain) {
        out.push_str(text);
        return;
    }
    for c in text.chars() {
        match c {
            '"' | '\\' if quoted => {
                out.push('\\');
                out.push(c);
            }
            c if c.is_control() => {
                use std::fmt::Write;
                let _ = write!(out, "\\u{:04x}", u32::from(c));
            }
            c => out.push(c),
        }
    }
}

fn push_num(out: &mut String, n: u64) {
    out.push_str(itoa::Buffer::new().format(n));
}

/// `n` in decimal, zero-padded to `width` digits.
fn push_padded(out: &mut String, n: u64, width: usize) {
    let mut buf = itoa::Buffer::new();
    let digits = buf.format(n);
    for _ in digits.len()..width {
        out.push('0');
    }
    out.push_str(digits);
}

/// Milliseconds with three decimals (microsecond resolution), as `{:.3}` would print them.
fn push_ms(out: &mut String, d: Duration) {
    let micros = u64::try_from(d.as_micros()).unwrap_or(u64::MAX);
    push_num(out, micros / 1000);
    out.push('.');
    push_padded(out, micros % 1000, 3);
}

fn push_ip(out: &mut String, ip: IpAddr) {
    match ip {
        IpAddr::V4(v4) => {
            for (i, octet) in v4.octets().into_iter().enumerate() {
                if i > 0 {
                    out.push('.');
                }
                push_num(out, u64::from(octet));
            }
        }
        IpAddr::V6(v6) => {
            use std::fmt::Write;
            let _ = write!(out, "{v6}");
        }
    }
}

/// RFC 3339 UTC with microseconds, as `tracing_subscriber`'s default timer writes it.
fn push_timestamp(out: &mut String, now: std::time::SystemTime) {
    thread_local! {
        /// The second last formatted, and its text up to the fraction ("…T12:34:56.").
        static SECOND: std::cell::RefCell<(u64, String)> =
            const { std::cell::RefCell::new((u64::MAX, String::new())) };
    }
    let since = now
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    SECOND.with_borrow_mut(|(secs, text)| {
        if *secs != since.as_secs() {
            *secs = since.as_secs();
            text.clear();
            push_second(text, *secs);
        }
        out.push_str(text);
    });
    push_padded(out, u64::from(since.subsec_micros()), 6);
    out.push('Z');
}

/// `YYYY-MM-DDTHH:MM:SS.` (UTC) for a Unix time.
fn push_second(out: &mut String, secs: u64) {
    let secs = secs as i64;
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    // Days since 1970-01-01 to a civil date (H. Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    let field = |out: &mut String, n: i64, width: usize, end: char| {
        push_padded(out, u64::try_from(n).unwrap_or(0), width);
        out.push(end);
    };
    field(out, year, 4, '-');
    field(out, month, 2, '-');
    field(out, day, 2, 'T');
    field(out, rem / 3600, 2, ':');
    field(out, rem % 3600 / 60, 2, ':');
    field(out, rem % 60, 2, '.');
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ops::metrics::RouteMetrics;
    use http::{HeaderValue, Method};
    use std::time::Instant;

    #[test]
    fn timestamps_are_rfc3339_utc() {
        let at = |secs| {
            let mut s = String::new();
            push_timestamp(&mut s, std::time::UNIX_EPOCH + Duration::from_secs(secs));
            s
        };
        assert_eq!(at(0), "1970-01-01T00:00:00.000000Z");
        assert_eq!(at(951_782_400), "2000-02-29T00:00:00.000000Z");
        assert_eq!(at(1_795_308_750), "2026-11-22T00:52:30.000000Z");
    }

    fn record(openid: Option<&str>) -> Record {
        Record {
            started: Instant::now(),
            request_id: HeaderValue::from_static("rid-1"),
            client_ip: IpAddr::from([127, 0, 0, 1]),
            method: Method::GET,
            path: "/api/x\"y".into(),
            status: 200,
            upstream: Some(Duration::from_micros(1500)),
            openid: openid.map(str::to_string),
            metrics: RouteMetrics::new("/api"),
        }
    }

    #[test]
    fn json_lines_parse_and_carry_every_field() {
        let mut line = String::new();
        format_line(
            &record(Some("o1")),
            &mut line,
            Format::Json,
            Duration::from_millis(2),
            11,
            true,
        );
        assert!(line.ends_with('\n'));
        let v: serde_json::Value = serde_json::from_str(&line).expect("one JSON object");
        assert_eq!(v["target"], "wxgate::access");
        assert_eq!(v["path"], "/api/x\"y");
        assert_eq!(v["route"], "/api");
        assert_eq!(v["status"], 200);
        assert_eq!(v["upstream_ms"], 1.5);
        assert_eq!(v["bytes"], 11);
        assert_eq!(v["openid"], "o1");
    }

    #[test]
    fn text_lines_look_like_tracing_lines() {
        let mut line = String::new();
        format_line(
            &record(None),
            &mut line,
            Format::Text,
            Duration::from_millis(2),
            0,
            false,
        );
        assert!(line.contains("  INFO wxgate::access: request_id=\"rid-1\" client_ip=127.0.0.1 method=GET path=/api/x\"y route=\"/api\" status=200 total_ms=2.000 upstream_ms=1.500 bytes=0 complete=false\n"), "{line}");
        assert!(!line.contains("openid"));
    }

    #[test]
    fn lines_escape_what_could_break_them() {
        let mut s = String::new();
        push_escaped(&mut s, "a\"b\\c\nd", true);
        assert_eq!(s, "a\\\"b\\\\c\\u000ad");
    }
}
