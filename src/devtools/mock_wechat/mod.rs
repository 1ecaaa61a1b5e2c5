//! A deterministic fake of WeChat's server API for tests, local development and `wxgate demo`.
//!
//! Behaviour follows WeChat's server API as it really behaves: errors are HTTP 200 JSON bodies with
//! `errcode`/`errmsg` (errmsg carries a `rid: ...` trace id), codes are single use, and
//! `stable_token` returns the same token per appid until it is force-refreshed. Magic code
//! prefixes (`err<N>`, `slow`, `bad*`, `okstring`) let tests provoke every upstream behaviour the
//! gateway has to survive. See `MockWechat::jscode2session` for the list.
//!
//! This file holds the server, its state and options, and the routing. `login` serves
//! jscode2session and keeps the codes it has seen; `token` serves stable_token and checks
//! access tokens; `calls` serves the APIs called with a token; `userinfo` seals the user data
//! a client would receive; `wire` encodes answers as WeChat does and the faults to inject.

use std::collections::{HashMap, HashSet};
use std::convert::Infallible;
use std::future::Future;
use std::sync::atomic::AtomicU32;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use aws_lc_rs::rand;
use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use serde_json::json;
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinSet;

use wire::{json_resp, parse_query};

mod calls;
mod login;
mod token;
mod userinfo;
mod wire;

type Resp = Response<Full<Bytes>>;
type Params = HashMap<String, String>;

/// Request bodies above this are answered with 47001 instead of being buffered.
const MAX_BODY: usize = 64 * 1024;
/// Distinct paths remembered by `calls`, so a scanner cannot grow the map without bound.
const MAX_COUNTED_PATHS: usize = 1024;

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

    /// Makes every call to `path` (`/wxa/checksession`, `/wxa/business/getuserphonenumber`…)
    /// fail as `failure` says, until set to `None`. Calls are still counted.
    pub fn fail_path(&self, path: &str, failure: Option<Failure>) {
        let mut st = self.state();
        match failure {
            Some(failure) => st.failing.insert(path.to_owned(), failure),
            None => st.failing.remove(path),
        };
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
        if let Some(failure) = failure {
            return self.fault(failure);
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

    /// The errcode for credentials [`MockOptions::apps`] does not hold (40013 unknown appid,
    /// 40125 wrong secret); `None` when it holds them or is empty.
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
}

fn random_bytes<const N: usize>() -> Option<[u8; N]> {
    let mut buf = [0u8; N];
    rand::fill(&mut buf).ok()?;
    Some(buf)
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::Value;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

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
