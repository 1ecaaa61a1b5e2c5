//! A deterministic fake of WeChat's server API for tests, local development and `wxgate demo`.
//!
//! Behaviour follows WeChat's server API as it really behaves: errors are HTTP 200 JSON bodies with
//! `errcode`/`errmsg` (errmsg carries a `rid: ...` trace id), codes are single use, and
//! `stable_token` returns the same token per appid until it is force-refreshed. Magic code
//! prefixes (`err<N>`, `slow`, `bad*`, `okstring`) let tests provoke every upstream behaviour the
//! gateway has to survive. See `MockWechat::jscode2session` for the list.

use std::collections::{HashMap, HashSet};
use std::convert::Infallible;
use std::future::Future;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use aws_lc_rs::{digest, hmac, rand};
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine as _;
use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::header::{HeaderValue, CONTENT_TYPE};
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use serde_json::{json, Value};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinSet;

mod userinfo;

type Resp = Response<Full<Bytes>>;
type Params = HashMap<String, String>;

/// Request bodies above this are answered with 47001 instead of being buffered.
const MAX_BODY: usize = 64 * 1024;
/// Distinct paths remembered by `calls`, so a scanner cannot grow the map without bound.
const MAX_COUNTED_PATHS: usize = 1024;
const TOKEN_TTL: Duration = Duration::from_secs(7200);
/// WeChat renews a stable token 5 minutes before expiry, so a handed-out token always has >= 300 s.
const TOKEN_RENEW_BEFORE: Duration = Duration::from_secs(300);
const BIG_BODY: usize = 10 * 1024 * 1024;
const JSON: &str = "application/json; charset=utf-8";
const TEXT: &str = "text/plain";
/// Fixed keys for the malformed answers: those codes must behave identically on every call.
const FIXED_KEY_16: &str = "AAECAwQFBgcICQoLDA0ODw==";
const FIXED_KEY_8: &str = "AAECAwQFBgc=";

/// A deterministic fake of `api.weixin.qq.com`; clones share the same state.
#[derive(Clone)]
pub struct MockWechat {
    inner: Arc<Inner>,
}

/// How a path made to fail with [`MockWechat::fail_path`] answers.
#[derive(Clone, Copy, Debug)]
pub enum Failure {
    /// HTTP 200 with this errcode, as WeChat reports errors.
    Errcode(i64),
    /// This HTTP status, as an API path that does not exist (404) or a broken front (502).
    Status(u16),
}

/// Behaviour knobs for [`MockWechat`].
#[derive(Clone, Debug)]
pub struct MockOptions {
    /// When set, jscode2session / stable_token require exactly these credentials: a wrong appid answers 40013, a wrong secret 40125. When empty, any appid/secret is accepted.
    pub apps: Vec<(String, String)>,
    /// How long `slow` codes (and `slow` phone codes) wait before answering.
    pub slow_delay: Duration,
}

impl Default for MockOptions {
    fn default() -> Self {
        Self {
            apps: Vec::new(),
            slow_delay: Duration::from_secs(10),
        }
    }
}

struct Inner {
    options: MockOptions,
    state: Mutex<State>,
    rid_counter: AtomicU32,
}

#[derive(Default)]
struct State {
    calls: HashMap<String, u64>,
    /// (appid, js_code) pairs already redeemed.
    used_codes: HashSet<(String, String)>,
    used_phone_codes: HashSet<String>,
    /// openid -> current session_key (base64 text).
    session_keys: HashMap<String, String>,
    /// Every valid access token -> (appid, expiry).
    tokens: HashMap<String, (String, Instant)>,
    /// appid -> the token normal-mode stable_token hands out.
    current_token: HashMap<String, String>,
    /// When set, `stable_token` answers this errcode instead of a token.
    token_error: Option<i64>,
    /// Paths made to fail on every call, whatever the request.
    failing: HashMap<String, Failure>,
    /// The last body each token-authenticated API received.
    last_bodies: HashMap<String, Bytes>,
}

impl MockWechat {
    /// A mock with empty state: no codes used, no session keys, no tokens.
    pub fn new(options: MockOptions) -> Self {
        let inner = Inner {
            options,
            state: Mutex::new(State::default()),
            rid_counter: AtomicU32::new(0),
        };
        Self {
            inner: Arc::new(inner),
        }
    }

    /// Serves on `listener` until `shutdown` resolves; each connection via hyper_util auto builder (HTTP/1.1).
    pub async fn serve(
        self,
        listener: TcpListener,
        shutdown: impl Future<Output = ()> + Send,
    ) -> std::io::Result<()> {
        tokio::pin!(shutdown);
        // Connection tasks live in a JoinSet so that returning (dropping it) aborts them: a
        // pooled keep-alive connection must not keep talking to a mock that was shut down.
        let mut conns = JoinSet::new();
        loop {
            tokio::select! {
                () = &mut shutdown => return Ok(()),
                Some(_) = conns.join_next(), if !conns.is_empty() => {}
                accepted = listener.accept() => match accepted {
                    Ok((stream, _)) => {
                        conns.spawn(self.clone().serve_connection(stream));
                    }
                    Err(e) => {
                        // Usually transient (EMFILE, ECONNABORTED): back off instead of spinning.
                        tracing::warn!(error = %e, "mock-wechat accept failed");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                    }
                },
            }
        }
    }

    /// Counts of calls per WeChat API path ("/sns/jscode2session", "/cgi-bin/stable_token", ...), for tests that assert WeChat was called exactly once.
    pub fn calls(&self, path: &str) -> u64 {
        self.state().calls.get(path).copied().unwrap_or(0)
    }

    /// The session_key most recently issued to `openid` (base64 text), so tests can encrypt user data for it.
    pub fn session_key(&self, openid: &str) -> Option<String> {
        self.state().session_keys.get(openid).cloned()
    }

    /// The last body a token-authenticated API (`subscribe/send`, `getwxacodeunlimit`) got.
    pub fn last_body(&self, path: &str) -> Option<Bytes> {
        self.state().last_bodies.get(path).cloned()
    }

    /// Makes every access_token issued so far invalid (as a force refresh elsewhere would):
    /// using one answers 40001, and the next normal-mode `stable_token` issues a new one.
    pub fn revoke_access_tokens(&self) {
        let mut st = self.state();
        st.tokens.clear();
    }

    /// Lets every access_token issued so far expire now: using one answers 42001, and the
    /// next normal-mode `stable_token` issues a new one.
    pub fn expire_access_tokens(&self) {
        let now = Instant::now();
        for (_, expiry) in self.state().tokens.values_mut() {
            *expiry = now;
        }
    }

    /// Makes `stable_token` answer `errcode` (e.g. 45009, 45011, -1) until set to `None`.
    pub fn fail_stable_token(&self, errcode: Option<i64>) {
        self.state().token_error = errcode;
    }

    /// Makes every call to `path` (`/wxa/checksession`, `/wxa/business/getuserphonenumber`…)
    /// fail as `failure` says, until set to `None`. Calls are still counted.
    pub fn fail_path(&self, path: &str, failure: Option<Failure>) {
        let mut st = self.state();
        match failure {
            Some(failure) => st.failing.insert(path.to_owned(), failure),
            None => st.failing.remove(path),
        };
    }

    /// Ends `openid`'s session_key at WeChat (the user logged in elsewhere, or it expired):
    /// `checksession` answers 87009 for it from now on.
    pub fn expire_session_key(&self, openid: &str) {
        self.state().session_keys.remove(openid);
    }

    /// The openid the mock derives for (appid, code) — deterministic. A code
    /// `same-{user}-{anything}` stands for one user logging in again (another device, a
    /// new `wx.login`): its openid comes from `{user}` alone.
    pub fn openid_for(appid: &str, code: &str) -> String {
        format!("o{}", hash27(&format!("{appid}:{}", user_of(code))))
    }

    /// The unionid of a code that asks for one: one per user across every app, as WeChat
    /// gives one per user across an open-platform account's apps.
    pub fn unionid_for(appid: &str, code: &str) -> String {
        match code.starts_with("same-") {
            true => format!("u{}", hash27(&format!("union:{}", user_of(code)))),
            false => format!(
                "u{}",
                hash27(&format!("union:{}", Self::openid_for(appid, code)))
            ),
        }
    }

    fn state(&self) -> MutexGuard<'_, State> {
        // A panic elsewhere must not turn every later request into a panic.
        self.inner
            .state
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    async fn serve_connection(self, stream: TcpStream) {
        let service = service_fn(move |req| {
            let mock = self.clone();
            async move { Ok::<_, Infallible>(mock.handle(req).await) }
        });
        let builder = auto::Builder::new(TokioExecutor::new());
        if let Err(e) = builder
            .serve_connection(TokioIo::new(stream), service)
            .await
        {
            tracing::debug!(error = %e, "mock-wechat connection ended with an error");
        }
    }

    async fn handle(&self, req: Request<Incoming>) -> Resp {
        let path = req.uri().path().to_owned();
        self.count(&path);
        tracing::debug!(%path, "mock-wechat request");
        let failure = self.state().failing.get(&path).copied();
        match failure {
            Some(Failure::Errcode(errcode)) => return self.error(errcode),
            Some(Failure::Status(status)) => {
                let status = StatusCode::from_u16(status).unwrap_or(StatusCode::BAD_GATEWAY);
                return raw_resp(status, TEXT, status.to_string());
            }
            None => {}
        }
        let query = parse_query(req.uri().query());
        match path.as_str() {
            "/sns/jscode2session" => self.jscode2session(&query).await,
            "/cgi-bin/stable_token" => self.stable_token(req).await,
            "/wxa/business/getuserphonenumber" => self.phone_number(&query, req).await,
            "/wxa/checksession" => self.check_session(&query),
            "/mock/userinfo" => self.user_info_answer(&query),
            "/cgi-bin/message/subscribe/send" | "/wxa/getwxacodeunlimit" => {
                self.token_api(&path, &query, req).await
            }
            // WeChat answers unknown paths with HTTP 404.
            _ => json_resp(
                StatusCode::NOT_FOUND,
                &json!({"errcode": -1, "errmsg": "not found"}),
            ),
        }
    }

    fn count(&self, path: &str) {
        let mut st = self.state();
        if let Some(n) = st.calls.get_mut(path) {
            *n += 1;
        } else if st.calls.len() < MAX_COUNTED_PATHS {
            st.calls.insert(path.to_owned(), 1);
        }
    }

    /// `GET /sns/jscode2session`. Code prefixes: `err<N>` answers errcode N; `bad*` answers a
    /// malformed response (never consumed, so they behave the same every time); `slow` waits
    /// `slow_delay`; `okstring` succeeds with `"errcode":"0"` as text/plain; any other code
    /// succeeds once and answers 40163 afterwards.
    async fn jscode2session(&self, q: &Params) -> Resp {
        let Some(appid) = param(q, "appid") else {
            return self.error(41002);
        };
        let Some(secret) = param(q, "secret") else {
            return self.error(41004);
        };
        let Some(code) = param(q, "js_code") else {
            return self.error(41008);
        };
        if param(q, "grant_type") != Some("authorization_code") {
            return self.error(40002);
        }
        if let Some(errcode) = self.check_app(appid, secret).or(errcode_from_code(code)) {
            return self.error(errcode);
        }
        if let Some(resp) = malformed_login(appid, code) {
            return resp;
        }
        // Consume before sleeping, so a concurrent duplicate of a slow code sees 40163 at once.
        let fresh = self
            .state()
            .used_codes
            .insert((appid.to_owned(), code.to_owned()));
        if !fresh {
            return self.error(40163);
        }
        if code.starts_with("slow") {
            tokio::time::sleep(self.inner.options.slow_delay).await;
        }
        self.login_success(appid, code)
    }

    fn login_success(&self, appid: &str, code: &str) -> Resp {
        let openid = Self::openid_for(appid, code);
        let Some(key) = random_bytes::<16>().map(|b| STANDARD.encode(b)) else {
            return self.error(-1);
        };
        self.state()
            .session_keys
            .insert(openid.clone(), key.clone());
        let mut body = json!({"openid": openid, "session_key": key});
        if code.contains("union") {
            body["unionid"] = Self::unionid_for(appid, code).into();
        }
        if code.starts_with("okstring") {
            // Official docs show errcode as a string once, and WeChat sends JSON as text/plain.
            body["errcode"] = "0".into();
            body["errmsg"] = "ok".into();
            return raw_resp(StatusCode::OK, TEXT, body.to_string());
        }
        json_resp(StatusCode::OK, &body)
    }

    fn check_app(&self, appid: &str, secret: &str) -> Option<i64> {
        let apps = &self.inner.options.apps;
        if apps.is_empty() {
            return None;
        }
        match apps.iter().find(|(a, _)| a == appid) {
            None => Some(40013),
            Some((_, s)) if s != secret => Some(40125),
            Some(_) => None,
        }
    }

    /// `POST /cgi-bin/stable_token` with a JSON body.
    async fn stable_token(&self, req: Request<Incoming>) -> Resp {
        if req.method() != Method::POST {
            return self.error(43002);
        }
        let Some(body) = read_json(req).await else {
            return self.error(47001);
        };
        let field = |k: &str| {
            body.get(k)
                .and_then(Value::as_str)
                .filter(|s| !s.is_empty())
        };
        let Some(appid) = field("appid") else {
            return self.error(41002);
        };
        let Some(secret) = field("secret") else {
            return self.error(41004);
        };
        if field("grant_type") != Some("client_credential") {
            return self.error(40002);
        }
        if let Some(errcode) = self.check_app(appid, secret).or(self.state().token_error) {
            return self.error(errcode);
        }
        let force = body.get("force_refresh").and_then(Value::as_bool) == Some(true);
        match self.issue_token(appid, force) {
            Some((token, ttl)) => json_resp(
                StatusCode::OK,
                &json!({"access_token": token, "expires_in": ceil_secs(ttl)}),
            ),
            None => self.error(-1),
        }
    }

    /// Normal mode reuses the current token while it has more than 5 minutes left (the old one
    /// stays valid until it expires); force mode invalidates the old token immediately.
    fn issue_token(&self, appid: &str, force: bool) -> Option<(String, Duration)> {
        let fresh = format!("MOCK_{}", URL_SAFE_NO_PAD.encode(random_bytes::<24>()?));
        let now = Instant::now();
        let mut st = self.state();
        let current = st.current_token.get(appid).cloned();
        if let Some(old) = current {
            if force {
                st.tokens.remove(&old);
            } else if let Some((_, expiry)) = st.tokens.get(&old) {
                let left = expiry.saturating_duration_since(now);
                if left > TOKEN_RENEW_BEFORE {
                    return Some((old, left));
                }
            }
        }
        st.tokens.retain(|_, (_, expiry)| *expiry > now);
        st.tokens
            .insert(fresh.clone(), (appid.to_owned(), now + TOKEN_TTL));
        st.current_token.insert(appid.to_owned(), fresh.clone());
        Some((fresh, TOKEN_TTL))
    }

    /// The appid an access_token belongs to, or the errcode WeChat gives for it.
    fn token_appid(&self, q: &Params) -> Result<String, i64> {
        let token = param(q, "access_token").ok_or(41001)?;
        let mut st = self.state();
        let (appid, expiry) = st.tokens.get(token).cloned().ok_or(40001)?;
        if expiry <= Instant::now() {
            st.tokens.remove(token);
            return Err(42001);
        }
        Ok(appid)
    }

    /// `POST /wxa/business/getuserphonenumber?access_token=...` with `{"code", "openid"?}`.
    async fn phone_number(&self, q: &Params, req: Request<Incoming>) -> Resp {
        if req.method() != Method::POST {
            return self.error(43002);
        }
        let appid = match self.token_appid(q) {
            Ok(appid) => appid,
            Err(errcode) => return self.error(errcode),
        };
        let Some(body) = read_json(req).await else {
            return self.error(47001);
        };
        let code = body.get("code").and_then(Value::as_str).unwrap_or("");
        let openid_ok = body.get("openid").is_none_or(Value::is_string);
        if code.is_empty() || !openid_ok {
            return self.error(47001);
        }
        if let Some(errcode) = errcode_from_code(code) {
            return self.error(errcode);
        }
        if !self.state().used_phone_codes.insert(code.to_owned()) {
            return self.error(40029);
        }
        if code.starts_with("slow") {
            tokio::time::sleep(self.inner.options.slow_delay).await;
        }
        let pure = phone_for(code);
        let info = json!({
            "phoneNumber": format!("+86 {pure}"),
            "purePhoneNumber": pure,
            "countryCode": 86,
            "watermark": {"timestamp": unix_now(), "appid": appid},
        });
        json_resp(
            StatusCode::OK,
            &json!({"errcode": 0, "errmsg": "ok", "phone_info": info}),
        )
    }

    /// A token-authenticated API that a legacy service might call through the relay:
    /// `subscribe/send` answers ok, `getwxacodeunlimit` answers a (fake) PNG image.
    async fn token_api(&self, path: &str, q: &Params, req: Request<Incoming>) -> Resp {
        if req.method() != Method::POST {
            return self.error(43002);
        }
        if let Err(errcode) = self.token_appid(q) {
            return self.error(errcode);
        }
        let body = match Limited::new(req.into_body(), MAX_BODY).collect().await {
            Ok(collected) => collected.to_bytes(),
            Err(_) => return self.error(47001),
        };
        self.state().last_bodies.insert(path.to_owned(), body);
        if path == "/wxa/getwxacodeunlimit" {
            return raw_resp(
                StatusCode::OK,
                "image/png",
                &b"\x89PNG\r\n\x1a\nmock-qr-code"[..],
            );
        }
        json_resp(StatusCode::OK, &json!({"errcode": 0, "errmsg": "ok"}))
    }

    /// `GET /wxa/checksession`: the signature must be made with the openid's *current* key.
    fn check_session(&self, q: &Params) -> Resp {
        if let Err(errcode) = self.token_appid(q) {
            return self.error(errcode);
        }
        if param(q, "sig_method") != Some("hmac_sha256") {
            return self.error(87008);
        }
        let key = param(q, "openid").and_then(|openid| self.session_key(openid));
        let valid = match (key, param(q, "signature")) {
            (Some(key), Some(sig)) => checksession_signature(&key) == sig,
            _ => false,
        };
        if valid {
            json_resp(StatusCode::OK, &json!({"errcode": 0, "errmsg": "ok"}))
        } else {
            self.error(87009)
        }
    }

    /// An HTTP 200 WeChat error body with a realistic errmsg and trace id.
    fn error(&self, errcode: i64) -> Resp {
        let n = self.inner.rid_counter.fetch_add(1, Ordering::Relaxed);
        // Shaped like WeChat's `rid: 6565c3a1-1f2e3d4c-5b6a7988`; unique per answer, not secret.
        let mix = n.wrapping_mul(0x9e37_79b9);
        let rid = format!("{:08x}-{:08x}-{mix:08x}", unix_now(), n);
        let errmsg = format!("{}, rid: {rid}", errmsg(errcode));
        json_resp(
            StatusCode::OK,
            &json!({"errcode": errcode, "errmsg": errmsg}),
        )
    }
}

/// Malformed jscode2session answers for the gateway's defensive-parsing tests.
fn malformed_login(appid: &str, code: &str) -> Option<Resp> {
    let openid = MockWechat::openid_for(appid, code);
    let ok = StatusCode::OK;
    let resp = if code.starts_with("badhtml") {
        let page = "<html><head><title>502 Bad Gateway</title></head><body><center>\
                    <h1>502 Bad Gateway</h1></center><hr><center>nginx</center></body></html>";
        raw_resp(ok, "text/html; charset=utf-8", page)
    } else if code.starts_with("badtext") {
        raw_resp(ok, TEXT, r#"{"errcode":"40029","errmsg":"invalid code"}"#)
    } else if code.starts_with("badstatus") {
        let body = json!({"errcode": -1, "errmsg": "system error"});
        json_resp(StatusCode::INTERNAL_SERVER_ERROR, &body)
    } else if code.starts_with("badbig") {
        raw_resp(ok, JSON, big_body(&openid))
    } else if code.starts_with("badnokey") {
        json_resp(ok, &json!({"openid": openid}))
    } else if code.starts_with("badshortkey") {
        json_resp(ok, &json!({"openid": openid, "session_key": FIXED_KEY_8}))
    } else if code.starts_with("badopenid") {
        // CR LF plus a header line: a gateway that copies the openid into a header would inject it.
        let openid = format!("{openid}\r\nX-Injected: 1");
        json_resp(ok, &json!({"openid": openid, "session_key": FIXED_KEY_16}))
    } else {
        return None;
    };
    Some(resp)
}

/// A syntactically valid success body padded to 10 MiB, to test the gateway's body cap.
fn big_body(openid: &str) -> String {
    let head = format!(r#"{{"openid":"{openid}","session_key":"{FIXED_KEY_16}","padding":""#);
    let tail = r#""}"#;
    let pad = BIG_BODY.saturating_sub(head.len() + tail.len());
    let mut body = String::with_capacity(BIG_BODY);
    body.push_str(&head);
    body.extend(std::iter::repeat_n('a', pad));
    body.push_str(tail);
    body
}

/// `err` + optional `-` + digits (trailing text ignored): `err40029abc` -> 40029, `err-1` -> -1.
fn errcode_from_code(code: &str) -> Option<i64> {
    let rest = code.strip_prefix("err")?;
    let (negative, digits) = match rest.strip_prefix('-') {
        Some(d) => (true, d),
        None => (false, rest),
    };
    let end = digits
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(digits.len());
    // Empty or overflowing digit runs are not error codes; such codes are ordinary codes.
    let n: i64 = digits[..end].parse().ok()?;
    Some(if negative { -n } else { n })
}

fn errmsg(errcode: i64) -> &'static str {
    match errcode {
        -1 => "system error",
        0 => "ok",
        40001 => "invalid credential, access_token is invalid or not latest",
        40002 => "invalid grant_type",
        40013 => "invalid appid",
        40029 => "invalid code",
        40125 => "invalid appsecret",
        40163 => "code been used",
        40226 => "code blocked",
        41001 => "access_token missing",
        41002 => "appid missing",
        41004 => "appsecret missing",
        41008 => "missing code",
        42001 => "access_token expired",
        43002 => "require POST method",
        45011 => "api minute-quota reach limit, must slower, retry next minute",
        47001 => "data format error",
        87008 => "invalid sig_method",
        87009 => "invalid signature",
        _ => "mock error",
    }
}

/// The user a code stands for: `{user}` in `same-{user}-...`, else the code itself.
fn user_of(code: &str) -> &str {
    code.strip_prefix("same-")
        .and_then(|rest| rest.split_once('-'))
        .map_or(code, |(user, _)| user)
}

/// First 27 characters of base64url-no-pad(SHA-256(input)): 28-char ids like real openids.
fn hash27(input: &str) -> String {
    let hash = digest::digest(&digest::SHA256, input.as_bytes());
    let mut text = URL_SAFE_NO_PAD.encode(hash.as_ref());
    text.truncate(27);
    text
}

/// `138` + 8 digits derived from the phone code.
fn phone_for(code: &str) -> String {
    let hash = digest::digest(&digest::SHA256, format!("phone:{code}").as_bytes());
    let mut first = [0u8; 8];
    first.copy_from_slice(&hash.as_ref()[..8]);
    format!("138{:08}", u64::from_be_bytes(first) % 100_000_000)
}

/// Lowercase hex HMAC-SHA256 keyed with the session_key's base64 *text*, over the empty string.
fn checksession_signature(session_key: &str) -> String {
    let key = hmac::Key::new(hmac::HMAC_SHA256, session_key.as_bytes());
    let tag = hmac::sign(&key, b"");
    tag.as_ref().iter().map(|b| format!("{b:02x}")).collect()
}

fn random_bytes<const N: usize>() -> Option<[u8; N]> {
    let mut buf = [0u8; N];
    rand::fill(&mut buf).ok()?;
    Some(buf)
}

/// Whole seconds rounded up, so a token re-served within the same second still says 7200.
fn ceil_secs(d: Duration) -> u64 {
    d.as_secs() + u64::from(d.subsec_nanos() > 0)
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// Query parameters; the first occurrence of a repeated name wins.
fn parse_query(query: Option<&str>) -> Params {
    let mut params = Params::new();
    for (k, v) in url::form_urlencoded::parse(query.unwrap_or("").as_bytes()) {
        params
            .entry(k.into_owned())
            .or_insert_with(|| v.into_owned());
    }
    params
}

/// A parameter that is present and non-empty (WeChat treats empty as missing).
fn param<'a>(params: &'a Params, name: &str) -> Option<&'a str> {
    params
        .get(name)
        .map(String::as_str)
        .filter(|v| !v.is_empty())
}

/// A bounded JSON object body; oversized, unreadable or non-object bodies are `None` (47001).
async fn read_json(req: Request<Incoming>) -> Option<Value> {
    let collected = Limited::new(req.into_body(), MAX_BODY)
        .collect()
        .await
        .ok()?;
    serde_json::from_slice::<Value>(&collected.to_bytes())
        .ok()
        .filter(Value::is_object)
}

fn json_resp(status: StatusCode, body: &Value) -> Resp {
    raw_resp(status, JSON, body.to_string())
}

fn raw_resp(status: StatusCode, content_type: &'static str, body: impl Into<Bytes>) -> Resp {
    let mut resp = Response::new(Full::new(body.into()));
    *resp.status_mut() = status;
    resp.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    resp
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    #[test]
    fn same_codes_stand_for_one_user_with_one_unionid_across_apps() {
        let (a, b) = ("wx0123456789abcdef", "wxother");
        let first = MockWechat::openid_for(a, "same-ann-1");
        assert_eq!(first, MockWechat::openid_for(a, "same-ann-union2"));
        assert_ne!(first, MockWechat::openid_for(a, "same-bob-1"));
        assert_ne!(
            first,
            MockWechat::openid_for(b, "same-ann-1"),
            "openids are per app"
        );
        assert_eq!(
            MockWechat::unionid_for(a, "same-ann-union1"),
            MockWechat::unionid_for(b, "same-ann-union2")
        );
    }

    #[test]
    fn openid_is_deterministic_and_well_formed() {
        let a = MockWechat::openid_for("wx0123456789abcdef", "code1");
        assert_eq!(a, MockWechat::openid_for("wx0123456789abcdef", "code1"));
        assert_ne!(a, MockWechat::openid_for("wx0123456789abcdef", "code2"));
        assert_ne!(a, MockWechat::openid_for("wxother", "code1"));
        assert_eq!(a.len(), 28);
        assert!(a.starts_with('o'));
        let charset = |c: char| c.is_ascii_alphanumeric() || c == '_' || c == '-';
        assert!(a.chars().all(charset));
    }

    #[test]
    fn errcode_codes_parse() {
        assert_eq!(errcode_from_code("err40029"), Some(40029));
        assert_eq!(errcode_from_code("err40029abc"), Some(40029));
        assert_eq!(errcode_from_code("err-1"), Some(-1));
        assert_eq!(errcode_from_code("err99999"), Some(99999));
        assert_eq!(errcode_from_code("err"), None);
        assert_eq!(errcode_from_code("err-"), None);
        assert_eq!(errcode_from_code("errand"), None);
        assert_eq!(errcode_from_code("err99999999999999999999999"), None);
        assert_eq!(errcode_from_code("abc"), None);
    }

    #[test]
    fn checksession_hmac_vector() {
        assert_eq!(
            checksession_signature("o0q0otL8aEzpcZL/FT9WsQ=="),
            "46e043c5525c2d817c44be603d30837a808a1d930d038f6fdc3e62a201fed128"
        );
    }

    #[test]
    fn phone_is_deterministic() {
        let p = phone_for("abc");
        assert_eq!(p, phone_for("abc"));
        assert_eq!(p.len(), 11);
        assert!(p.starts_with("138") && p.chars().all(|c| c.is_ascii_digit()));
    }

    async fn get(addr: std::net::SocketAddr, target: &str) -> (String, Value) {
        let mut stream = TcpStream::connect(addr).await.unwrap();
        let request = format!("GET {target} HTTP/1.1\r\nHost: mock\r\nConnection: close\r\n\r\n");
        stream.write_all(request.as_bytes()).await.unwrap();
        let mut raw = String::new();
        stream.read_to_string(&mut raw).await.unwrap();
        let (head, body) = raw.split_once("\r\n\r\n").unwrap();
        let status = head.lines().next().unwrap().to_owned();
        (status, serde_json::from_str(body).unwrap())
    }

    #[tokio::test]
    async fn serves_login_and_rejects_reused_code() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let mock = MockWechat::new(MockOptions::default());
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let server = tokio::spawn(mock.clone().serve(listener, async {
            let _ = stopped.await;
        }));
        let target =
            "/sns/jscode2session?appid=wxapp&secret=s&js_code=union1&grant_type=authorization_code";

        let (status, body) = get(addr, target).await;
        assert_eq!(status, "HTTP/1.1 200 OK");
        let openid = MockWechat::openid_for("wxapp", "union1");
        assert_eq!(body["openid"], openid.as_str());
        assert_eq!(
            body["session_key"],
            mock.session_key(&openid).unwrap().as_str()
        );
        assert!(body["unionid"].as_str().unwrap().starts_with('u'));

        let (_, body) = get(addr, target).await;
        assert_eq!(body["errcode"], 40163);
        assert!(body["errmsg"].as_str().unwrap().contains("rid: "));
        assert_eq!(mock.calls("/sns/jscode2session"), 2);

        stop.send(()).unwrap();
        server.await.unwrap().unwrap();
    }
}
