//! Forwarding stage: the request upstream is rebuilt from a sanitised copy of the client's,
//! sent over a pooled keep-alive connection, and the response comes back without hop-by-hop
//! headers.

use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use http::header::{
    HeaderName, HeaderValue, AUTHORIZATION, CONNECTION, CONTENT_LENGTH, COOKIE, EXPECT, HOST,
};
use http::request::Parts;
use http::Response;
use http_body::Body;

use crate::authn::Identity;
use crate::body::GuardedBody;
use crate::clientip::ClientAddr;
use crate::error::GatewayError;
use crate::headers;
use crate::routes::{Route, RouteTable, Upstream};
use crate::settings::{AuthSettings, IdentityHeaders};
use crate::upstream::{self, idempotent, Outgoing, Pool, UpstreamBody};

pub const X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
const X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
const X_FORWARDED_HOST: HeaderName = HeaderName::from_static("x-forwarded-host");
const X_REAL_IP: HeaderName = HeaderName::from_static("x-real-ip");
pub const X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");
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
                            route.response_timeout,
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

    /// Sends the request; returns the upstream's response and how long it took.
    ///
    /// A target that refuses the connection is ejected for the route's `eject_for`. An
    /// idempotent request without a body, which never reached that target, is retried once
    /// on each other target.
    pub async fn send(
        &self,
        route: &Route,
        outgoing: &Outgoing,
        body: GuardedBody,
        path_and_query: &str,
    ) -> Result<(Response<UpstreamBody>, Duration), GatewayError> {
        let rc = self
            .routes
            .get(route.index)
            .ok_or(GatewayError::Internal("route without a client"))?;
        // Only what can be sent again is: a bodiless idempotent request.
        let replayable =
            route.upstreams.len() > 1 && idempotent(&outgoing.method) && body.is_end_stream();
        let mut body = Some(body);
        // Targets that refused the connection (no allocation unless one did).
        let mut tried: Vec<usize> = Vec::new();
        let started = Instant::now();
        loop {
            let Some(target) = self.pick(rc, &tried) else {
                return Err(GatewayError::UpstreamUnavailable);
            };
            let upstream = &route.upstreams[target];
            let pool = &rc.pools[target];
            let target_path = [upstream.base_path.as_str(), path_and_query];
            let attempt_body = body.take().unwrap_or_else(GuardedBody::empty);
            // `response_timeout` is applied inside: it runs once the request is sent.
            let result = upstream::send(pool, outgoing, attempt_body, target_path).await;
            match result {
                Ok(mut response) => {
                    headers::remove_hop_by_hop(response.headers_mut());
                    return Ok((response, started.elapsed()));
                }
                Err(e) if e.is_connect() => {
                    let until = self.now_ms() + route.eject_for.as_millis() as u64;
                    rc.ejected_until[target].store(until, Ordering::Relaxed);
                    tracing::warn!(upstream = %upstream, error = %e, seconds = route.eject_for.as_secs(), "upstream refused the connection; ejected");
                    tried.push(target);
                    if !replayable || tried.len() >= route.upstreams.len() {
                        return Err(GatewayError::UpstreamUnavailable);
                    }
                }
                Err(e) => return Err(classify(e, upstream)),
            }
        }
    }
}

/// A client-side body failure (too large, too slow) is the client's; the rest is upstream's.
fn classify(e: upstream::Error, upstream: &Upstream) -> GatewayError {
    match e {
        upstream::Error::Body(body_error) => body_error.into(),
        upstream::Error::Timeout => {
            tracing::warn!(upstream = %upstream, "upstream did not answer in time");
            GatewayError::UpstreamTimeout
        }
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

/// Builds the upstream request's headers from the client's. The rules are those of a
/// rewrite in this order, applied as one filter: hop-by-hop headers (and whatever
/// `Connection` names) go, then every spelling of every identity header, then gateway
/// tokens and `Expect`; only then does wxgate add its own, so no client header can remove
/// or fake them. `websocket` restores the upgrade headers the hop-by-hop rule removed.
pub fn outgoing(
    parts: &Parts,
    auth: &AuthSettings,
    identity: Option<&Identity>,
    hop: &Hop<'_>,
    websocket: bool,
) -> Result<Outgoing, GatewayError> {
    let h = &parts.headers;
    // One pass for what the rules below ask about, instead of a lookup each.
    let mut seen = Seen::default();
    for (name, value) in h {
        seen.note(name, value);
    }
    let connection_named = if seen.connection {
        headers::connection_named(h)
    } else {
        Vec::new()
    };
    let strip_bearer = !auth.forward_token && seen.bearer;
    // What a header must pass to reach upstream at all.
    let passes = |name: &HeaderName| {
        !(headers::is_hop_by_hop(name)
            || connection_named.contains(name)
            || headers::is_identity(name, &auth.identity.strip)
            || headers::is_forwarding_alias(name)
            || (!auth.forward_token
                && auth.token_headers.contains(name)
                && (name != AUTHORIZATION || strip_bearer))
            || name == EXPECT
            || name == HOST
            || name == CONTENT_LENGTH)
    };
    let trusted = hop.client.peer_trusted;
    // A trusted proxy's X-Forwarded-Proto/-Host are kept; anyone else's are replaced.
    let keep_proto = trusted && seen.forwarded_proto && passes(&X_FORWARDED_PROTO);
    let keep_host = trusted && seen.forwarded_host && passes(&X_FORWARDED_HOST);
    let chain = trusted && seen.forwarded_for && passes(&X_FORWARDED_FOR);
    let ours = |name: &HeaderName| {
        name == X_FORWARDED_FOR
            || name == X_REAL_IP
            || name == X_REQUEST_ID
            || (name == FORWARDED && !trusted)
            || (name == X_FORWARDED_PROTO && !keep_proto)
            || (name == X_FORWARDED_HOST && !keep_host)
    };
    // HTTP/2 clients send each cookie as its own field; HTTP/1.1 allows one `Cookie`
    // line, so they are joined with "; " (RFC 9113 8.2.3), the only header joined so.
    let join_cookies = seen.cookies > 1 && passes(&COOKIE);
    let mut lines = Vec::with_capacity(512);
    for (name, value) in h {
        if passes(name) && !ours(name) && !(join_cookies && name == COOKIE) {
            put(&mut lines, name.as_str(), value.as_bytes());
        }
    }
    if join_cookies {
        lines.extend_from_slice(b"cookie: ");
        for (i, value) in h.get_all(COOKIE).iter().enumerate() {
            if i > 0 {
                lines.extend_from_slice(b"; ");
            }
            lines.extend_from_slice(value.as_bytes());
        }
        lines.extend_from_slice(b"\r\n");
    }
    // X-Forwarded-For: only a trusted proxy's chain is kept (and extended); anyone else's
    // is replaced, not appended to.
    lines.extend_from_slice(b"x-forwarded-for: ");
    if chain {
        for value in h
            .get_all(X_FORWARDED_FOR)
            .iter()
            .filter_map(|v| v.to_str().ok())
        {
            lines.extend_from_slice(value.as_bytes());
            lines.extend_from_slice(b", ");
        }
    }
    lines.extend_from_slice(hop.peer_value.as_bytes());
    lines.extend_from_slice(b"\r\n");
    if hop.client.ip == hop.peer {
        put(&mut lines, "x-real-ip", hop.peer_value.as_bytes());
    } else {
        put(
            &mut lines,
            "x-real-ip",
            hop.client.ip.to_string().as_bytes(),
        );
    }
    if !keep_proto {
        put(&mut lines, "x-forwarded-proto", hop.proto.as_bytes());
    }
    if !keep_host {
        if let Some(host) = hop.host.filter(|host| is_value(host)) {
            put(&mut lines, "x-forwarded-host", host.as_bytes());
        }
    }
    put(&mut lines, "x-request-id", hop.request_id.as_bytes());
    if let Some(identity) = identity {
        put_identity(&mut lines, &auth.identity, identity)?;
        put_claims(&mut lines, &auth.claim_headers, identity);
    }
    if websocket {
        lines.extend_from_slice(crate::upgrade::REQUEST_LINES);
    }
    Ok(Outgoing {
        method: parts.method.clone(),
        lines,
        had_length: seen.length,
    })
}

/// Which of the headers the forwarding rules depend on a request carries.
#[derive(Default)]
struct Seen {
    connection: bool,
    length: bool,
    forwarded_for: bool,
    forwarded_proto: bool,
    forwarded_host: bool,
    /// How many `Cookie` fields there are (counting stops at two).
    cookies: u8,
    /// An `Authorization` header carries a bearer token: only then is it the gateway's to
    /// remove (an upstream's own Basic credentials pass on public routes).
    bearer: bool,
}

impl Seen {
    fn note(&mut self, name: &HeaderName, value: &HeaderValue) {
        if name == CONNECTION {
            self.connection = true;
        } else if name == CONTENT_LENGTH {
            self.length = true;
        } else if name == COOKIE {
            self.cookies = self.cookies.saturating_add(1).min(2);
        } else if name == AUTHORIZATION {
            self.bearer |= std::str::from_utf8(value.as_bytes())
                .ok()
                .and_then(crate::authn::bearer_scheme)
                .is_some();
        } else if name == X_FORWARDED_FOR {
            self.forwarded_for = true;
        } else if name == X_FORWARDED_PROTO {
            self.forwarded_proto = true;
        } else if name == X_FORWARDED_HOST {
            self.forwarded_host = true;
        }
    }
}

fn put_identity(
    lines: &mut Vec<u8>,
    names: &IdentityHeaders,
    identity: &Identity,
) -> Result<(), GatewayError> {
    // Values were checked against `^[A-Za-z0-9_-]{1,64}$` during verification; checked
    // again here because these lines are written as they are.
    let mut value = |name: &HeaderName, v: &str| {
        if !is_value(v) {
            return Err(GatewayError::Internal(
                "identity value is not a header value",
            ));
        }
        put(lines, name.as_str(), v.as_bytes());
        Ok(())
    };
    value(&names.openid, &identity.openid)?;
    if let Some(appid) = &identity.appid {
        value(&names.appid, appid)?;
    }
    if let Some(unionid) = &identity.unionid {
        value(&names.unionid, unionid)?;
    }
    if let Some(source) = &names.source {
        value(source, "wxgate")?;
    }
    Ok(())
}

/// One header per configured claim the identity has: `phone` is the session's verified phone
/// number, any other name a hook claim. A claim the token lacks adds nothing (its header was
/// stripped from the client's request all the same), and a value that is not a valid header
/// value is skipped (the hook's answer was refused for it already).
fn put_claims(lines: &mut Vec<u8>, claim_headers: &[(String, HeaderName)], identity: &Identity) {
    for (claim, header) in claim_headers {
        let text = if claim == crate::claims::PHONE {
            identity.phone.as_deref().map(std::borrow::Cow::Borrowed)
        } else {
            identity.ext.get(claim).and_then(crate::claims::render)
        };
        if let Some(text) = text.filter(|t| is_value(t)) {
            put(lines, header.as_str(), text.as_bytes());
        }
    }
}

/// What `HeaderValue::from_str` accepts: visible ASCII, spaces and tabs.
fn is_value(text: &str) -> bool {
    text.bytes().all(|b| (b >= 0x20 && b != 0x7f) || b == b'\t')
}

fn put(lines: &mut Vec<u8>, name: &str, value: &[u8]) {
    lines.extend_from_slice(name.as_bytes());
    lines.extend_from_slice(b": ");
    lines.extend_from_slice(value);
    lines.extend_from_slice(b"\r\n");
}
