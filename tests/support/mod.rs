//! Shared test harness: the gateway on port 0 with a shutdown handle, mock WeChat, a
//! recording upstream that keeps the exact bytes it received, a scripted login hook, a raw
//! HTTP/1.1 client, a raw HTTP/2 client, a test CA, a WebSocket upstream and the real binary
//! as a child process.
#![allow(dead_code)]

pub mod admin;
pub mod binary;
pub mod certs;
pub mod h2;
pub mod hook;
pub mod hpack;
pub mod instances;
pub mod keys;
pub mod raw;
pub mod redis;
pub mod redis_topology;
pub mod upstream;
pub mod websocket;

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use wxgate::devtools::mock_wechat::{MockOptions, MockWechat};

#[allow(unused_imports)]
pub use raw::{get_on, status_of, trickle};
#[allow(unused_imports)]
pub use upstream::{Recorded, Upstream};

pub const APPID: &str = "wx0123456789abcdef";
pub const APP_SECRET: &str = "test-app-secret-value";
pub const JWT_SECRET: &str = "test-jwt-secret-0123456789abcdef-0123456789";
pub const AUDIENCE: &str = "test-mini-program";

/// A running mock WeChat on loopback.
pub struct Wechat {
    pub mock: MockWechat,
    pub addr: SocketAddr,
    _shutdown: oneshot::Sender<()>,
}

impl Wechat {
    pub async fn start() -> Self {
        Self::start_with(MockOptions {
            apps: vec![(APPID.into(), APP_SECRET.into())],
            slow_delay: Duration::from_secs(3),
        })
        .await
    }

    pub async fn start_with(options: MockOptions) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind mock");
        let addr = listener.local_addr().expect("addr");
        let mock = MockWechat::new(options);
        let (tx, rx) = oneshot::channel::<()>();
        tokio::spawn(mock.clone().serve(listener, async {
            let _ = rx.await;
        }));
        Self {
            mock,
            addr,
            _shutdown: tx,
        }
    }

    pub fn base(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn logins(&self) -> u64 {
        self.mock.calls("/sns/jscode2session")
    }
}

/// Config text for a gateway in front of `wechat_base` and `upstream`; `extra` is appended
/// (more routes), `auth_extra` goes into `[auth]` and `auth_tables` after it (sub-tables
/// such as `[auth.on_login]`, which would swallow any plain `[auth]` key written after them).
pub struct ConfigBuilder {
    pub wechat_base: String,
    pub upstream: String,
    pub server_extra: String,
    /// More `[admin]` keys (after `listen`).
    pub admin_extra: String,
    pub auth_extra: String,
    pub auth_tables: String,
    pub wechat_extra: String,
    /// A whole `[store]` section (none: the memory store).
    pub store: String,
    pub routes: String,
    /// The `[[auth.keys]]` entries; by default one HS256 key `k1` with [`JWT_SECRET`].
    pub keys: String,
}

impl ConfigBuilder {
    pub fn new(wechat_base: &str, upstream: &str) -> Self {
        let routes = format!(
            r#"
[[routes]]
prefix = "/public"
upstream = "{upstream}"
auth = "none"
[[routes]]
prefix = "/optional"
upstream = "{upstream}"
auth = "optional"
[[routes]]
prefix = "/api"
upstream = "{upstream}"
auth = "required"
"#
        );
        Self {
            wechat_base: wechat_base.into(),
            upstream: upstream.into(),
            server_extra: String::new(),
            admin_extra: String::new(),
            auth_extra: String::new(),
            auth_tables: String::new(),
            wechat_extra: String::new(),
            store: String::new(),
            routes,
            keys: format!(
                "[[auth.keys]]\nkid = \"k1\"\nalg = \"HS256\"\nsecret = \"{JWT_SECRET}\"\n"
            ),
        }
    }

    pub fn text(&self) -> String {
        format!(
            r#"
[server]
listen = "127.0.0.1:0"
{server_extra}
[admin]
listen = "127.0.0.1:0"
{admin_extra}
[wechat]
api_base = "{wechat}"
timeout = "1s"
{wechat_extra}
[[wechat.apps]]
appid = "{APPID}"
secret = "{APP_SECRET}"
[auth]
audience = "{AUDIENCE}"
{auth_extra}
{auth_tables}
{keys}
{store}
{routes}
"#,
            server_extra = self.server_extra,
            admin_extra = self.admin_extra,
            wechat = self.wechat_base,
            wechat_extra = self.wechat_extra,
            auth_extra = self.auth_extra,
            auth_tables = self.auth_tables,
            store = self.store,
            keys = self.keys,
            routes = self.routes,
        )
    }
}

/// A gateway running in-process on port 0.
pub struct RunningGateway {
    pub addr: SocketAddr,
    pub admin: SocketAddr,
    /// The HTTPS listener, when the config has `server.tls_*`.
    pub tls: Option<SocketAddr>,
    pub state: Arc<wxgate::Gateway>,
    shutdown: std::sync::Mutex<Option<oneshot::Sender<()>>>,
    task: std::sync::Mutex<Option<JoinHandle<()>>>,
}

impl RunningGateway {
    pub async fn start(config: &str) -> Self {
        let settings = match wxgate::config::from_str(config, Path::new(".")) {
            Ok(s) => s,
            Err(e) => panic!("test config is invalid: {e}\n{config}"),
        };
        Self::start_settings(settings).await
    }

    /// A gateway on already-loaded settings (`config::load` keeps the file for `reload()`).
    pub async fn start_settings(settings: wxgate::settings::Settings) -> Self {
        let public = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let admin = TcpListener::bind("127.0.0.1:0").await.expect("bind admin");
        let (addr, admin_addr) = (
            public.local_addr().expect("addr"),
            admin.local_addr().expect("addr"),
        );
        let tls = match settings.server.tls {
            Some(_) => Some(TcpListener::bind("127.0.0.1:0").await.expect("bind tls")),
            None => None,
        };
        let tls_addr = tls.as_ref().map(|l| l.local_addr().expect("addr"));
        let state = wxgate::Gateway::new(settings).expect("gateway");
        let (tx, rx) = oneshot::channel::<()>();
        let task = tokio::spawn(wxgate::run(
            wxgate::Listeners {
                public,
                tls,
                admin: Some(admin),
            },
            state.clone(),
            async {
                let _ = rx.await;
            },
        ));
        Self {
            addr,
            admin: admin_addr,
            tls: tls_addr,
            state,
            shutdown: std::sync::Mutex::new(Some(tx)),
            task: std::sync::Mutex::new(Some(task)),
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }

    /// Signals shutdown and returns the task, which ends when connections have drained.
    pub fn begin_shutdown(&self) -> JoinHandle<()> {
        if let Some(tx) = self.shutdown.lock().expect("lock").take() {
            let _ = tx.send(());
        }
        self.task.lock().expect("lock").take().expect("running")
    }
}

/// The usual trio: mock WeChat, a recording upstream and a gateway in front of both.
pub struct World {
    pub wechat: Wechat,
    pub upstream: Upstream,
    pub gateway: RunningGateway,
    pub http: reqwest::Client,
}

impl World {
    pub async fn start() -> Self {
        Self::start_with(|_| {}).await
    }

    pub async fn start_with(adjust: impl FnOnce(&mut ConfigBuilder)) -> Self {
        let wechat = Wechat::start().await;
        let upstream = Upstream::start().await;
        let mut config = ConfigBuilder::new(&wechat.base(), &upstream.base());
        adjust(&mut config);
        let gateway = RunningGateway::start(&config.text()).await;
        Self {
            wechat,
            upstream,
            gateway,
            http: client(),
        }
    }

    pub fn url(&self, path: &str) -> String {
        self.gateway.url(path)
    }

    /// Logs in with `code` and returns the JSON answer (panics unless 200).
    pub async fn login(&self, code: &str) -> serde_json::Value {
        let response = self
            .post_json("/auth/login", serde_json::json!({ "code": code }))
            .await;
        assert_eq!(response.status(), 200, "login with {code}");
        response.json().await.expect("login json")
    }

    /// Tries a login with `code`: the status, the JSON answer (`Null` if none) and
    /// `Retry-After` in seconds, when present.
    pub async fn try_login(&self, code: &str) -> (u16, serde_json::Value, Option<u64>) {
        let response = self
            .post_json("/auth/login", serde_json::json!({ "code": code }))
            .await;
        let status = response.status().as_u16();
        let retry_after = response
            .headers()
            .get("retry-after")
            .map(|v| v.to_str().expect("ascii").parse().expect("seconds"));
        (
            status,
            response.json().await.unwrap_or_default(),
            retry_after,
        )
    }

    /// A fresh access token for a unique code.
    pub async fn token(&self) -> String {
        let code = format!("code{}", unique());
        self.login(&code).await["access_token"]
            .as_str()
            .expect("access_token")
            .to_string()
    }

    pub async fn post_json(&self, path: &str, body: serde_json::Value) -> reqwest::Response {
        self.http
            .post(self.url(path))
            .json(&body)
            .send()
            .await
            .expect("request")
    }

    /// POSTs JSON with a bearer token; the status and the JSON answer (`Null` if none).
    pub async fn post_bearer(
        &self,
        path: &str,
        token: &str,
        body: serde_json::Value,
    ) -> (u16, serde_json::Value) {
        let response = self
            .http
            .post(self.url(path))
            .bearer_auth(token)
            .json(&body)
            .send()
            .await
            .expect("request");
        let status = response.status().as_u16();
        (status, response.json().await.unwrap_or_default())
    }

    pub async fn get(&self, path: &str) -> reqwest::Response {
        self.http.get(self.url(path)).send().await.expect("request")
    }

    pub async fn get_with_token(&self, path: &str, token: &str) -> reqwest::Response {
        self.http
            .get(self.url(path))
            .bearer_auth(token)
            .send()
            .await
            .expect("request")
    }
}

pub fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("client")
}

/// Sends `request` and returns its JSON answer, whatever the status.
pub async fn json_of(request: reqwest::RequestBuilder) -> serde_json::Value {
    let response = request.send().await.expect("request");
    response.json().await.expect("json")
}

/// A number unique within this test process, for codes and names.
pub fn unique() -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static NEXT: AtomicU64 = AtomicU64::new(1);
    NEXT.fetch_add(1, Ordering::Relaxed)
}

/// An address where nothing listens (bound, then released).
pub async fn closed_port() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    listener.local_addr().expect("addr")
}

/// Mints a token for `openid` with the test signing key.
pub fn mint(openid: &str, ttl_secs: i64) -> String {
    mint_with(openid, ttl_secs, |_| {})
}

/// [`mint`], with the claims adjusted before signing (a `phone`, hook claims in `ext`...).
pub fn mint_with(
    openid: &str,
    ttl_secs: i64,
    adjust: impl FnOnce(&mut wxgate::tokens::Claims),
) -> String {
    let now = wxgate::tokens::now_unix();
    let mut claims = wxgate::tokens::Claims {
        iss: "wxgate".into(),
        aud: AUDIENCE.into(),
        sub: openid.into(),
        iat: now,
        nbf: Some(now),
        exp: now + ttl_secs,
        jti: Some(format!("j{}", unique())),
        sid: Some(format!("s{}", unique())),
        appid: Some(APPID.into()),
        unionid: None,
        ext: None,
        phone: None,
    };
    adjust(&mut claims);
    let key = wxgate::tokens::Key::new(
        "k1".into(),
        jsonwebtoken::Algorithm::HS256,
        wxgate::tokens::Material::Hmac(wxgate::Secret::new(JWT_SECRET)),
    )
    .expect("key");
    wxgate::tokens::mint(&wxgate::tokens::KeySet::new(vec![key]), &claims).expect("mint")
}

/// A child process that is killed when the guard drops, so a failing test leaks nothing.
pub struct ChildGuard(pub std::process::Child);

impl Drop for ChildGuard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}
