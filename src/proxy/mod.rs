//! The request path, as named phases: admit (framing and limits) → canonical path →
//! gateway endpoint or route → authenticate → forward → respond, with one access-log line.

pub(crate) mod access;
mod admit;
pub(crate) mod authn;
pub(crate) mod clientip;
pub(crate) mod forward;
pub(crate) mod headers;
pub(crate) mod outgoing;
pub(crate) mod path;
pub(crate) mod routes;
pub(crate) mod upgrade;
pub(crate) mod verified;

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use http::header::HeaderValue;
use http::{Request, Response, StatusCode};
use hyper::body::Incoming;

use crate::body::{GuardedBody, ResBody};
use crate::endpoints::{self, Call, Endpoint};
use crate::error::GatewayError;
use crate::gateway::{Gateway, Runtime};
use crate::ops::metrics::RouteMetrics;
use crate::tokens;
use access::{Logged, Record};
use clientip::ClientAddr;
use headers::X_REQUEST_ID;
use outgoing::Hop;
use routes::{Miss, Route};
use verified::ConnMemo;

/// What the server knows about the connection a request came on; its requests share it.
pub(crate) struct ClientConn {
    pub peer: SocketAddr,
    pub tls: bool,
    /// The peer's IP as a header value, made once per connection: it is what
    /// `X-Forwarded-For` and `X-Real-IP` say for a client that is not a trusted proxy.
    pub peer_value: HeaderValue,
    /// The last token proved on this connection.
    pub memo: ConnMemo,
}

impl ClientConn {
    pub(crate) fn new(peer: SocketAddr, tls: bool) -> Self {
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
pub(crate) fn handle(
    gateway: Arc<Gateway>,
    conn: Arc<ClientConn>,
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
    let next = prepare(&runtime, &conn, client, &request_id, request, &mut trail);
    async move {
        let result = match next {
            Ok(Next::Endpoint(call)) => call.answer(&runtime, client).await,
            Ok(Next::Forward(forward)) => forward.send(&runtime, &mut trail).await,
            Err(e) => Err(e),
        };
        let mut response = result.unwrap_or_else(crate::error::respond);
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

type Reply = Result<Response<ResBody>, GatewayError>;

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
    async fn answer(self, runtime: &Runtime, client: ClientAddr) -> Reply {
        let call = Call {
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
    runtime: &Runtime,
    conn: &ClientConn,
    client: ClientAddr,
    request_id: &HeaderValue,
    mut request: Request<Incoming>,
    trail: &mut Trail,
) -> Result<Next, GatewayError> {
    let settings = &runtime.settings;
    let deadline = tokio::time::Instant::now() + settings.server.request_timeout;
    let length = admit::admit(&request, &settings.server)?;
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
        admit::request_host(&request)
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
    let identity = authn::for_route(runtime, route, request.headers(), &conn.memo)?;
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
        .then(|| upgrade::Pending::new(&mut request, identity.as_deref(), leeway, &runtime.store))
        .transpose()?;
    let (parts, body) = request.into_parts();
    let original_host = admit::original_host(&parts);
    let hop = Hop {
        client,
        peer: conn.peer.ip(),
        peer_value: &conn.peer_value,
        proto: if conn.tls { "https" } else { "http" },
        host: original_host.as_deref(),
        request_id,
    };
    let outgoing =
        outgoing::outgoing(&parts, &settings.auth, identity.as_deref(), &hop, websocket)?;
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
    async fn send(self, runtime: &Runtime, trail: &mut Trail) -> Reply {
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
