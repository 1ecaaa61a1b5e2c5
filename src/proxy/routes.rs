//! The compiled route table: longest prefix on a segment boundary, filtered by host and method.

use std::sync::Arc;
use std::time::Duration;

use http::Method;

/// What a route demands of the caller.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthMode {
    /// No token processing at all (identity headers are still stripped).
    None,
    /// A valid token adds identity; no token passes anonymously; a bad token is 401.
    Optional,
    /// A valid token is required.
    Required,
    /// A valid token whose session has a phone number is required.
    Phone,
}

impl AuthMode {
    pub fn parse(text: &str) -> Option<Self> {
        match text {
            "none" => Some(Self::None),
            "optional" => Some(Self::Optional),
            "required" => Some(Self::Required),
            "phone" => Some(Self::Phone),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::None => "none",
            Self::Optional => "optional",
            Self::Required => "required",
            Self::Phone => "phone",
        }
    }
}

/// One upstream target: scheme and authority, plus a base path that forwarded paths are appended to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Upstream {
    pub scheme: http::uri::Scheme,
    pub authority: http::uri::Authority,
    /// Empty, or a path without a trailing slash (`/v1`).
    pub base_path: String,
}

impl std::fmt::Display for Upstream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}://{}{}", self.scheme, self.authority, self.base_path)
    }
}

#[derive(Debug, Clone)]
pub struct Route {
    /// Position in `gateway.toml`, for logs and metrics.
    pub index: usize,
    /// Canonical prefix without a trailing slash (`/` itself stays `/`).
    pub prefix: String,
    pub upstreams: Vec<Upstream>,
    pub auth: AuthMode,
    pub strip_prefix: bool,
    pub methods: Option<Vec<Method>>,
    /// Lower-case host name without port.
    pub host: Option<String>,
    pub apps: Option<Vec<String>>,
    pub websocket: bool,
    pub max_body_bytes: u64,
    pub connect_timeout: Duration,
    pub response_timeout: Duration,
    /// How long a target that refused a connection is skipped (with several upstreams).
    pub eject_for: Duration,
}

/// Why no route took a request.
#[derive(Debug, PartialEq, Eq)]
pub enum Miss {
    NoRoute,
    /// A route matched the path and host but not the method: these methods would be allowed.
    Method(Vec<Method>),
}

#[derive(Debug, Clone, Default)]
pub struct RouteTable {
    /// Sorted by prefix length, longest first, so the first match is the longest prefix.
    /// Shared, so a request can hold its route while it waits on the upstream.
    routes: Vec<Arc<Route>>,
    /// Whether any route is limited to a host (else the request's host is never needed).
    has_hosts: bool,
}

impl RouteTable {
    pub fn new(mut routes: Vec<Route>) -> Self {
        // Stable sort keeps file order among equal prefixes (host/method variants).
        routes.sort_by_key(|r| std::cmp::Reverse(r.prefix.len()));
        let has_hosts = routes.iter().any(|r| r.host.is_some());
        let routes = routes.into_iter().map(Arc::new).collect();
        Self { routes, has_hosts }
    }

    pub fn has_hosts(&self) -> bool {
        self.has_hosts
    }

    pub fn iter(&self) -> impl Iterator<Item = &Route> {
        self.routes.iter().map(|route| &**route)
    }

    pub fn len(&self) -> usize {
        self.routes.len()
    }

    pub fn is_empty(&self) -> bool {
        self.routes.is_empty()
    }

    /// The route for a canonical `path`; `host` is lower-case without port.
    pub fn find(
        &self,
        path: &str,
        host: Option<&str>,
        method: &Method,
    ) -> Result<&Arc<Route>, Miss> {
        let mut allowed: Vec<Method> = Vec::new();
        let mut best_len = None;
        for route in &self.routes {
            if best_len.is_some_and(|len| route.prefix.len() < len) {
                break;
            }
            if !prefix_matches(&route.prefix, path) {
                continue;
            }
            if route.host.as_deref().is_some_and(|h| Some(h) != host) {
                continue;
            }
            match &route.methods {
                Some(methods) if !methods.contains(method) => {
                    best_len = Some(route.prefix.len());
                    allowed.extend(methods.iter().cloned());
                }
                _ => return Ok(route),
            }
        }
        if allowed.is_empty() {
            Err(Miss::NoRoute)
        } else {
            Err(Miss::Method(allowed))
        }
    }
}

/// `/api` matches `/api` and `/api/...`, never `/apix`; `/` matches everything.
pub(crate) fn prefix_matches(prefix: &str, path: &str) -> bool {
    match path.strip_prefix(prefix) {
        Some(rest) => prefix == "/" || rest.is_empty() || rest.starts_with('/'),
        None => false,
    }
}

impl Route {
    /// The path sent upstream: the matched path, minus the prefix when `strip_prefix` is set.
    pub fn upstream_path<'a>(&self, path: &'a str) -> &'a str {
        if !self.strip_prefix || self.prefix == "/" {
            return path;
        }
        match &path[self.prefix.len()..] {
            "" => "/",
            rest => rest,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn route(prefix: &str) -> Route {
        Route {
            index: 0,
            prefix: prefix.into(),
            upstreams: vec![],
            auth: AuthMode::Required,
            strip_prefix: false,
            methods: None,
            host: None,
            apps: None,
            websocket: true,
            max_body_bytes: 1024,
            connect_timeout: Duration::from_secs(1),
            response_timeout: Duration::from_secs(1),
            eject_for: Duration::from_secs(1),
        }
    }

    fn table(routes: Vec<Route>) -> RouteTable {
        RouteTable::new(
            routes
                .into_iter()
                .enumerate()
                .map(|(i, mut r)| {
                    r.index = i;
                    r
                })
                .collect(),
        )
    }

    #[test]
    fn longest_prefix_respects_segment_boundary() {
        let t = table(vec![route("/api"), route("/api/public"), route("/")]);
        let find = |p: &str| t.find(p, None, &Method::GET).map(|r| r.prefix.clone());
        assert_eq!(find("/api").as_deref(), Ok("/api"));
        assert_eq!(find("/api/x").as_deref(), Ok("/api"));
        assert_eq!(find("/api/public").as_deref(), Ok("/api/public"));
        assert_eq!(find("/api/public/x").as_deref(), Ok("/api/public"));
        assert_eq!(find("/api/publicx").as_deref(), Ok("/api"));
        assert_eq!(find("/apix").as_deref(), Ok("/"));
    }

    #[test]
    fn no_catch_all_means_no_route() {
        let t = table(vec![route("/api")]);
        assert_eq!(
            t.find("/apix", None, &Method::GET).err(),
            Some(Miss::NoRoute)
        );
        assert_eq!(t.find("/", None, &Method::GET).err(), Some(Miss::NoRoute));
    }

    #[test]
    fn matching_is_case_sensitive() {
        let t = table(vec![route("/api")]);
        assert_eq!(
            t.find("/API/x", None, &Method::GET).err(),
            Some(Miss::NoRoute)
        );
    }

    #[test]
    fn host_filter_picks_the_route_for_that_host() {
        let mut a = route("/api");
        a.host = Some("a.example.com".into());
        let b = route("/api");
        let t = table(vec![a, b]);
        assert_eq!(
            t.find("/api", Some("a.example.com"), &Method::GET)
                .map(|r| r.index),
            Ok(0)
        );
        assert_eq!(
            t.find("/api", Some("b.example.com"), &Method::GET)
                .map(|r| r.index),
            Ok(1)
        );
    }

    #[test]
    fn method_filter_reports_what_is_allowed_and_never_falls_back_to_a_shorter_prefix() {
        let mut a = route("/api");
        a.methods = Some(vec![Method::GET]);
        let t = table(vec![a, route("/")]);
        assert_eq!(
            t.find("/api/x", None, &Method::DELETE).err(),
            Some(Miss::Method(vec![Method::GET]))
        );
    }

    #[test]
    fn strip_prefix_keeps_a_rooted_path() {
        let mut r = route("/api");
        r.strip_prefix = true;
        assert_eq!(r.upstream_path("/api"), "/");
        assert_eq!(r.upstream_path("/api/users/1"), "/users/1");
        r.strip_prefix = false;
        assert_eq!(r.upstream_path("/api/users/1"), "/api/users/1");
    }
}
