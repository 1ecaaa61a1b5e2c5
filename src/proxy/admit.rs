//! Admission: request-level checks hyper leaves to the gateway (the target, `Host`,
//! framing and size limits), and the host a request addressed.

use std::borrow::Cow;

use http::header::{HeaderMap, CONTENT_LENGTH, HOST, TRANSFER_ENCODING};
use http::{Method, Request, Version};
use hyper::body::Incoming;

use crate::error::GatewayError;
use crate::settings::ServerSettings;

/// Request-level checks hyper leaves to us: the request target, `Host`, framing and limits.
/// Returns the declared `Content-Length`, if any.
pub(super) fn admit(
    request: &Request<Incoming>,
    limits: &ServerSettings,
) -> Result<Option<u64>, GatewayError> {
    if request.method() == Method::CONNECT {
        return Err(GatewayError::InvalidRequest("CONNECT is not supported"));
    }
    let uri = request.uri();
    if uri.authority().is_some_and(|a| a.as_str().contains('@')) {
        return Err(GatewayError::InvalidRequest(
            "the request target must not carry userinfo",
        ));
    }
    let uri_len = uri.path_and_query().map_or(0, |pq| pq.as_str().len())
        + uri.authority().map_or(0, |a| a.as_str().len())
        + uri.scheme_str().map_or(0, |s| s.len() + 3);
    if uri_len > limits.max_uri_bytes {
        return Err(GatewayError::UriTooLong);
    }
    let headers = request.headers();
    if headers.len() > limits.max_headers {
        return Err(GatewayError::HeadersTooLarge);
    }
    // One pass: the head's size, and whether the headers the framing rules name are there.
    let (mut header_bytes, mut hosts, mut framed, mut sized) = (0, 0, false, false);
    for (name, value) in headers {
        header_bytes += name.as_str().len() + value.len() + 4;
        if name == HOST {
            hosts += 1;
            // `admin.example.com@api.example.com`: routing would read one host and
            // `X-Forwarded-Host` carry another (RFC 9110 4.2.4: userinfo is an error).
            if value.as_bytes().contains(&b'@') {
                return Err(GatewayError::InvalidRequest(
                    "the Host must not carry userinfo",
                ));
            }
        } else if name == TRANSFER_ENCODING {
            framed = true;
        } else if name == CONTENT_LENGTH {
            sized = true;
        }
    }
    if header_bytes > limits.max_header_bytes {
        return Err(GatewayError::HeadersTooLarge);
    }
    if hosts > 1 || (hosts == 0 && request.version() == Version::HTTP_11) {
        return Err(GatewayError::BadFraming(
            "exactly one Host header is required",
        ));
    }
    if framed {
        check_framing(headers)?;
    }
    let length = if sized { content_length(headers) } else { None };
    if length.is_some_and(|n| n > limits.max_body_bytes) {
        return Err(GatewayError::PayloadTooLarge);
    }
    Ok(length)
}

/// A `Transfer-Encoding` must be exactly one `chunked`, and never beside `Content-Length`
/// (RFC 9112 6.1 and 6.3): anything else could be read two ways by two parsers.
fn check_framing(headers: &HeaderMap) -> Result<(), GatewayError> {
    let mut codings = headers.get_all(TRANSFER_ENCODING).iter();
    let Some(first) = codings.next() else {
        return Ok(());
    };
    let only_chunked = codings.next().is_none()
        && first
            .to_str()
            .is_ok_and(|v| v.trim().eq_ignore_ascii_case("chunked"));
    if !only_chunked {
        return Err(GatewayError::BadFraming(
            "Transfer-Encoding must be exactly \"chunked\"",
        ));
    }
    if headers.contains_key(CONTENT_LENGTH) {
        return Err(GatewayError::BadFraming(
            "Transfer-Encoding and Content-Length together",
        ));
    }
    Ok(())
}

fn content_length(headers: &HeaderMap) -> Option<u64> {
    headers
        .get(CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse().ok())
}

/// The host a request addressed: the target's authority (HTTP/2, absolute form) or `Host`,
/// lower-case without the port.
pub(super) fn request_host(request: &Request<Incoming>) -> Option<String> {
    let raw = match request.uri().authority() {
        Some(authority) => authority.host().to_string(),
        None => {
            let host = request.headers().get(HOST)?.to_str().ok()?;
            host.parse::<http::uri::Authority>()
                .ok()?
                .host()
                .to_string()
        }
    };
    Some(raw.to_ascii_lowercase())
}

/// The host as the client wrote it (with any port), for `X-Forwarded-Host`.
pub(super) fn original_host(parts: &http::request::Parts) -> Option<Cow<'_, str>> {
    match parts.uri.authority() {
        // Never the userinfo an absolute-form target may carry.
        Some(authority) => Some(match authority.port() {
            Some(port) => Cow::Owned(format!("{}:{port}", authority.host())),
            None => Cow::Borrowed(authority.host()),
        }),
        None => parts.headers.get(HOST)?.to_str().ok().map(Cow::Borrowed),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::proxy::headers::test_map as map;

    #[test]
    fn only_a_single_plain_chunked_coding_is_accepted() {
        assert!(check_framing(&map(&[("transfer-encoding", "chunked")])).is_ok());
        assert!(check_framing(&map(&[("transfer-encoding", "Chunked")])).is_ok());
        for bad in [
            vec![("transfer-encoding", "gzip, chunked")],
            vec![("transfer-encoding", "chunked, chunked")],
            vec![
                ("transfer-encoding", "chunked"),
                ("transfer-encoding", "chunked"),
            ],
            vec![("transfer-encoding", "identity")],
            vec![("transfer-encoding", "chunked"), ("content-length", "5")],
        ] {
            assert!(check_framing(&map(&bad)).is_err(), "{bad:?}");
        }
    }
}
