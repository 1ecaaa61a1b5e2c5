//! The request path, as named phases: admit (framing and limits) → canonical path →
//! gateway endpoint or route → authenticate → forward → respond, with one access-log line.

use std::borrow::Cow;
use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use http::header::{HeaderValue, CONTENT_LENGTH, HOST, TRANSFER_ENCODING};
use http::{HeaderMap, Method, Request, Response, StatusCode, Version};
use hyper::body::Incoming;

use crate::access::{Logged, Record};
use crate::authn::{self, Identity};
use crate::body::{GuardedBody, ResBody};
use crate::clientip::{self, ClientAddr};
use crate::endpoints::{self, Call, Endpoint};
use crate::error::{Blame, GatewayError};
use crate::forward::{self, Hop, X_REQUEST_ID};
use crate::gateway::{Gateway, Runtime};
use crate::metrics::RouteMetrics;
use crate::routes::{AuthMode, Miss, Route};
use crate::settings::ServerSettings;
use crate::verified::ConnMemo;
use crate::{headers, path, tokens, upgrade};

/// What the server knows about the connection a request came on; its requests share it.
pub struct Conn {
    pub peer: SocketAddr,
    pub tls: bool,
    /// The peer's IP as a header value, made once per connection: it is what
    /// `X-Forwarded-For` and `X-Real-IP` say for a client that is not a trusted proxy.
    pub peer_value: HeaderValue,
    /// The last token proved on this connection.
    pub memo: ConnMemo,
}

impl Conn {
    pub fn new(peer: SocketAddr, tls: bool) -> Self {
        let peer_value = HeaderValue::from_str(&peer.ip().to_string())
            .unwrap_or_else(|_| HeaderValue::from_static("-"));
        Self {
            peer,
            tls,
            peer_value,
            memo: ConnMemo::default(),
        }
    }
}

/// Facts gathered along the way for the access log.
#[derive(Default)]
struct Trail {
    openid: Option<String>,
    upstream: Option<Duration>,
    metrics: Option<Arc<RouteMetrics>>,
}

/// Handles one request. Everything that needs no waiting (admission, routing, the token,
/// encoding the upstream head) runs here, while hyper hands the request over: the client's
/// head is released before hyper next reads from the connection, so hyper reuses its read
/// buffer instead of allocating another, and the returned future holds only what the wait
/// needs.
pub fn handle(
    gateway: Arc<Gateway>,
    conn: Arc<Conn>,
    request: Request<Incoming>,
) -> impl Future<Output = Result<Response<Logged<ResBody>>, Infallible>> + Send {
    let started = Instant::now();
    let runtime = gateway.runtime();
    let client = clientip::derive(
        conn.peer.ip(),
        request.headers(),
        &runtime.settings.server.trusted_proxies,
    );
    let request_id = request
        .headers()
        .get(X_REQUEST_ID)
        .filter(|v| headers::acceptable_request_id(v))
        .cloned()
        .unwrap_or_else(new_request_id);
    let method = request.method().clone();
    // The path only: the query string may hold anything and is never logged.
    let log_path = request.uri().path().to_string();
    let mut trail = Trail::default();
    let next = prepare(
        &gateway,
        &runtime,
        &conn,
        client,
        &request_id,
        request,
        &mut trail,
    );
    async move {
        let result = match next {
            Ok(Next::Endpoint(call)) => call.answer(&gateway, &runtime, client).await,
            Ok(Next::Forward(forward)) => forward.send(&runtime, &mut trail).await,
            Err(e) => Err(e),
        };
        let mut response = result.unwrap_or_else(|e| {
            match e.blame() {
                Blame::Client => tracing::debug!(error = %e, "request refused"),
                Blame::Dependency => tracing::warn!(error = %e, "dependency failed"),
                Blame::Gateway => tracing::error!(error = %e, "gateway error"),
            }
            e.into_response()
        });
        response
            .headers_mut()
            .insert(X_REQUEST_ID, request_id.clone());
        let record = Record {
            started,
            request_id,
            client_ip: client.ip,
            method,
            path: log_path,
            status: response.status().as_u16(),
            upstream: trail.upstream,
            openid: trail.openid,
            metrics: trail
                .metrics
                .unwrap_or_else(|| runtime.unrouted_metrics.clone()),
        };
        Ok(response.map(|body| Logged::new(body, record)))
    }
}

type Answer = Result<Response<ResBody>, GatewayError>;

/// What is left of a request once it is admitted: an endpoint to answer it, or the wait
/// for the route's upstream.
enum Next {
    Endpoint(EndpointCall),
    Forward(Forward),
}

/// A request for one of the gateway's own endpoints.
struct EndpointCall {
    endpoint: Endpoint,
    request: Request<Incoming>,
    deadline: tokio::time::Instant,
}

impl EndpointCall {
    async fn answer(self, gateway: &Arc<Gateway>, runtime: &Runtime, client: ClientAddr) -> Answer {
        let call = Call {
            gateway,
            runtime,
            client,
            deadline: self.deadline,
        };
        // Boxed: the endpoints' futures are large, and the proxy path should not carry
        // their size in every request's state.
        Box::pin(endpoints::handle(self.endpoint, call, self.request)).await
    }
}

/// A request ready for its route's upstream: the head is encoded, the body not yet read.
struct Forward {
    route: Arc<Route>,
    outgoing: crate::upstream::Outgoing,
    body: GuardedBody,
    path_and_query: String,
    /// A WebSocket upgrade wxgate lets through, waiting for the upstream's 101.
    upgrade: Option<upgrade::Pending>,
}

/// Everything up to the first wait: admission, the canonical path, the endpoint or route,
/// the token, and the upstream head.
fn prepare(
    gateway: &Gateway,
    runtime: &Runtime,
    conn: &Conn,
    client: ClientAddr,
    request_id: &HeaderValue,
    mut request: Request<Incoming>,
    trail: &mut Trail,
) -> Result<Next, GatewayError> {
    let settings = &runtime.settings;
    let deadline = tokio::time::Instant::now() + settings.server.request_timeout;
    let length = admit(&request, &settings.server)?;
    let canonical = path::canonicalize(request.uri().path()).map_err(GatewayError::InvalidPath)?;
    if let Some(endpoint) = Endpoint::find(&canonical, &settings.auth.endpoint_prefix) {
        trail.metrics = runtime.endpoint_metrics.get(endpoint as usize).cloned();
        return Ok(Next::Endpoint(EndpointCall {
            endpoint,
            request,
            deadline,
        }));
    }
    let host = if settings.routes.has_hosts() {
        request_host(&request)
    } else {
        None
    };
    let route = settings
        .routes
        .find(&canonical, host.as_deref(), request.method())
        .map_err(|miss| match miss {
            Miss::NoRoute => GatewayError::NoRoute,
            Miss::Method(allowed) => GatewayError::MethodNotAllowed(allowed),
        })?;
    trail.metrics = runtime.route_metrics.get(route.index).cloned();
    if length.is_some_and(|n| n > route.max_body_bytes) {
        return Err(GatewayError::PayloadTooLarge);
    }
    let identity = authenticate(gateway, runtime, route, request.headers(), &conn.memo)?;
    if settings.log.openid {
        trail.openid = identity.as_ref().map(|i| i.openid.clone());
    }
    let mut path_and_query = route.upstream_path(&canonical).to_string();
    if let Some(query) = request.uri().query() {
        path_and_query.push('?');
        path_and_query.push_str(query);
    }
    let websocket = route.websocket && upgrade::is_websocket(request.headers(), request.version());
    let leeway = settings.auth.leeway;
    let upgrade = websocket
        .then(|| upgrade::Pending::new(&mut request, identity.as_deref(), leeway, &gateway.store))
        .transpose()?;
    let (parts, body) = request.into_parts();
    let original_host = original_host(&parts);
    let hop = Hop {
        client,
        peer: conn.peer.ip(),
        peer_value: &conn.peer_value,
        proto: if conn.tls { "https" } else { "http" },
        host: original_host.as_deref(),
        request_id,
    };
    let outgoing = forward::outgoing(&parts, &settings.auth, identity.as_deref(), &hop, websocket)?;
    // The client's head is encoded: its memory (hyper's read buffer) is not held any longer.
    Ok(Next::Forward(Forward {
        route: route.clone(),
        outgoing,
        body: GuardedBody::new(body, route.max_body_bytes, deadline),
        path_and_query,
        upgrade,
    }))
}

impl Forward {
    async fn send(self, runtime: &Runtime, trail: &mut Trail) -> Answer {
        let (mut response, elapsed) = runtime
            .forwarder
            .send(&self.route, &self.outgoing, self.body, &self.path_and_query)
            .await?;
        trail.upstream = Some(elapsed);
        if response.status() == StatusCode::SWITCHING_PROTOCOLS {
            // Only an upgrade the client asked for, and wxgate let through, may switch
            // protocols, and only by completing its handshake. A refused 101's connection
            // is dropped with the response, never pooled.
            let pending = self.upgrade.ok_or(GatewayError::UpstreamUnavailable)?;
            let switched = response
                .body_mut()
                .take_upgrade()
                .ok_or(GatewayError::UpstreamUnavailable)?;
            pending.open(switched)?;
            upgrade::restore_headers(response.headers_mut());
        }
        Ok(response.map(http_body_util::Either::Right))
    }
}

/// Request-level checks hyper leaves to us: the request target, `Host`, framing and limits.
/// Returns the declared `Content-Length`, if any.
fn admit(
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
fn request_host(request: &Request<Incoming>) -> Option<String> {
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
fn original_host(parts: &http::request::Parts) -> Option<Cow<'_, str>> {
    match parts.uri.authority() {
        // Never the userinfo an absolute-form target may carry.
        Some(authority) => Some(match authority.port() {
            Some(port) => Cow::Owned(format!("{}:{port}", authority.host())),
            None => Cow::Borrowed(authority.host()),
        }),
        None => parts.headers.get(HOST)?.to_str().ok().map(Cow::Borrowed),
    }
}

/// Applies the route's auth mode; returns the verified identity, if any.
fn authenticate(
    gateway: &Gateway,
    runtime: &Runtime,
    route: &Route,
    headers: &HeaderMap,
    memo: &ConnMemo,
) -> Result<Option<Arc<Identity>>, GatewayError> {
    if route.auth == AuthMode::None {
        return Ok(None);
    }
    let auth = &runtime.settings.auth;
    let Some(credential) = authn::credential(headers, &auth.token_headers)? else {
        return match route.auth {
            AuthMode::Optional => Ok(None),
            _ => Err(GatewayError::MissingToken),
        };
    };
    let identity = authn::verify(gateway, runtime, credential.token, Some(memo))?;
    if let Some(apps) = &route.apps {
        // A token that names no mini-program is of none of them.
        if !identity.appid.as_ref().is_some_and(|a| apps.contains(a)) {
            return Err(GatewayError::AppNotAllowed);
        }
    }
    if route.auth == AuthMode::Phone && identity.phone.is_none() {
        // The phone claim arrives with the token `/auth/phone` issues; older tokens lack it.
        return Err(GatewayError::PhoneRequired);
    }
    Ok(Some(identity))
}

/// A request id unique to this process: a random prefix chosen once, then a counter. Ids
/// only need to be unique and unguessable enough to correlate logs, not secret, so the hot
/// path does not draw from the system RNG for each request.
fn new_request_id() -> HeaderValue {
    use std::sync::atomic::{AtomicU64, Ordering};
    use std::sync::LazyLock;
    static PREFIX: LazyLock<String> = LazyLock::new(|| tokens::random_id(6));
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    // The prefix, then the counter as 8 (or more) hex digits, without the formatter.
    let mut id = Vec::with_capacity(PREFIX.len() + 16);
    id.extend_from_slice(PREFIX.as_bytes());
    let digits = (64 - n.leading_zeros()).div_ceil(4).max(8);
    for shift in (0..digits).rev() {
        id.push(b"0123456789abcdef"[((n >> (shift * 4)) & 0xf) as usize]);
    }
    HeaderValue::from_maybe_shared(bytes::Bytes::from(id))
        .unwrap_or_else(|_| HeaderValue::from_static("-"))
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::headers::test_map as map;

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
