//! Header hygiene: hop-by-hop removal (RFC 9110 7.6.1) and identity stripping, both done
//! before wxgate adds its own headers so that a client can neither add nor delete them.

use http::header::{HeaderMap, HeaderName, CONNECTION};
use http::HeaderValue;

/// Headers wxgate writes on every forwarded request (and `X-Request-Id` on every answer).
pub(crate) const X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
pub(crate) const X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
pub(crate) const X_FORWARDED_HOST: HeaderName = HeaderName::from_static("x-forwarded-host");
pub(crate) const X_REAL_IP: HeaderName = HeaderName::from_static("x-real-ip");
pub(crate) const X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");
pub(crate) const FORWARDED: HeaderName = HeaderName::from_static("forwarded");

/// Hop-by-hop headers of RFC 9110 7.6.1, plus the non-standard ones proxies still see.
pub(crate) const HOP_BY_HOP: [&str; 9] = [
    "connection",
    "keep-alive",
    "proxy-connection",
    "proxy-authenticate",
    "proxy-authorization",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
];

/// Whether `name` is hop-by-hop by definition (not by being named in `Connection`): the
/// list above, or any other `Proxy-*` header, which addresses a proxy, never the service.
pub(crate) fn is_hop_by_hop(name: &HeaderName) -> bool {
    let name = name.as_str();
    HOP_BY_HOP.contains(&name) || name.starts_with("proxy-")
}

/// The headers the `Connection` header names: hop-by-hop for this message only.
pub(crate) fn connection_named(headers: &HeaderMap) -> Vec<HeaderName> {
    if !headers.contains_key(CONNECTION) {
        return Vec::new();
    }
    headers
        .get_all(CONNECTION)
        .iter()
        // Split as bytes: one non-ASCII byte in the value must not hide the names beside it.
        .flat_map(|v| v.as_bytes().split(|b| *b == b','))
        .filter_map(|token| HeaderName::from_bytes(token.trim_ascii()).ok())
        .collect()
}

/// Removes hop-by-hop headers and every header the `Connection` header names.
pub(crate) fn remove_hop_by_hop(headers: &mut HeaderMap) {
    for name in connection_named(headers) {
        headers.remove(name);
    }
    // One pass over the (few) names present instead of a lookup per hop-by-hop name.
    if !headers.keys().any(is_hop_by_hop) {
        return;
    }
    let names: Vec<HeaderName> = headers
        .keys()
        .filter(|n| is_hop_by_hop(n))
        .cloned()
        .collect();
    for name in names {
        headers.remove(name);
    }
}

/// Whether `name` folds (case-insensitive, `_` as `-`) to one of `strip`, which holds folded
/// names: an identity header in some spelling. WSGI, CGI and PHP map `X_OpenId` and
/// `X-OpenId` to one variable.
pub(crate) fn is_identity(name: &HeaderName, strip: &[String]) -> bool {
    strip.iter().any(|s| folds_to(name.as_str(), s))
}

/// The forwarding headers wxgate writes itself, folded.
const FORWARDING: [&str; 5] = [
    "x-forwarded-for",
    "x-forwarded-proto",
    "x-forwarded-host",
    "x-real-ip",
    "x-request-id",
];

/// Whether `name` is an underscore spelling of a forwarding header (`X_Real_IP`). CGI, PHP
/// and WSGI stacks fold it into the same variable as the real one, which wxgate replaces
/// or vouches for; no proxy sends these spellings, so they are removed from everyone.
pub(crate) fn is_forwarding_alias(name: &HeaderName) -> bool {
    let name = name.as_str();
    name.contains('_') && FORWARDING.iter().any(|f| folds_to(name, f))
}

/// `name` is already lower-case (the `http` crate guarantees it); `folded` is lower-case with `-`.
fn folds_to(name: &str, folded: &str) -> bool {
    name.len() == folded.len()
        && name
            .bytes()
            .zip(folded.bytes())
            .all(|(a, b)| a == b || (a == b'_' && b == b'-'))
}

/// `X-Request-Id` values kept from clients: `^[A-Za-z0-9._-]{1,128}$`.
pub(crate) fn acceptable_request_id(value: &HeaderValue) -> bool {
    let bytes = value.as_bytes();
    (1..=128).contains(&bytes.len())
        && bytes
            .iter()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

/// A header map from `(name, value)` pairs, for unit tests across the crate.
#[cfg(test)]
pub(crate) fn test_map(pairs: &[(&str, &str)]) -> HeaderMap {
    let mut m = HeaderMap::new();
    for (k, v) in pairs {
        m.append(
            HeaderName::from_bytes(k.as_bytes()).expect("name"),
            HeaderValue::from_str(v).expect("value"),
        );
    }
    m
}

#[cfg(test)]
mod tests {
    use super::*;

    use super::test_map as map;

    #[test]
    fn identity_headers_are_stripped_in_every_spelling() {
        let h = map(&[
            ("X-OpenId", "a"),
            ("x-openid", "b"),
            ("X_OPENID", "c"),
            ("x_OpenId", "d"),
            ("X-Openid", "e"),
            ("X-OpenIdx", "keep"),
            ("Accept", "keep"),
        ]);
        let strip = ["x-openid".to_string()];
        let kept: Vec<&str> = h
            .keys()
            .filter(|name| !is_identity(name, &strip))
            .map(|name| name.as_str())
            .collect();
        assert_eq!(kept, vec!["x-openidx", "accept"], "{h:?}");
    }

    #[test]
    fn underscore_spellings_of_forwarding_headers_are_aliases() {
        for alias in [
            "X_Real_IP",
            "x_forwarded_for",
            "X-Forwarded_Proto",
            "X_FORWARDED_HOST",
            "x_request_id",
        ] {
            let name = HeaderName::from_bytes(alias.as_bytes()).expect("name");
            assert!(is_forwarding_alias(&name), "{alias}");
        }
        for other in [
            "x-real-ip",
            "x-forwarded-for",
            "x_custom_header",
            "x_real_ipv6",
        ] {
            let name = HeaderName::from_bytes(other.as_bytes()).expect("name");
            assert!(!is_forwarding_alias(&name), "{other}");
        }
    }

    #[test]
    fn connection_named_headers_go_with_the_hop_by_hop_set() {
        let mut h = map(&[
            ("Connection", "keep-alive, X-Custom"),
            ("Connection", "close"),
            ("X-Custom", "1"),
            ("Keep-Alive", "timeout=5"),
            ("TE", "trailers"),
            ("Upgrade", "h2c"),
            ("Proxy-Authorization", "Basic x"),
            ("Transfer-Encoding", "chunked"),
            ("Accept", "keep"),
        ]);
        remove_hop_by_hop(&mut h);
        assert_eq!(
            h.keys().map(|k| k.as_str()).collect::<Vec<_>>(),
            vec!["accept"]
        );
    }

    #[test]
    fn request_ids_are_kept_only_when_plain() {
        let ok = |s: &str| acceptable_request_id(&HeaderValue::from_str(s).expect("value"));
        assert!(ok("abc-123_x.y"));
        assert!(!ok(""));
        assert!(!ok("a b"));
        assert!(!ok(&"a".repeat(129)));
        assert!(!ok("x\"y"));
    }
}
