//! Serde mirror of `gateway.toml`, one struct per section; nothing here is used at request time.

use serde::Deserialize;

pub const DEFAULT_LISTEN: &str = "0.0.0.0:8080";
pub const DEFAULT_ADMIN_LISTEN: &str = "127.0.0.1:9090";
pub const DEFAULT_API_BASE: &str = "https://api.weixin.qq.com";

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    #[serde(default)]
    pub server: ServerSection,
    #[serde(default)]
    pub log: LogSection,
    #[serde(default)]
    pub admin: AdminSection,
    pub wechat: WechatSection,
    pub auth: AuthSection,
    #[serde(default)]
    pub store: StoreSection,
    #[serde(default)]
    pub routes: Vec<RouteSection>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ServerSection {
    pub listen: String,
    pub tls_listen: Option<String>,
    pub tls_cert_file: Option<String>,
    pub tls_key_file: Option<String>,
    pub trusted_proxies: Vec<String>,
    pub header_read_timeout: String,
    pub request_timeout: String,
    pub max_body_bytes: u64,
    pub max_header_bytes: u64,
    pub max_headers: u64,
    pub max_uri_bytes: u64,
    pub shutdown_grace: String,
}

impl Default for ServerSection {
    fn default() -> Self {
        Self {
            listen: DEFAULT_LISTEN.into(),
            tls_listen: None,
            tls_cert_file: None,
            tls_key_file: None,
            trusted_proxies: vec!["127.0.0.1/32".into()],
            header_read_timeout: "10s".into(),
            request_timeout: "60s".into(),
            max_body_bytes: 10 * 1024 * 1024,
            max_header_bytes: 64 * 1024,
            max_headers: 100,
            max_uri_bytes: 8192,
            shutdown_grace: "30s".into(),
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LogSection {
    pub format: String,
    pub openid: bool,
}

impl Default for LogSection {
    fn default() -> Self {
        Self {
            format: "text".into(),
            openid: false,
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AdminSection {
    pub listen: String,
    /// A file holding the bearer secret the session and user endpoints require.
    pub token_file: Option<String>,
}

impl Default for AdminSection {
    fn default() -> Self {
        Self {
            listen: DEFAULT_ADMIN_LISTEN.into(),
            token_file: None,
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WechatSection {
    #[serde(default = "default_api_base")]
    pub api_base: String,
    #[serde(default = "default_wechat_timeout")]
    pub timeout: String,
    #[serde(default)]
    pub apps: Vec<AppSection>,
    #[serde(default)]
    pub relay: RelaySection,
    #[serde(default = "default_true")]
    pub check_session_key: bool,
    #[serde(default = "default_max_concurrent_calls")]
    pub max_concurrent_calls: usize,
    #[serde(default = "default_circuit_failures")]
    pub circuit_failures: u32,
    #[serde(default = "default_circuit_open_for")]
    pub circuit_open_for: String,
}

fn default_max_concurrent_calls() -> usize {
    64
}

fn default_circuit_failures() -> u32 {
    5
}

fn default_circuit_open_for() -> String {
    "10s".into()
}

fn default_api_base() -> String {
    DEFAULT_API_BASE.into()
}

fn default_wechat_timeout() -> String {
    "5s".into()
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AppSection {
    pub appid: String,
    pub secret: Option<String>,
    pub secret_file: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RelaySection {
    pub enabled: bool,
    pub allow: Vec<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuthSection {
    #[serde(default = "default_issuer")]
    pub issuer: String,
    pub audience: String,
    #[serde(default = "default_access_ttl")]
    pub access_ttl: String,
    #[serde(default = "default_refresh_ttl")]
    pub refresh_ttl: String,
    #[serde(default = "default_leeway")]
    pub leeway: String,
    #[serde(default = "default_token_headers")]
    pub token_headers: Vec<String>,
    #[serde(default = "default_identity_header")]
    pub identity_header: String,
    #[serde(default = "default_unionid_header")]
    pub unionid_header: String,
    #[serde(default = "default_appid_header")]
    pub appid_header: String,
    #[serde(default = "default_header_style")]
    pub header_style: String,
    #[serde(default)]
    pub forward_token: bool,
    #[serde(default = "default_endpoint_prefix")]
    pub endpoint_prefix: String,
    #[serde(default)]
    pub login_rate_limit: RateLimitSection,
    #[serde(default)]
    pub keys: Vec<KeySection>,
    pub on_login: Option<OnLoginSection>,
    #[serde(default)]
    pub claim_headers: std::collections::BTreeMap<String, String>,
}

fn default_issuer() -> String {
    "wxgate".into()
}
fn default_access_ttl() -> String {
    "2h".into()
}
fn default_refresh_ttl() -> String {
    "30d".into()
}
fn default_leeway() -> String {
    "30s".into()
}
fn default_token_headers() -> Vec<String> {
    vec!["Authorization".into()]
}
fn default_identity_header() -> String {
    "X-OpenId".into()
}
fn default_unionid_header() -> String {
    "X-UnionId".into()
}
fn default_appid_header() -> String {
    "X-AppId".into()
}
fn default_header_style() -> String {
    "default".into()
}
fn default_endpoint_prefix() -> String {
    "/auth".into()
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RateLimitSection {
    pub per_minute: u32,
    pub burst: u32,
    pub ipv4_prefix: u32,
    pub ipv6_prefix: u32,
}

impl Default for RateLimitSection {
    fn default() -> Self {
        Self {
            per_minute: 120,
            burst: 60,
            ipv4_prefix: 32,
            ipv6_prefix: 64,
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeySection {
    pub kid: String,
    pub alg: String,
    pub secret: Option<String>,
    pub secret_file: Option<String>,
    pub private_key_file: Option<String>,
    pub public_key_file: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OnLoginSection {
    pub url: String,
    #[serde(default = "default_hook_timeout")]
    pub timeout: String,
}

fn default_hook_timeout() -> String {
    "2s".into()
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StoreSection {
    #[serde(default = "default_backend")]
    pub backend: String,
    pub url: Option<String>,
    pub sentinels: Option<Vec<String>>,
    pub master_name: Option<String>,
    pub sentinel_username: Option<String>,
    pub sentinel_password: Option<String>,
    pub sentinel_password_file: Option<String>,
    pub cluster: Option<Vec<String>>,
    pub username: Option<String>,
    pub password: Option<String>,
    pub password_file: Option<String>,
    pub db: Option<i64>,
    pub tls: Option<bool>,
    pub ca_file: Option<String>,
    pub cert_file: Option<String>,
    pub key_file: Option<String>,
    pub key_prefix: Option<String>,
    pub pool_size: Option<usize>,
    pub timeout: Option<String>,
    pub connect_timeout: Option<String>,
}

impl Default for StoreSection {
    fn default() -> Self {
        Self {
            backend: default_backend(),
            url: None,
            sentinels: None,
            master_name: None,
            sentinel_username: None,
            sentinel_password: None,
            sentinel_password_file: None,
            cluster: None,
            username: None,
            password: None,
            password_file: None,
            db: None,
            tls: None,
            ca_file: None,
            cert_file: None,
            key_file: None,
            key_prefix: None,
            pool_size: None,
            timeout: None,
            connect_timeout: None,
        }
    }
}

fn default_backend() -> String {
    "memory".into()
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RouteSection {
    pub prefix: String,
    pub upstream: Option<String>,
    pub upstreams: Option<Vec<String>>,
    #[serde(default = "default_route_auth")]
    pub auth: String,
    #[serde(default)]
    pub strip_prefix: bool,
    pub methods: Option<Vec<String>>,
    pub host: Option<String>,
    pub apps: Option<Vec<String>>,
    #[serde(default = "default_true")]
    pub websocket: bool,
    pub max_body_bytes: Option<u64>,
    pub connect_timeout: Option<String>,
    pub response_timeout: Option<String>,
    pub eject_for: Option<String>,
}

fn default_route_auth() -> String {
    "required".into()
}

fn default_true() -> bool {
    true
}
