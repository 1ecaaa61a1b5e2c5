//! Runtime settings: `gateway.toml` converted once into parsed, validated types.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use http::HeaderName;
use ipnet::IpNet;

use crate::proxy::routes::RouteTable;
use crate::secret::Secret;
use crate::tokens::KeySet;

pub struct Settings {
    /// The file this came from, for reloads and relative paths.
    pub source: Option<PathBuf>,
    pub server: ServerSettings,
    pub log: LogSettings,
    pub admin_listen: SocketAddr,
    /// `[admin] token_file`: the bearer secret the session and user endpoints require.
    pub admin_token: Option<Secret>,
    pub wechat: WechatSettings,
    pub auth: AuthSettings,
    pub store: StoreSettings,
    pub routes: RouteTable,
}

pub struct ServerSettings {
    pub listen: SocketAddr,
    pub tls: Option<TlsSettings>,
    pub trusted_proxies: Vec<IpNet>,
    pub header_read_timeout: Duration,
    pub request_timeout: Duration,
    pub max_body_bytes: u64,
    pub max_header_bytes: usize,
    pub max_headers: usize,
    pub max_uri_bytes: usize,
    pub shutdown_grace: Duration,
}

pub struct TlsSettings {
    pub listen: SocketAddr,
    pub cert_file: PathBuf,
    pub key_file: PathBuf,
    /// Built from the files when the configuration was (re)loaded.
    pub config: std::sync::Arc<rustls::ServerConfig>,
}

pub struct LogSettings {
    pub json: bool,
    pub openid: bool,
}

pub struct WechatSettings {
    /// Base URL without a trailing slash.
    pub api_base: String,
    pub timeout: Duration,
    pub apps: Vec<App>,
    pub relay: RelaySettings,
    /// Ask `checksession` when a decrypt fails, to tell an expired `session_key` apart.
    pub check_session_key: bool,
    /// Quota protection: calls in flight and the circuit breaker.
    pub gate: GateSettings,
}

/// `[wechat]` quota protection, applied to each WeChat API separately.
#[derive(Debug, Clone, Copy)]
pub struct GateSettings {
    pub max_concurrent_calls: usize,
    pub circuit_failures: u32,
    pub circuit_open_for: Duration,
}

pub struct App {
    pub appid: String,
    pub secret: Secret,
}

pub struct RelaySettings {
    pub enabled: bool,
    pub allow: Vec<String>,
}

pub struct AuthSettings {
    pub issuer: String,
    pub audience: String,
    pub access_ttl: Duration,
    pub refresh_ttl: Duration,
    pub leeway: Duration,
    pub token_headers: Vec<HeaderName>,
    pub identity: IdentityHeaders,
    pub forward_token: bool,
    /// Without a trailing slash, e.g. `/auth`.
    pub endpoint_prefix: String,
    pub login_rate_limit: RateLimit,
    pub keys: KeySet,
    pub on_login: Option<LoginHook>,
    /// Claim name → header injected upstream.
    pub claim_headers: Vec<(String, HeaderName)>,
}

#[derive(Debug, Clone, Copy)]
pub struct RateLimit {
    pub per_minute: u32,
    pub burst: u32,
    /// Clients are counted per network of this many leading bits: 32 (one IPv4 address)
    /// and 64 (one IPv6 /64, what a single subscriber is usually given) by default.
    pub ipv4_prefix: u8,
    pub ipv6_prefix: u8,
}

pub struct LoginHook {
    pub url: String,
    pub timeout: Duration,
}

/// The headers wxgate owns: stripped from every client request, injected after verification.
pub struct IdentityHeaders {
    pub openid: HeaderName,
    pub unionid: HeaderName,
    pub appid: HeaderName,
    /// `X-WX-SOURCE` in the Cloud Run style.
    pub source: Option<HeaderName>,
    /// Every name to strip, lower-case with `_` folded to `-`.
    pub strip: Vec<String>,
}

#[derive(Debug, Clone, PartialEq)]
pub enum StoreSettings {
    Memory,
    Redis(Box<RedisSettings>),
}

/// `[store] backend = "redis"`.
#[derive(Debug, Clone, PartialEq)]
pub struct RedisSettings {
    pub target: RedisTarget,
    /// The data nodes' credentials when they are not in `url` (an ACL user, a password).
    pub auth: RedisAuth,
    /// Set for `rediss://` and for Sentinel or Cluster with `tls = true`.
    pub tls: Option<RedisTls>,
    pub key_prefix: String,
    pub pool_size: usize,
    /// Bound on every command (and on readiness pings).
    pub timeout: Duration,
    pub connect_timeout: Duration,
}

/// Where the Redis is.
#[derive(Debug, Clone, PartialEq)]
pub enum RedisTarget {
    /// One server (`redis://`, `rediss://`, `unix://`); may carry a password, so never printed.
    Url(Secret),
    /// The primary that these Sentinels name `master_name`, followed through failovers.
    Sentinel {
        sentinels: Vec<(String, u16)>,
        master_name: String,
        db: i64,
        /// The Sentinels' own credentials, when they require any.
        sentinel_auth: RedisAuth,
    },
    /// Redis Cluster: seed nodes; the rest of the topology is discovered.
    Cluster { nodes: Vec<(String, u16)> },
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct RedisAuth {
    pub username: Option<String>,
    pub password: Option<Secret>,
}

/// TLS to Redis: the server is verified against `ca` (PEM), or the system roots without it;
/// `client` is the certificate chain and key (PEM) presented when the server asks for one.
#[derive(Debug, Clone, PartialEq)]
pub struct RedisTls {
    pub ca: Option<Vec<u8>>,
    pub client: Option<(Vec<u8>, Secret)>,
}

impl WechatSettings {
    /// The app a login names, or the first configured one when it names none.
    pub fn app(&self, appid: Option<&str>) -> Option<&App> {
        match appid {
            Some(id) => self.apps.iter().find(|a| a.appid == id),
            None => self.apps.first(),
        }
    }
}
