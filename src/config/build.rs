//! Converts the serde mirror into runtime [`Settings`], collecting every problem with its path.

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use http::{HeaderName, Method};
use ipnet::IpNet;

use super::duration;
use super::file::{
    AuthSection, FileConfig, KeySection, RouteSection, ServerSection, StoreSection, WechatSection,
};
use crate::proxy::routes::{AuthMode, Route, RouteTable, Upstream};
use crate::secret::Secret;
use crate::settings::*;
use crate::tokens::{self, Key, KeySet, Material};

const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
const DEFAULT_RESPONSE_TIMEOUT: Duration = Duration::from_secs(30);
/// How long an upstream target that refused a connection is skipped.
const DEFAULT_EJECT_FOR: Duration = Duration::from_secs(10);
/// Headers wxgate injects in the Cloud Run style; always stripped from clients.
const CLOUDRUN_HEADERS: [&str; 4] = ["X-WX-OPENID", "X-WX-APPID", "X-WX-UNIONID", "X-WX-SOURCE"];
/// WeChat APIs that take the app secret or hand out tokens: the relay never serves them.
const RELAY_NEVER: [&str; 3] = [
    "/cgi-bin/token",
    "/cgi-bin/stable_token",
    "/sns/jscode2session",
];

/// `[auth.on_login]` and `[auth.claim_headers]`.
mod hook;

struct Builder<'a> {
    base: &'a Path,
    problems: Vec<String>,
}

pub fn build(file: FileConfig, base: &Path) -> Result<Settings, Vec<String>> {
    let mut b = Builder {
        base,
        problems: Vec::new(),
    };
    let server = b.server(&file.server);
    let log = b.log(&file.log.format, file.log.openid);
    let admin_listen = b.socket("admin.listen", &file.admin.listen);
    let admin_token = super::admin::token(&file.admin, base, &mut b.problems);
    let wechat = b.wechat(&file.wechat);
    let auth = b.auth(&file.auth);
    let store = b.store(&file.store);
    let routes = b.routes(&file.routes, server.as_ref().map(|s| s.max_body_bytes));
    match (server, log, admin_listen, wechat, auth, store, routes) {
        (
            Some(server),
            Some(log),
            Some(admin_listen),
            Some(wechat),
            Some(auth),
            Some(store),
            Some(routes),
        ) if b.problems.is_empty() => Ok(Settings {
            source: None,
            server,
            log,
            admin_listen,
            admin_token,
            wechat,
            auth,
            store,
            routes,
        }),
        _ => Err(b.problems),
    }
}

impl Builder<'_> {
    fn problem(&mut self, path: &str, message: impl std::fmt::Display) {
        self.problems.push(format!("{path}: {message}"));
    }

    fn duration(&mut self, path: &str, text: &str) -> Option<Duration> {
        match duration::parse(text) {
            Ok(d) if d.is_zero() => {
                self.problem(path, "must be greater than zero");
                None
            }
            Ok(d) => Some(d),
            Err(e) => {
                self.problem(path, e);
                None
            }
        }
    }

    fn socket(&mut self, path: &str, text: &str) -> Option<SocketAddr> {
        match text.parse() {
            Ok(addr) => Some(addr),
            Err(_) => {
                self.problem(
                    path,
                    format!("`{text}` is not an address like \"127.0.0.1:8080\""),
                );
                None
            }
        }
    }

    fn positive(&mut self, path: &str, value: u64) -> Option<u64> {
        if value == 0 {
            self.problem(path, "must be greater than zero");
            return None;
        }
        Some(value)
    }

    /// A network prefix length, `0..=max` bits.
    fn prefix_len(&mut self, path: &str, value: u32, max: u8) -> Option<u8> {
        match u8::try_from(value) {
            Ok(bits) if bits <= max => Some(bits),
            _ => {
                self.problem(path, format!("must be between 0 and {max}"));
                None
            }
        }
    }

    fn header_name(&mut self, path: &str, text: &str) -> Option<HeaderName> {
        match HeaderName::from_bytes(text.as_bytes()) {
            Ok(name) => Some(name),
            Err(_) => {
                self.problem(path, format!("`{text}` is not a valid header name"));
                None
            }
        }
    }

    /// A secret given inline or as `*_file` (trimmed; relative to the config's folder).
    fn secret(&mut self, path: &str, inline: Option<&str>, file: Option<&str>) -> Option<Secret> {
        match (inline, file) {
            (Some(_), Some(_)) => {
                self.problem(path, "set either `secret` or `secret_file`, not both");
                None
            }
            (Some(value), None) => Some(Secret::new(value)),
            (None, Some(file)) => self
                .read_file(&format!("{path}_file"), file)
                .map(|text| Secret::new(text.trim())),
            (None, None) => {
                self.problem(path, "missing: set `secret` or `secret_file`");
                None
            }
        }
    }

    fn read_file(&mut self, path: &str, file: &str) -> Option<String> {
        let full = self.base.join(file);
        match std::fs::read_to_string(&full) {
            Ok(text) => Some(text),
            Err(e) => {
                self.problem(path, format!("cannot read {}: {e}", full.display()));
                None
            }
        }
    }

    fn server(&mut self, s: &ServerSection) -> Option<ServerSettings> {
        let listen = self.socket("server.listen", &s.listen);
        let tls = self.tls(s);
        let mut trusted_proxies = Vec::new();
        for (i, text) in s.trusted_proxies.iter().enumerate() {
            match parse_net(text) {
                Some(net) => trusted_proxies.push(net),
                None => self.problem(
                    &format!("server.trusted_proxies[{i}]"),
                    format!("`{text}` is not an address or CIDR range"),
                ),
            }
        }
        let header_read_timeout =
            self.duration("server.header_read_timeout", &s.header_read_timeout);
        let request_timeout = self.duration("server.request_timeout", &s.request_timeout);
        let shutdown_grace = self.duration("server.shutdown_grace", &s.shutdown_grace);
        let max_body_bytes = self.positive("server.max_body_bytes", s.max_body_bytes);
        let max_header_bytes =
            self.bounded("server.max_header_bytes", s.max_header_bytes, 1024, 1 << 20);
        let max_headers = self.bounded("server.max_headers", s.max_headers, 8, 1000);
        let max_uri_bytes = self.bounded("server.max_uri_bytes", s.max_uri_bytes, 256, 65_000);
        Some(ServerSettings {
            listen: listen?,
            tls: tls?,
            trusted_proxies,
            header_read_timeout: header_read_timeout?,
            request_timeout: request_timeout?,
            max_body_bytes: max_body_bytes?,
            max_header_bytes: max_header_bytes?,
            max_headers: max_headers?,
            max_uri_bytes: max_uri_bytes?,
            shutdown_grace: shutdown_grace?,
        })
    }

    fn bounded(&mut self, path: &str, value: u64, min: u64, max: u64) -> Option<usize> {
        if !(min..=max).contains(&value) {
            self.problem(path, format!("must be between {min} and {max}"));
            return None;
        }
        usize::try_from(value).ok()
    }

    fn tls(&mut self, s: &ServerSection) -> Option<Option<TlsSettings>> {
        let (listen, cert, key) = match (&s.tls_listen, &s.tls_cert_file, &s.tls_key_file) {
            (None, None, None) => return Some(None),
            (Some(listen), Some(cert), Some(key)) => (listen, cert, key),
            _ => {
                self.problem(
                    "server.tls_listen",
                    "HTTPS needs all of tls_listen, tls_cert_file and tls_key_file",
                );
                return None;
            }
        };
        let listen = self.socket("server.tls_listen", listen);
        let chain = self.read_file("server.tls_cert_file", cert);
        // The key is read as a secret: it is never shown, whatever goes wrong.
        let key_pem = self.read_file("server.tls_key_file", key);
        let config = match (chain, key_pem) {
            (Some(chain), Some(key_pem)) => {
                match crate::tls::server_config(chain.as_bytes(), key_pem.as_bytes()) {
                    Ok(config) => Some(config),
                    Err(e) => {
                        self.problem("server.tls_cert_file", e);
                        None
                    }
                }
            }
            _ => None,
        };
        Some(Some(TlsSettings {
            listen: listen?,
            cert_file: self.base.join(cert),
            key_file: self.base.join(key),
            config: config?,
        }))
    }

    fn log(&mut self, format: &str, openid: bool) -> Option<LogSettings> {
        let json = match format {
            "text" => false,
            "json" => true,
            other => {
                self.problem(
                    "log.format",
                    format!("`{other}` is not \"text\" or \"json\""),
                );
                return None;
            }
        };
        Some(LogSettings { json, openid })
    }

    fn wechat(&mut self, w: &WechatSection) -> Option<WechatSettings> {
        let api_base = match url::Url::parse(&w.api_base) {
            Ok(u)
                if matches!(u.scheme(), "http" | "https")
                    && u.host().is_some()
                    && u.query().is_none() =>
            {
                Some(w.api_base.trim_end_matches('/').to_string())
            }
            _ => {
                self.problem(
                    "wechat.api_base",
                    format!("`{}` is not an http(s) URL", w.api_base),
                );
                None
            }
        };
        let timeout = self.duration("wechat.timeout", &w.timeout);
        if w.apps.is_empty() {
            self.problem(
                "wechat.apps",
                "at least one [[wechat.apps]] entry is required",
            );
        }
        let mut apps = Vec::new();
        for (i, app) in w.apps.iter().enumerate() {
            let path = format!("wechat.apps[{i}]");
            if !tokens::is_safe_id(&app.appid) {
                self.problem(
                    &format!("{path}.appid"),
                    format!("`{}` is not a valid appid", app.appid),
                );
            }
            if w.apps[..i].iter().any(|a| a.appid == app.appid) {
                self.problem(
                    &format!("{path}.appid"),
                    format!("`{}` is configured twice", app.appid),
                );
            }
            if let Some(secret) = self.secret(
                &format!("{path}.secret"),
                app.secret.as_deref(),
                app.secret_file.as_deref(),
            ) {
                if secret.expose().is_empty() {
                    self.problem(&format!("{path}.secret"), "is empty");
                }
                apps.push(App {
                    appid: app.appid.clone(),
                    secret,
                });
            }
        }
        let max_concurrent_calls =
            self.positive("wechat.max_concurrent_calls", w.max_concurrent_calls as u64);
        let circuit_failures =
            self.positive("wechat.circuit_failures", u64::from(w.circuit_failures));
        let circuit_open_for = self.duration("wechat.circuit_open_for", &w.circuit_open_for);
        for (i, allowed) in w.relay.allow.iter().enumerate() {
            let path = format!("wechat.relay.allow[{i}]");
            if !allowed.starts_with('/')
                || allowed.contains('?')
                || crate::proxy::path::canonicalize(allowed).is_err()
            {
                self.problem(&path, format!("`{allowed}` is not a clean absolute path"));
            } else if RELAY_NEVER
                .iter()
                .any(|p| allowed.trim_end_matches('/') == *p)
            {
                self.problem(
                    &path,
                    format!("`{allowed}` deals in secrets or tokens and is never relayed"),
                );
            }
        }
        Some(WechatSettings {
            api_base: api_base?,
            timeout: timeout?,
            apps,
            relay: RelaySettings {
                enabled: w.relay.enabled,
                allow: w.relay.allow.clone(),
            },
            check_session_key: w.check_session_key,
            gate: crate::wechat::GateSettings {
                max_concurrent_calls: usize::try_from(max_concurrent_calls?).ok()?,
                circuit_failures: u32::try_from(circuit_failures?).ok()?,
                circuit_open_for: circuit_open_for?,
            },
        })
    }

    fn auth(&mut self, a: &AuthSection) -> Option<AuthSettings> {
        for (path, value) in [("auth.issuer", &a.issuer), ("auth.audience", &a.audience)] {
            if value.is_empty() {
                self.problem(path, "must not be empty");
            }
        }
        let access_ttl = self.duration("auth.access_ttl", &a.access_ttl);
        let refresh_ttl = self.duration("auth.refresh_ttl", &a.refresh_ttl);
        let leeway = match duration::parse(&a.leeway) {
            Ok(d) if d <= Duration::from_secs(300) => Some(d),
            Ok(_) => {
                self.problem("auth.leeway", "must be at most 5m");
                None
            }
            Err(e) => {
                self.problem("auth.leeway", e);
                None
            }
        };
        if a.token_headers.is_empty() {
            self.problem("auth.token_headers", "must name at least one header");
        }
        let token_headers: Vec<HeaderName> = a
            .token_headers
            .iter()
            .enumerate()
            .filter_map(|(i, h)| self.header_name(&format!("auth.token_headers[{i}]"), h))
            .collect();
        let identity = self.identity(a, &token_headers);
        let endpoint_prefix = self.endpoint_prefix(&a.endpoint_prefix);
        let rate = &a.login_rate_limit;
        let per_minute = self.positive(
            "auth.login_rate_limit.per_minute",
            u64::from(rate.per_minute),
        );
        let burst = self.positive("auth.login_rate_limit.burst", u64::from(rate.burst));
        let ipv4_prefix =
            self.prefix_len("auth.login_rate_limit.ipv4_prefix", rate.ipv4_prefix, 32);
        let ipv6_prefix =
            self.prefix_len("auth.login_rate_limit.ipv6_prefix", rate.ipv6_prefix, 128);
        let keys = self.keys(a);
        let on_login = a.on_login.as_ref().map(|hook| self.on_login(hook));
        let claim_headers = self.claim_headers(a, identity.as_ref(), &token_headers);
        let identity = identity.map(|mut identity| {
            identity.strip.extend(
                claim_headers
                    .iter()
                    .map(|(_, h)| fold_header_name(h.as_str())),
            );
            identity.strip.sort();
            identity.strip.dedup();
            identity
        });
        Some(AuthSettings {
            issuer: a.issuer.clone(),
            audience: a.audience.clone(),
            access_ttl: access_ttl?,
            refresh_ttl: refresh_ttl?,
            leeway: leeway?,
            token_headers,
            identity: identity?,
            forward_token: a.forward_token,
            endpoint_prefix: endpoint_prefix?,
            login_rate_limit: RateLimit {
                per_minute: u32::try_from(per_minute?).ok()?,
                burst: u32::try_from(burst?).ok()?,
                ipv4_prefix: ipv4_prefix?,
                ipv6_prefix: ipv6_prefix?,
            },
            keys: keys?,
            on_login: match on_login {
                None => None,
                Some(hook) => Some(hook?),
            },
            claim_headers,
        })
    }

    fn identity(
        &mut self,
        a: &AuthSection,
        token_headers: &[HeaderName],
    ) -> Option<IdentityHeaders> {
        let cloudrun = match a.header_style.as_str() {
            "default" => false,
            "cloudrun" => true,
            other => {
                self.problem(
                    "auth.header_style",
                    format!("`{other}` is not \"default\" or \"cloudrun\""),
                );
                return None;
            }
        };
        let openid = self.header_name("auth.identity_header", &a.identity_header);
        let unionid = self.header_name("auth.unionid_header", &a.unionid_header);
        let appid = self.header_name("auth.appid_header", &a.appid_header);
        let (openid, unionid, appid) = (openid?, unionid?, appid?);
        self.distinct_identity_headers(
            [
                ("auth.identity_header", &openid),
                ("auth.unionid_header", &unionid),
                ("auth.appid_header", &appid),
            ],
            token_headers,
        );
        let mut strip: Vec<String> = [openid.as_str(), unionid.as_str(), appid.as_str()]
            .into_iter()
            .chain(CLOUDRUN_HEADERS)
            .map(fold_header_name)
            .collect();
        strip.sort();
        strip.dedup();
        let cloud = |i: usize| HeaderName::from_static(cloudrun_lower(i));
        Some(if cloudrun {
            IdentityHeaders {
                openid: cloud(0),
                appid: cloud(1),
                unionid: cloud(2),
                source: Some(cloud(3)),
                strip,
            }
        } else {
            IdentityHeaders {
                openid,
                unionid,
                appid,
                source: None,
                strip,
            }
        })
    }

    /// Each identity header is its own (two would make one identity value overwrite
    /// another) and none is a header wxgate reads, frames with or writes: as
    /// `Content-Length` or `Transfer-Encoding` it would reframe the request upstream, as a
    /// token header it would be stripped and injected at once.
    fn distinct_identity_headers(
        &mut self,
        named: [(&str, &HeaderName); 3],
        token_headers: &[HeaderName],
    ) {
        let owned: Vec<String> = hook::owned_headers(token_headers).collect();
        for (i, (path, name)) in named.iter().enumerate() {
            let folded = fold_header_name(name.as_str());
            if owned.contains(&folded) {
                self.problem(
                    path,
                    format!("`{name}` is a header wxgate sets, reads or frames the request with"),
                );
            } else if let Some((other, _)) = named[..i]
                .iter()
                .find(|(_, n)| fold_header_name(n.as_str()) == folded)
            {
                self.problem(path, format!("`{name}` is already `{other}`"));
            }
        }
    }

    fn endpoint_prefix(&mut self, prefix: &str) -> Option<String> {
        let trimmed = prefix.trim_end_matches('/');
        let canonical = crate::proxy::path::canonicalize(prefix).is_ok_and(|c| c == prefix);
        if !prefix.starts_with('/') || trimmed.is_empty() || !canonical {
            self.problem(
                "auth.endpoint_prefix",
                format!("`{prefix}` must be a clean path like \"/auth\""),
            );
            return None;
        }
        Some(trimmed.to_string())
    }

    fn keys(&mut self, a: &AuthSection) -> Option<KeySet> {
        if a.keys.is_empty() {
            self.problem("auth.keys", "at least one [[auth.keys]] entry is required");
            return None;
        }
        if a.keys[0].public_key_file.is_some() {
            self.problem(
                "auth.keys[0]",
                "the first key signs new tokens, so it needs `secret`, `secret_file` or \
                 `private_key_file`; a `public_key_file` key only verifies and goes after it",
            );
        }
        let mut keys = Vec::new();
        for (i, k) in a.keys.iter().enumerate() {
            let path = format!("auth.keys[{i}]");
            if k.kid.is_empty() || k.kid.len() > 64 || !k.kid.bytes().all(|b| b.is_ascii_graphic())
            {
                self.problem(
                    &format!("{path}.kid"),
                    "must be 1 to 64 visible ASCII characters",
                );
            }
            if a.keys[..i].iter().any(|other| other.kid == k.kid) {
                self.problem(
                    &format!("{path}.kid"),
                    format!("`{}` is used by two keys", k.kid),
                );
            }
            let alg = match tokens::parse_alg(&k.alg) {
                Ok(alg) => alg,
                Err(e) => {
                    self.problem(&format!("{path}.alg"), e);
                    continue;
                }
            };
            let Some((field, material)) = self.key_material(&path, alg, k) else {
                continue;
            };
            match Key::new(k.kid.clone(), alg, material) {
                Ok(key) => keys.push(key),
                Err(e) => self.problem(&format!("{path}.{field}"), e),
            }
        }
        (keys.len() == a.keys.len()).then(|| KeySet::new(keys))
    }

    /// What one `[[auth.keys]]` entry holds, and the field its problems are reported under.
    fn key_material(
        &mut self,
        path: &str,
        alg: jsonwebtoken::Algorithm,
        k: &KeySection,
    ) -> Option<(&'static str, Material)> {
        let has_secret = k.secret.is_some() || k.secret_file.is_some();
        // Whether the material suits `alg` is the key's own check (`Key::new`).
        match (&k.private_key_file, &k.public_key_file) {
            (Some(_), Some(_)) => {
                self.problem(
                    path,
                    "set either `private_key_file` or `public_key_file`, not both",
                );
                None
            }
            (Some(_), None) | (None, Some(_)) if has_secret => {
                self.problem(
                    path,
                    "set either a secret (`secret`, `secret_file`) or a PEM key file, not both",
                );
                None
            }
            (Some(file), None) => self
                .read_file(&format!("{path}.private_key_file"), file)
                .map(|pem| ("private_key_file", Material::PrivatePem(Secret::new(pem)))),
            (None, Some(file)) => self
                .read_file(&format!("{path}.public_key_file"), file)
                .map(|pem| ("public_key_file", Material::PublicPem(pem))),
            (None, None) if has_secret || tokens::is_hmac(alg) => self
                .secret(
                    &format!("{path}.secret"),
                    k.secret.as_deref(),
                    k.secret_file.as_deref(),
                )
                .map(|secret| ("secret", Material::Hmac(secret))),
            (None, None) => {
                self.problem(
                    path,
                    format!(
                        "missing: set `private_key_file` or `public_key_file` for `{}`",
                        tokens::alg_name(alg)
                    ),
                );
                None
            }
        }
    }

    fn store(&mut self, s: &StoreSection) -> Option<StoreSettings> {
        super::store::build(s, self.base, &mut self.problems)
    }

    fn routes(&mut self, routes: &[RouteSection], default_body: Option<u64>) -> Option<RouteTable> {
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

fn cloudrun_lower(i: usize) -> &'static str {
    ["x-wx-openid", "x-wx-appid", "x-wx-unionid", "x-wx-source"][i]
}

/// Header names as Django, WSGI and PHP see them: case-insensitive, `_` and `-` alike.
pub fn fold_header_name(name: &str) -> String {
    name.bytes()
        .map(|b| {
            if b == b'_' {
                '-'
            } else {
                b.to_ascii_lowercase() as char
            }
        })
        .collect()
}

fn parse_net(text: &str) -> Option<IpNet> {
    text.parse::<IpNet>()
        .ok()
        .or_else(|| text.parse::<std::net::IpAddr>().ok().map(IpNet::from))
}
