//! The path canonicaliser and the route matcher, on any request path.
//!
//! Input: one byte choosing the method and the `Host`, then the path.
//! Asserts: an accepted path is canonical (canonicalising it again gives the same bytes,
//! borrowed); the bytes forwarded upstream are canonical too; the route chosen for a path
//! is the route chosen for the bytes forwarded; and the route table picks what a plain
//! longest-prefix-on-a-segment-boundary search over the configured routes picks.
#![no_main]

use std::borrow::Cow;
use std::path::Path;
use std::sync::OnceLock;

use http::Method;
use libfuzzer_sys::fuzz_target;
use wxgate::canonicalize;
use wxgate::{Miss, Route};
use wxgate::settings::Settings;

/// Overlapping prefixes, a catch-all, method and host variants of one prefix, a stripped
/// prefix, and prefixes holding kept escapes and sub-delimiters.
const CONFIG: &str = r#"
[wechat]
api_base = "http://127.0.0.1:9"
[[wechat.apps]]
appid = "wx0123456789abcdef"
secret = "fuzz-app-secret"
[auth]
audience = "fuzz"
[[auth.keys]]
kid = "k1"
alg = "HS256"
secret = "fuzz-secret-0123456789abcdef-0123456789"
[[routes]]
prefix = "/"
upstream = "http://127.0.0.1:9000"
auth = "none"
[[routes]]
prefix = "/api"
upstream = "http://127.0.0.1:9001"
[[routes]]
prefix = "/api/public"
upstream = "http://127.0.0.1:9002"
auth = "none"
[[routes]]
prefix = "/api/v1"
upstream = "http://127.0.0.1:9003"
methods = ["GET", "HEAD"]
[[routes]]
prefix = "/api/v1"
upstream = "http://127.0.0.1:9004"
methods = ["POST"]
host = "a.example.com"
[[routes]]
prefix = "/api/v1"
upstream = "http://127.0.0.1:9005"
host = "b.example.com"
[[routes]]
prefix = "/svc"
upstream = "http://127.0.0.1:9006/base"
strip_prefix = true
[[routes]]
prefix = "/a%E4%B8%AD/x%3F"
upstream = "http://127.0.0.1:9007"
[[routes]]
prefix = "/x:y@z~"
upstream = "http://127.0.0.1:9008"
methods = ["DELETE"]
"#;

fn settings() -> &'static Settings {
    static SETTINGS: OnceLock<Settings> = OnceLock::new();
    SETTINGS.get_or_init(|| match wxgate::config::from_str(CONFIG, Path::new(".")) {
        Ok(settings) => settings,
        Err(e) => panic!("fuzz config: {e}"),
    })
}

const HOSTS: [Option<&str>; 4] = [
    None,
    Some("a.example.com"),
    Some("b.example.com"),
    Some("c.example.com"),
];

fn method(selector: u8) -> Method {
    match selector % 8 {
        0 => Method::GET,
        1 => Method::POST,
        2 => Method::HEAD,
        3 => Method::DELETE,
        4 => Method::PUT,
        5 => Method::OPTIONS,
        6 => Method::PATCH,
        _ => Method::from_bytes(b"PROPFIND").unwrap_or(Method::GET),
    }
}

/// The route a plain search picks: the longest prefix matching on a segment boundary
/// whose host fits; among routes of that prefix, the first in file order that allows the
/// method, else the methods they would allow.
fn reference(path: &str, host: Option<&str>, method: &Method) -> Result<usize, Vec<Method>> {
    let mut candidates: Vec<&Route> = settings()
        .routes
        .iter()
        .filter(|r| {
            let boundary = r.prefix == "/"
                || path == r.prefix
                || (path.len() > r.prefix.len()
                    && path.starts_with(r.prefix.as_str())
                    && path.as_bytes()[r.prefix.len()] == b'/');
            boundary && r.host.as_deref().is_none_or(|h| Some(h) == host)
        })
        .collect();
    let Some(longest) = candidates.iter().map(|r| r.prefix.len()).max() else {
        return Err(Vec::new());
    };
    candidates.retain(|r| r.prefix.len() == longest);
    candidates.sort_by_key(|r| r.index);
    let mut allowed = Vec::new();
    for route in candidates {
        match &route.methods {
            Some(methods) if !methods.contains(method) => allowed.extend(methods.iter().cloned()),
            _ => return Ok(route.index),
        }
    }
    Err(allowed)
}

/// The table's answer in the reference's terms.
fn chosen(path: &str, host: Option<&str>, method: &Method) -> Result<usize, Vec<Method>> {
    match settings().routes.find(path, host, method) {
        Ok(route) => Ok(route.index),
        Err(Miss::NoRoute) => Err(Vec::new()),
        Err(Miss::Method(allowed)) => Err(allowed),
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&selector, path)) = data.split_first() else {
        return;
    };
    // Request targets reach the gateway as `str` (hyper refuses anything else).
    let Ok(path) = std::str::from_utf8(path) else {
        return;
    };
    let Ok(canonical) = canonicalize(path) else {
        return;
    };
    match canonicalize(&canonical) {
        Ok(Cow::Borrowed(again)) if again == canonical => {}
        other => panic!("{path:?} -> {canonical:?} is not canonical: {other:?}"),
    }
    if let Cow::Borrowed(same) = &canonical {
        assert_eq!(*same, path, "borrowed but not the input");
    }
    let method = method(selector);
    let host = HOSTS[usize::from(selector >> 3) % HOSTS.len()];
    let picked = chosen(&canonical, host, &method);
    assert_eq!(
        picked,
        reference(&canonical, host, &method),
        "{canonical:?} {host:?} {method}"
    );
    if let Ok(route) = settings().routes.find(&canonical, host, &method) {
        let forwarded = route.upstream_path(&canonical);
        match canonicalize(forwarded) {
            Ok(Cow::Borrowed(_)) => {}
            other => panic!("forwarded {forwarded:?} (from {path:?}) is not canonical: {other:?}"),
        }
        if !route.strip_prefix {
            // What another hop with this table would make of the forwarded bytes.
            assert_eq!(forwarded, &*canonical);
            assert_eq!(chosen(forwarded, host, &method), picked, "{forwarded:?}");
        }
    }
});
