//! Header hygiene: hop-by-hop removal (RFC 9110 7.6.1) and identity stripping, both done
//! before wxgate adds its own headers so that a client can neither add nor delete them.

use http::header::{HeaderMap, HeaderName, CONNECTION};
use http::HeaderValue;

/// Hop-by-hop headers of RFC 9110 7.6.1, plus the non-standard ones proxies still see.
pub const HOP_BY_HOP: [&str; 9] = [
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

/// Removes hop-by-hop headers and every header the `Connection` header names.
pub fn remove_hop_by_hop(headers: &mut HeaderMap) {
    if headers.contains_key(CONNECTION) {
        let named: Vec<HeaderName> = headers
            .get_all(CONNECTION)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .filter_map(|token| HeaderName::from_bytes(token.trim().as_bytes()).ok())
            .collect();
        for name in named {
            headers.remove(name);
        }
    }
    // One pass over the (few) names present instead of a lookup per hop-by-hop name.
    let hop = |name: &HeaderName| HOP_BY_HOP.contains(&name.as_str());
    if !headers.keys().any(hop) {
        return;
    }
    let names: Vec<HeaderName> = headers.keys().filter(|n| hop(n)).cloned().collect();
    for name in names {
        headers.remove(name);
    }
}

/// Removes every header whose name folds (case-insensitive, `_` as `-`) to one of `strip`,
/// which holds folded names. WSGI, CGI and PHP map `X_OpenId` and `X-OpenId` to one variable.
pub fn strip_identity(headers: &mut HeaderMap, strip: &[String]) {
    let doomed = |name: &HeaderName| strip.iter().any(|s| folds_to(name.as_str(), s));
    // The usual request carries none: look before allocating.
    if !headers.keys().any(doomed) {
        return;
    }
    let names: Vec<HeaderName> = headers.keys().filter(|n| doomed(n)).cloned().collect();
    for name in names {
        headers.remove(name);
    }
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
pub fn acceptable_request_id(value: &HeaderValue) -> bool {
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
        let mut h = map(&[
            ("X-OpenId", "a"),
            ("x-openid", "b"),
            ("X_OPENID", "c"),
            ("x_OpenId", "d"),
            ("X-Openid", "e"),
            ("X-OpenIdx", "keep"),
            ("Accept", "keep"),
        ]);
        strip_identity(&mut h, &["x-openid".to_string()]);
        assert_eq!(h.len(), 2, "{h:?}");
        assert!(h.contains_key("x-openidx") && h.contains_key("accept"));
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
