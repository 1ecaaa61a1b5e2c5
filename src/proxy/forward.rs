//! Forwarding stage: the route's targets (round robin, ejection of a target that refuses
//! connections, one retry of a replayable request), the request sent over a pooled
//! keep-alive connection with `response_timeout`, and the response back without
//! hop-by-hop headers.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use http::Response;
use http_body::Body;

use crate::body::GuardedBody;
use crate::error::GatewayError;
use crate::proxy::headers;
use crate::proxy::routes::{Route, RouteTable, Upstream};
use crate::upstream::{self, idempotent, Outgoing, Pool, UpstreamBody};

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
