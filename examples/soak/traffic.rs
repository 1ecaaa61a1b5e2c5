//! The clients: each worker logs in, calls the upstream through both instances (GET, POST
//! with a body, a WebSocket echo), decrypts user data, reads its session, refreshes, and
//! sometimes logs out and measures how soon the other instance refuses the token.
//! Every request has a client timeout and ends as one [`Record`].

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use wxgate::devtools::mock_wechat::MockWechat;

pub const APPID: &str = "wx50a50a50a50a50a5";
/// No request waits longer than this: one that does counts as a failure (`timeout`).
pub const CLIENT_TIMEOUT: Duration = Duration::from_secs(10);
/// How long the other instance gets to refuse a logged-out token before the probe gives up.
const PROBE_LIMIT: Duration = Duration::from_secs(5);

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Kind {
    Login,
    Refresh,
    Get,
    Post,
    WebSocket,
    Decrypt,
    Session,
    Logout,
    /// The other instance's answers to a logged-out token, until the first 401.
    Probe,
    /// Sessions made before a Redis kill and refreshed after the restart.
    Survival,
}

impl Kind {
    pub const ALL: [Kind; 10] = [
        Kind::Login,
        Kind::Refresh,
        Kind::Get,
        Kind::Post,
        Kind::WebSocket,
        Kind::Decrypt,
        Kind::Session,
        Kind::Logout,
        Kind::Probe,
        Kind::Survival,
    ];
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    Status(u16),
    /// The expected status with the wrong content (another openid, a body not echoed…).
    Wrong(u16),
    /// No answer within [`CLIENT_TIMEOUT`].
    Timeout,
    /// The connection closed (or never opened) without an answer.
    Closed,
}

#[derive(Clone, Copy, Debug)]
pub struct Record {
    pub kind: Kind,
    /// Seconds since the start of the soak.
    pub start: f64,
    pub end: f64,
    pub outcome: Outcome,
}

/// What the workers share with the fault schedule and the report.
pub struct Shared {
    pub t0: Instant,
    pub gateways: [SocketAddr; 2],
    pub mock: MockWechat,
    pub http: reqwest::Client,
    pub records: Mutex<Vec<Record>>,
    /// Revocation latencies (seconds) of probes made while no fault was injected.
    pub revocations: Mutex<Vec<f64>>,
    /// Probes skipped because a fault window was open.
    pub probes_skipped: AtomicU64,
    /// WeChat answers slowly: logins use `slow` codes, which the mock holds for its delay.
    pub wechat_slow: AtomicBool,
    /// Some fault window is open (or in its grace period).
    pub faulty: AtomicU64,
    pub stop: AtomicBool,
    codes: AtomicU64,
}

impl Shared {
    pub fn new(gateways: [SocketAddr; 2], mock: MockWechat) -> anyhow::Result<Self> {
        let http = reqwest::Client::builder()
            .timeout(CLIENT_TIMEOUT)
            .pool_max_idle_per_host(16)
            // Under the gateway's 10 s idle limit (`header_read_timeout`), so that a pooled
            // connection is never reused at the moment the gateway closes it.
            .pool_idle_timeout(Duration::from_secs(5))
            .build()?;
        Ok(Self {
            t0: Instant::now(),
            gateways,
            mock,
            http,
            records: Mutex::new(Vec::new()),
            revocations: Mutex::new(Vec::new()),
            probes_skipped: AtomicU64::new(0),
            wechat_slow: AtomicBool::new(false),
            faulty: AtomicU64::new(0),
            stop: AtomicBool::new(false),
            codes: AtomicU64::new(0),
        })
    }

    pub fn now(&self) -> f64 {
        self.t0.elapsed().as_secs_f64()
    }

    fn record(&self, kind: Kind, start: f64, outcome: Outcome) {
        let record = Record {
            kind,
            start,
            end: self.now(),
            outcome,
        };
        self.records
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(record);
    }

    fn url(&self, instance: usize, path: &str) -> String {
        format!("http://{}{path}", self.gateways[instance % 2])
    }

    fn quiet(&self) -> bool {
        self.faulty.load(Ordering::SeqCst) == 0
    }
}

/// A logged-in user as the mini-program holds it.
pub struct User {
    pub code: String,
    pub openid: String,
    pub access: String,
    pub refresh: String,
}

/// An answer: its status, and its body as JSON when it was JSON.
struct Answer {
    status: u16,
    text: String,
    json: Value,
    seen_openid: Option<String>,
}

/// One HTTP request, recorded; the answer when one came.
async fn send(
    shared: &Shared,
    kind: Kind,
    request: reqwest::RequestBuilder,
    check: impl FnOnce(&Answer) -> bool,
) -> Option<Answer> {
    let start = shared.now();
    let result = async {
        let resp = request.send().await?;
        let status = resp.status().as_u16();
        let seen_openid = resp
            .headers()
            .get("x-seen-openid")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let text = resp.text().await?;
        let json = serde_json::from_str(&text).unwrap_or(Value::Null);
        Ok::<_, reqwest::Error>(Answer {
            status,
            text,
            json,
            seen_openid,
        })
    }
    .await;
    match result {
        Ok(answer) => {
            let outcome = if check(&answer) {
                Outcome::Status(answer.status)
            } else {
                Outcome::Wrong(answer.status)
            };
            shared.record(kind, start, outcome);
            Some(answer)
        }
        Err(e) => {
            let outcome = if e.is_timeout() {
                Outcome::Timeout
            } else {
                Outcome::Closed
            };
            shared.record(kind, start, outcome);
            None
        }
    }
}

/// `POST /auth/login` with a fresh code (a `slow` one while WeChat is slow).
pub async fn login(shared: &Shared, instance: usize, kind: Kind) -> Option<User> {
    let n = shared.codes.fetch_add(1, Ordering::SeqCst);
    let slow = shared.wechat_slow.load(Ordering::SeqCst);
    let code = format!("{}soak{n}", if slow { "slow" } else { "" });
    let openid = MockWechat::openid_for(APPID, &code);
    let request = shared
        .http
        .post(shared.url(instance, "/auth/login"))
        .json(&json!({ "code": code }));
    let answer = send(shared, kind, request, |a| {
        a.status != 200 || a.json["openid"] == openid.as_str()
    })
    .await?;
    tokens(&answer).map(|(access, refresh)| User {
        code,
        openid,
        access,
        refresh,
    })
}

fn tokens(answer: &Answer) -> Option<(String, String)> {
    if answer.status != 200 {
        return None;
    }
    let access = answer.json["access_token"].as_str()?.to_owned();
    let refresh = answer.json["refresh_token"].as_str()?.to_owned();
    Some((access, refresh))
}

/// `POST /auth/refresh`; the user's tokens are replaced when it works.
pub async fn refresh(shared: &Shared, instance: usize, user: &mut User, kind: Kind) -> bool {
    let request = shared
        .http
        .post(shared.url(instance, "/auth/refresh"))
        .json(&json!({ "refresh_token": user.refresh }));
    let openid = user.openid.clone();
    let answer = send(shared, kind, request, |a| {
        a.status != 200 || a.json["openid"] == openid.as_str()
    })
    .await;
    match answer.as_ref().and_then(tokens) {
        Some((access, refresh)) => {
            user.access = access;
            user.refresh = refresh;
            true
        }
        None => false,
    }
}

async fn get(shared: &Shared, instance: usize, user: &User) -> bool {
    let request = shared
        .http
        .get(shared.url(instance, "/api/items?page=1"))
        .bearer_auth(&user.access);
    let answer = send(shared, Kind::Get, request, |a| {
        a.status != 200
            || (a.seen_openid.as_deref() == Some(&user.openid) && a.text == "GET /api/items\n")
    })
    .await;
    answer.is_some_and(|a| a.status == 200)
}

async fn post(shared: &Shared, instance: usize, user: &User, n: u64) -> bool {
    // A few KiB, so that bodies are streamed rather than fit in one read.
    let body = format!(
        "{{\"n\":{n},\"pad\":\"{}\"}}",
        "x".repeat(4096 + (n as usize % 512))
    );
    let expected = format!("POST /api/orders\n{body}");
    let request = shared
        .http
        .post(shared.url(instance, "/api/orders"))
        .bearer_auth(&user.access)
        .header("content-type", "application/json")
        .body(body);
    let answer = send(shared, Kind::Post, request, |a| {
        a.status != 200 || (a.seen_openid.as_deref() == Some(&user.openid) && a.text == expected)
    })
    .await;
    answer.is_some_and(|a| a.status == 200)
}

async fn session(shared: &Shared, instance: usize, user: &User) {
    let request = shared
        .http
        .get(shared.url(instance, "/auth/session"))
        .bearer_auth(&user.access);
    send(shared, Kind::Session, request, |a| {
        a.status != 200 || a.json["openid"] == user.openid.as_str()
    })
    .await;
}

/// `POST /auth/decrypt` of the user data the mock sealed with this login's session_key.
async fn decrypt(shared: &Shared, instance: usize, user: &User) {
    let Some(data) = shared.mock.user_info(APPID, &user.code) else {
        return;
    };
    let request = shared
        .http
        .post(shared.url(instance, "/auth/decrypt"))
        .bearer_auth(&user.access)
        .json(&data);
    send(shared, Kind::Decrypt, request, |a| {
        a.status != 200 || a.json["openId"] == user.openid.as_str()
    })
    .await;
}

/// `POST /auth/logout` on one instance, then the other instance's answers to the token
/// until it refuses it: the revocation latency, measured from the logout's 204.
async fn logout_and_probe(shared: &Shared, instance: usize, user: &User) {
    let request = shared
        .http
        .post(shared.url(instance, "/auth/logout"))
        .bearer_auth(&user.access);
    let quiet_before = shared.quiet();
    let answer = send(shared, Kind::Logout, request, |_| true).await;
    if answer.is_none_or(|a| a.status != 204) {
        return;
    }
    let logged_out = Instant::now();
    let start = shared.now();
    loop {
        let request = shared
            .http
            .get(shared.url(instance + 1, "/api/probe"))
            .bearer_auth(&user.access)
            .timeout(Duration::from_secs(2));
        let status = match request.send().await {
            Ok(resp) => resp.status().as_u16(),
            Err(_) => 0,
        };
        if status == 401 {
            let latency = logged_out.elapsed().as_secs_f64();
            shared.record(Kind::Probe, start, Outcome::Status(401));
            if quiet_before && shared.quiet() {
                shared
                    .revocations
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .push(latency);
            } else {
                shared.probes_skipped.fetch_add(1, Ordering::SeqCst);
            }
            return;
        }
        if logged_out.elapsed() > PROBE_LIMIT {
            shared.record(Kind::Probe, start, Outcome::Wrong(status));
            return;
        }
        // Polling, not waiting for readiness: the latency is what is being measured.
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// A WebSocket upgrade through the gateway and three masked frames echoed back unchanged.
async fn websocket(shared: &Shared, instance: usize, user: &User, n: u64) {
    let start = shared.now();
    let addr = shared.gateways[instance % 2];
    let outcome = tokio::time::timeout(CLIENT_TIMEOUT, ws_echo(addr, &user.access, n))
        .await
        .unwrap_or(Outcome::Timeout);
    shared.record(Kind::WebSocket, start, outcome);
}

async fn ws_echo(addr: SocketAddr, token: &str, n: u64) -> Outcome {
    let Ok(mut stream) = TcpStream::connect(addr).await else {
        return Outcome::Closed;
    };
    let key = STANDARD.encode([n.to_be_bytes(), (!n).to_be_bytes()].concat());
    let head = format!(
        "GET /api/ws HTTP/1.1\r\nHost: soak\r\nAuthorization: Bearer {token}\r\n\
         Connection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\n\
         Sec-WebSocket-Key: {key}\r\n\r\n"
    );
    if stream.write_all(head.as_bytes()).await.is_err() {
        return Outcome::Closed;
    }
    let mut buf = Vec::new();
    let end = loop {
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
        let mut chunk = [0u8; 1024];
        match stream.read(&mut chunk).await {
            Ok(0) | Err(_) => return Outcome::Closed,
            Ok(read) => buf.extend_from_slice(&chunk[..read]),
        }
    };
    let status_line = String::from_utf8_lossy(&buf[..end]);
    let Some(status) = status_line
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse::<u16>().ok())
    else {
        return Outcome::Wrong(0);
    };
    if status != 101 {
        return Outcome::Status(status);
    }
    let mut echoed = buf.split_off(end);
    for i in 0..3u8 {
        let frame = masked_text(format!("frame {i} of {n}").as_bytes(), [i, 7, 42, 99]);
        if stream.write_all(&frame).await.is_err() {
            return Outcome::Closed;
        }
        while echoed.len() < frame.len() {
            let mut chunk = [0u8; 1024];
            match stream.read(&mut chunk).await {
                Ok(0) | Err(_) => return Outcome::Closed,
                Ok(read) => echoed.extend_from_slice(&chunk[..read]),
            }
        }
        let rest = echoed.split_off(frame.len());
        if echoed != frame {
            return Outcome::Wrong(101);
        }
        echoed = rest;
    }
    Outcome::Status(101)
}

/// A final text frame with a payload under 126 bytes, masked as a client must (RFC 6455 5.3).
fn masked_text(payload: &[u8], mask: [u8; 4]) -> Vec<u8> {
    let mut frame = vec![0x81, 0x80 | payload.len() as u8];
    frame.extend_from_slice(&mask);
    frame.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
    frame
}

/// One client, looping until the soak ends: a login, then rounds of calls through both
/// instances with a refresh each round; every fourth user logs out and probes, the others
/// just go away (their sessions expire).
pub async fn worker(shared: Arc<Shared>, id: u64) {
    let mut n = id * 1_000_000;
    let pause = Duration::from_millis(5);
    while !shared.stop.load(Ordering::SeqCst) {
        n += 1;
        let home = (n % 2) as usize;
        let Some(mut user) = login(&shared, home, Kind::Login).await else {
            tokio::time::sleep(Duration::from_millis(100)).await;
            continue;
        };
        decrypt(&shared, home + 1, &user).await;
        for round in 0..4usize {
            if shared.stop.load(Ordering::SeqCst) {
                return;
            }
            let a = home + round;
            get(&shared, a, &user).await;
            post(&shared, a + 1, &user, n).await;
            if round % 2 == 0 {
                websocket(&shared, a, &user, n * 4 + round as u64).await;
            }
            session(&shared, a + 1, &user).await;
            // A refresh that failed may still have spent the token (a lost answer): log in
            // again rather than present a token that may now be a replay.
            if !refresh(&shared, a, &mut user, Kind::Refresh).await {
                break;
            }
            tokio::time::sleep(pause).await;
        }
        if n % 4 == 0 {
            logout_and_probe(&shared, home, &user).await;
        }
    }
}
