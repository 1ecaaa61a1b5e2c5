//! `[[routes]]`: the route table, each route's upstreams, auth mode, matching and timeouts.

use std::time::Duration;

use http::Method;

use super::Builder;
use crate::config::file::RouteSection;
use crate::proxy::routes::{AuthMode, Route, RouteTable, Upstream};
use crate::tokens;

const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
const DEFAULT_RESPONSE_TIMEOUT: Duration = Duration::from_secs(30);
/// How long an upstream target that refused a connection is skipped.
const DEFAULT_EJECT_FOR: Duration = Duration::from_secs(10);

impl Builder<'_> {
    pub(super) fn routes(
        &mut self,
        routes: &[RouteSection],
        default_body: Option<u64>,
    ) -> Option<RouteTable> {
        let mut built = Vec::new();
        for (i, r) in routes.iter().enumerate() {
            if let Some(route) = self.route(i, r, default_body.unwrap_or(u64::MAX)) {
                built.push(route);
            }
        }
        for (i, r) in built.iter().enumerate() {
            let twin = built[..i].iter().any(|o| {
                o.prefix == r.prefix
                    && o.host == r.host
                    && o.methods.is_none()
                    && r.methods.is_none()
            });
            if twin {
                self.problem(
                    &format!("routes[{}].prefix", r.index),
                    format!("`{}` is already routed for the same host", r.prefix),
                );
            }
        }
        (built.len() == routes.len()).then(|| RouteTable::new(built))
    }

    fn route(&mut self, i: usize, r: &RouteSection, default_body: u64) -> Option<Route> {
        let path = format!("routes[{i}]");
        let at = |key: &str| format!("{path}.{key}");
        let prefix = match crate::proxy::path::canonicalize(&r.prefix) {
            Ok(c) if c == r.prefix.as_str() => Some(match r.prefix.trim_end_matches('/') {
                "" => "/".to_string(),
                p => p.to_string(),
            }),
            _ => {
                self.problem(
                    &at("prefix"),
                    format!("`{}` must be a clean absolute path like \"/api\"", r.prefix),
                );
                None
            }
        };
        let targets: Vec<(String, &String)> = match (&r.upstream, &r.upstreams) {
            (Some(u), None) => vec![(at("upstream"), u)],
            (None, Some(list)) if !list.is_empty() => list
                .iter()
                .enumerate()
                .map(|(j, u)| (format!("{path}.upstreams[{j}]"), u))
                .collect(),
            (Some(_), Some(_)) => {
                self.problem(
                    &at("upstream"),
                    "set either `upstream` or `upstreams`, not both",
                );
                vec![]
            }
            _ => {
                self.problem(&at("upstream"), "missing: set `upstream` or `upstreams`");
                vec![]
            }
        };
        let n_targets = targets.len();
        let upstreams: Vec<Upstream> = targets
            .into_iter()
            .filter_map(|(p, u)| self.upstream(&p, u))
            .collect();
        let auth = AuthMode::parse(&r.auth);
        if auth.is_none() {
            self.problem(
                &at("auth"),
                format!("`{}` is not none, optional, required or phone", r.auth),
            );
        }
        let methods = r.methods.as_ref().map(|list| {
            list.iter()
                .filter_map(|m| match Method::from_bytes(m.as_bytes()) {
                    Ok(method) if m.bytes().all(|b| b.is_ascii_uppercase()) => Some(method),
                    _ => {
                        self.problem(
                            &at("methods"),
                            format!("`{m}` is not an upper-case HTTP method"),
                        );
                        None
                    }
                })
                .collect::<Vec<_>>()
        });
        let host = r.host.as_ref().map(|h| h.to_ascii_lowercase());
        if let Some(apps) = &r.apps {
            for (j, app) in apps.iter().enumerate() {
                if !tokens::is_safe_id(app) {
                    self.problem(
                        &format!("{path}.apps[{j}]"),
                        format!("`{app}` is not a valid appid"),
                    );
                }
            }
        }
        let connect_timeout = match &r.connect_timeout {
            Some(t) => self.duration(&at("connect_timeout"), t),
            None => Some(DEFAULT_CONNECT_TIMEOUT),
        };
        let response_timeout = match &r.response_timeout {
            Some(t) => self.duration(&at("response_timeout"), t),
            None => Some(DEFAULT_RESPONSE_TIMEOUT),
        };
        let eject_for = match &r.eject_for {
            Some(t) => self.duration(&at("eject_for"), t),
            None => Some(DEFAULT_EJECT_FOR),
        };
        let max_body_bytes = match r.max_body_bytes {
            Some(n) => self.positive(&at("max_body_bytes"), n),
            None => Some(default_body),
        };
        if upstreams.len() != n_targets || n_targets == 0 {
            return None;
        }
        Some(Route {
            index: i,
            prefix: prefix?,
            upstreams,
            auth: auth?,
            strip_prefix: r.strip_prefix,
            methods,
            host,
            apps: r.apps.clone(),
            websocket: r.websocket,
            max_body_bytes: max_body_bytes?,
            connect_timeout: connect_timeout?,
            response_timeout: response_timeout?,
            eject_for: eject_for?,
        })
    }

    fn upstream(&mut self, path: &str, text: &str) -> Option<Upstream> {
        let parsed = text.parse::<http::Uri>().ok().and_then(|uri| {
            let scheme = uri.scheme().filter(|s| s.as_str() == "http")?.clone();
            let authority = uri.authority()?.clone();
            if authority.as_str().contains('@') || uri.query().is_some() {
                return None;
            }
            let base = uri.path().trim_end_matches('/');
            crate::proxy::path::canonicalize(uri.path()).ok()?;
            Some(Upstream {
                scheme,
                authority,
                base_path: base.to_string(),
            })
        });
        if parsed.is_none() {
            self.problem(
                path,
                format!("`{text}` is not an upstream URL like \"http://127.0.0.1:9000\""),
            );
        }
        parsed
    }
}
