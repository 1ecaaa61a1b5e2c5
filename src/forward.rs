//! Forwarding stage: the request upstream is rebuilt from a sanitised copy of the client's,
//! sent over a pooled keep-alive connection, and the response comes back without hop-by-hop
//! headers.

use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use http::header::{HeaderMap, HeaderName, HeaderValue, AUTHORIZATION, EXPECT, HOST};
use http::request::Parts;
use http::{Method, Request, Response, Version};
use http_body::Body;

use crate::authn::Identity;
use crate::body::GuardedBody;
use crate::clientip::ClientAddr;
use crate::error::GatewayError;
use crate::headers;
use crate::routes::{Route, RouteTable, Upstream};
use crate::settings::{AuthSettings, IdentityHeaders};
use crate::upstream::{self, Pool, UpstreamBody};

const X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
const X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
const X_FORWARDED_HOST: HeaderName = HeaderName::from_static("x-forwarded-host");
const X_REAL_IP: HeaderName = HeaderName::from_static("x-real-ip");
const X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");
const FORWARDED: HeaderName = HeaderName::from_static("forwarded");

/// Idle keep-alive connections kept per upstream target.
const MAX_IDLE_UPSTREAM_CONNECTIONS: usize = 128;
/// An idle upstream connection unused for this long is closed.
const UPSTREAM_IDLE_TIMEOUT: Duration = Duration::from_secs(60);

/// One connection pool per route target (each route has its own connect timeout), a
/// round-robin cursor over the route's upstreams, and which of them are ejected.
pub struct Forwarder {
    routes: Vec<RouteClient>,
    /// Time base for ejections.
    epoch: Instant,
}

struct RouteClient {
    /// Per target, in the route's order.
    pools: Vec<Arc<Pool>>,
    cursor: AtomicUsize,
    /// Per target: milliseconds since `epoch` until which it is skipped.
    ejected_until: Vec<AtomicU64>,
}

/// Methods whose repetition has no further effect (RFC 9110 9.2.2).
pub(crate) fn idempotent(method: &Method) -> bool {
    matches!(
        *method,
        Method::GET | Method::HEAD | Method::OPTIONS | Method::PUT | Method::DELETE | Method::TRACE
    )
}

impl Forwarder {
    pub fn new(routes: &RouteTable) -> Self {
        let mut clients: Vec<(usize, RouteClient)> = routes
            .iter()
            .map(|route| {
                let pools: Vec<Arc<Pool>> = route
                    .upstreams
                    .iter()
                    .map(|upstream| {
                        Pool::new(
                            &upstream.authority,
                            route.connect_timeout,
                            UPSTREAM_IDLE_TIMEOUT,
                            // Enough idle connections for steady traffic; a burst of
                            // thousands of clients must not leave thousands behind.
                            MAX_IDLE_UPSTREAM_CONNECTIONS,
                        )
                    })
                    .collect();
                let ejected_until = route.upstreams.iter().map(|_| AtomicU64::new(0)).collect();
                let route_client = RouteClient {
                    pools,
                    cursor: AtomicUsize::new(0),
                    ejected_until,
                };
                (route.index, route_client)
            })
            .collect();
        clients.sort_by_key(|(i, _)| *i);
        let all: Vec<Arc<Pool>> = clients
            .iter()
            .flat_map(|(_, c)| c.pools.iter().cloned())
            .collect();
        Pool::spawn_sweeper(&all);
        Self {
            routes: clients.into_iter().map(|(_, c)| c).collect(),
            epoch: Instant::now(),
        }
    }

    fn now_ms(&self) -> u64 {
        self.epoch.elapsed().as_millis() as u64
    }

    /// The next target in turn that is not ejected (or the next in turn when all are).
    fn pick(&self, rc: &RouteClient, tried: &[usize]) -> Option<usize> {
        let n = rc.ejected_until.len();
        let start = rc.cursor.fetch_add(1, Ordering::Relaxed);
        let now = self.now_ms();
        let fresh = |i: &usize| !tried.contains(i);
        let open = (0..n)
            .map(|k| (start + k) % n)
            .filter(fresh)
            .find(|&i| rc.ejected_until[i].load(Ordering::Relaxed) <= now);
        open.or_else(|| (0..n).map(|k| (start + k) % n).find(fresh))
    }

    /// Sends the prepared request; returns the upstream's response and how long it took.
    ///
    /// A target that refuses the connection is ejected for the route's `eject_for`. An
    /// idempotent request without a body, which never reached that target, is retried once
    /// on each other target.
    pub async fn send(
        &self,
        route: &Route,
        mut request: Request<GuardedBody>,
        path_and_query: &str,
    ) -> Result<(Response<UpstreamBody>, Duration), GatewayError> {
        let rc = self
            .routes
            .get(route.index)
            .ok_or(GatewayError::Internal("route without a client"))?;
        // Only what can be sent again is kept: a bodiless idempotent request.
        let replay = (route.upstreams.len() > 1
            && idempotent(request.method())
            && request.body().is_end_stream())
        .then(|| {
            (
                request.method().clone(),
                request.version(),
                request.headers().clone(),
            )
        });
        let mut tried: Vec<usize> = Vec::new();
        let started = Instant::now();
        loop {
            let Some(target) = self.pick(rc, &tried) else {
                return Err(GatewayError::UpstreamUnavailable);
            };
            tried.push(target);
            let upstream = &route.upstreams[target];
            let pool = &rc.pools[target];
            let mut target_path =
                String::with_capacity(upstream.base_path.len() + path_and_query.len());
            target_path.push_str(&upstream.base_path);
            target_path.push_str(path_and_query);
            request.headers_mut().insert(HOST, pool.host_header.clone());
            let result = tokio::time::timeout(
                route.response_timeout,
                upstream::send(pool, request, &target_path),
            )
            .await;
            match result {
                Ok(Ok(mut response)) => {
                    headers::remove_hop_by_hop(response.headers_mut());
                    return Ok((response, started.elapsed()));
                }
                Ok(Err(e)) if e.is_connect() => {
                    let until = self.now_ms() + route.eject_for.as_millis() as u64;
                    rc.ejected_until[target].store(until, Ordering::Relaxed);
                    tracing::warn!(upstream = %upstream, error = %e, seconds = route.eject_for.as_secs(), "upstream refused the connection; ejected");
                    match &replay {
                        Some((method, version, headers)) if tried.len() < route.upstreams.len() => {
                            let mut retry = Request::new(GuardedBody::empty());
                            *retry.method_mut() = method.clone();
                            *retry.version_mut() = *version;
                            *retry.headers_mut() = headers.clone();
                            request = retry;
                        }
                        _ => return Err(GatewayError::UpstreamUnavailable),
                    }
                }
                Ok(Err(e)) => return Err(classify(e, upstream)),
                Err(_) => {
                    tracing::warn!(upstream = %upstream, "upstream did not answer in time");
                    return Err(GatewayError::UpstreamTimeout);
                }
            }
        }
    }
}

/// A client-side body failure (too large, too slow) is the client's; the rest is upstream's.
fn classify(e: upstream::Error, upstream: &Upstream) -> GatewayError {
    match e {
        upstream::Error::Body(body_error) => body_error.into(),
        e => {
            tracing::warn!(upstream = %upstream, error = %e, "upstream request failed");
            GatewayError::UpstreamUnavailable
        }
    }
}

/// What the forwarded request says about the client and the hop.
pub struct Hop<'a> {
    pub client: ClientAddr,
    pub peer: IpAddr,
    /// `peer` as a header value.
    pub peer_value: &'a HeaderValue,
    pub proto: &'static str,
    pub host: Option<&'a str>,
    pub request_id: &'a HeaderValue,
}

/// Rewrites the client's headers for the upstream. The order is the guarantee: hop-by-hop
/// headers (and whatever `Connection` names) go first, then every spelling of every identity
/// header, and only then does wxgate add its own, so no client header can remove or fake them.
pub fn prepare_headers(
    parts: &mut Parts,
    auth: &AuthSettings,
    identity: Option<&Identity>,
    hop: &Hop<'_>,
) -> Result<(), GatewayError> {
    let h = &mut parts.headers;
    // Room for what wxgate adds, so the map grows at most once.
    h.reserve(8);
    headers::remove_hop_by_hop(h);
    headers::strip_identity(h, &auth.identity.strip);
    if !auth.forward_token {
        strip_credentials(h, &auth.token_headers);
    }
    // hyper answered any `Expect: 100-continue` already; upstream gets a plain request.
    h.remove(EXPECT);
    set_forwarded(h, hop);
    if let Some(identity) = identity {
        inject_identity(h, &auth.identity, identity)?;
        inject_claims(h, &auth.claim_headers, identity);
    }
    parts.version = Version::HTTP_11;
    Ok(())
}

/// Removes gateway tokens on every route, whatever its auth mode (a token sent to a public
/// route must not reach its upstream either). `Authorization` goes only when it carries a
/// bearer token, so an upstream's own Basic credentials pass on public routes.
fn strip_credentials(h: &mut HeaderMap, token_headers: &[HeaderName]) {
    for name in token_headers {
        if name != AUTHORIZATION {
            h.remove(name);
            continue;
        }
        let bearer = h.get_all(AUTHORIZATION).iter().any(|v| {
            v.as_bytes()
                .get(..7)
                .is_some_and(|scheme| scheme.eq_ignore_ascii_case(b"bearer "))
        });
        if bearer {
            h.remove(AUTHORIZATION);
        }
    }
}

fn set_forwarded(h: &mut HeaderMap, hop: &Hop<'_>) {
    let trusted = hop.client.peer_trusted;
    if trusted && h.contains_key(X_FORWARDED_FOR) {
        // Only a trusted proxy's chain is kept; anyone else's is replaced, not appended to.
        let mut chain = String::new();
        for value in h
            .get_all(X_FORWARDED_FOR)
            .iter()
            .filter_map(|v| v.to_str().ok())
        {
            chain.push_str(value);
            chain.push_str(", ");
        }
        chain.push_str(&hop.peer.to_string());
        put(h, X_FORWARDED_FOR, &chain);
    } else {
        h.insert(X_FORWARDED_FOR, hop.peer_value.clone());
    }
    if hop.client.ip == hop.peer {
        h.insert(X_REAL_IP, hop.peer_value.clone());
    } else {
        put(h, X_REAL_IP, &hop.client.ip.to_string());
    }
    if !trusted {
        h.remove(FORWARDED);
    }
    if !trusted || !h.contains_key(X_FORWARDED_PROTO) {
        h.insert(X_FORWARDED_PROTO, HeaderValue::from_static(hop.proto));
    }
    if !trusted || !h.contains_key(X_FORWARDED_HOST) {
        h.remove(X_FORWARDED_HOST);
        if let Some(host) = hop.host {
            put(h, X_FORWARDED_HOST, host);
        }
    }
    h.insert(X_REQUEST_ID, hop.request_id.clone());
}

fn inject_identity(
    h: &mut HeaderMap,
    names: &IdentityHeaders,
    identity: &Identity,
) -> Result<(), GatewayError> {
    // Values were checked against `^[A-Za-z0-9_-]{1,64}$` during verification.
    let value = |v: &str| {
        HeaderValue::from_str(v)
            .map_err(|_| GatewayError::Internal("identity value is not a header value"))
    };
    h.insert(names.openid.clone(), value(&identity.openid)?);
    h.insert(names.appid.clone(), value(&identity.appid)?);
    if let Some(unionid) = &identity.unionid {
        h.insert(names.unionid.clone(), value(unionid)?);
    }
    if let Some(source) = &names.source {
        h.insert(source.clone(), HeaderValue::from_static("wxgate"));
    }
    Ok(())
}

/// One header per configured claim the identity has: `phone` is the session's verified phone
/// number, any other name a hook claim. A claim the token lacks adds nothing (its header was
/// stripped from the client's request all the same), and a value that is not a valid header
/// value is skipped (the hook's answer was refused for it already).
fn inject_claims(h: &mut HeaderMap, claim_headers: &[(String, HeaderName)], identity: &Identity) {
    for (claim, header) in claim_headers {
        let text = if claim == crate::claims::PHONE {
            identity.phone.as_deref().map(std::borrow::Cow::Borrowed)
        } else {
            identity.ext.get(claim).and_then(crate::claims::render)
        };
        if let Some(value) = text.and_then(|t| HeaderValue::from_str(&t).ok()) {
            h.insert(header.clone(), value);
        }
    }
}

/// Replaces all values of `name` with `value`, skipping values that are not valid headers.
fn put(h: &mut HeaderMap, name: HeaderName, value: &str) {
    match HeaderValue::from_str(value) {
        Ok(v) => {
            h.insert(name, v);
        }
        Err(_) => {
            h.remove(name);
        }
    }
}
