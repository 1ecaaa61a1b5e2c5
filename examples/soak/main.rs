//! A soak with injected faults: two wxgate instances (the release binary, as children)
//! sharing one real `redis-server`, mixed traffic from several clients for `SOAK` (10m by
//! default), and faults on a schedule scaled to the run: WeChat slow and erroring, the
//! upstream resetting connections and stalling, Redis SIGKILLed and restarted, SIGHUP
//! reloads. Prints a table and exits non-zero when an assertion fails. See bench/README.md.
//!
//!   SOAK=60s WXGATE_BIN=target/release/wxgate cargo run --release --example soak

// A bench tool: it may panic on what it set up, and its modules' items are `pub`.
#![allow(clippy::unwrap_used, clippy::expect_used, unreachable_pub)]

mod procs;
mod report;
mod traffic;
mod upstream;

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use tokio::net::TcpListener;
use wxgate::devtools::mock_wechat::{Failure, MockOptions, MockWechat};

use procs::{Gateway, Redis};
use traffic::{Kind, Shared, User};
use upstream::{Mode, Upstream};

/// Concurrent clients.
const WORKERS: u64 = 6;
/// After a fault window closes, this long is still excused: circuit breakers that opened
/// in the window stay open for `circuit_open_for` (2 s) after a WeChat timeout (2 s).
pub const GRACE: f64 = 8.0;
/// The mock holds `slow` codes this long: twice the gateway's `wechat.timeout`.
const SLOW_DELAY: Duration = Duration::from_secs(4);
/// Sessions made before each Redis kill and checked after its restart.
const SURVIVORS: usize = 10;
/// The instances' `access_ttl`; the memory check starts a minute after it (see report.rs).
pub const ACCESS_TTL: Duration = Duration::from_secs(120);

#[derive(Clone, Copy, Debug)]
pub enum Fault {
    WechatSlow,
    WechatError(Failure),
    UpstreamReset,
    UpstreamStall,
    RedisKill,
    Reload(usize),
}

impl Fault {
    pub fn label(&self) -> String {
        match self {
            Fault::WechatSlow => "WeChat slow (4 s > timeout 2 s)".into(),
            Fault::WechatError(Failure::Errcode(e)) => format!("WeChat errcode {e}"),
            Fault::WechatError(Failure::Status(s)) => format!("WeChat HTTP {s}"),
            Fault::UpstreamReset => "upstream resets connections".into(),
            Fault::UpstreamStall => "upstream stalls".into(),
            Fault::RedisKill => "Redis SIGKILL, restart".into(),
            Fault::Reload(i) => format!("SIGHUP instance {}", ["A", "B"][*i]),
        }
    }

    /// Whether a failure of `kind` during this fault (or its grace) is the fault's doing.
    pub fn excuses(&self, kind: Kind) -> bool {
        use Kind::*;
        match self {
            Fault::WechatSlow | Fault::WechatError(_) => matches!(kind, Login),
            Fault::UpstreamReset | Fault::UpstreamStall => matches!(kind, Get | Post | WebSocket),
            Fault::RedisKill => matches!(kind, Login | Refresh | Decrypt | Session | Logout),
            // A reload must be invisible to clients.
            Fault::Reload(_) => false,
        }
    }
}

/// An injected fault, from its start to its end, in seconds since the soak began.
#[derive(Clone, Copy, Debug)]
pub struct Window {
    pub fault: Fault,
    pub start: f64,
    pub end: f64,
}

/// One sample of a gateway's resources.
#[derive(Clone, Copy, Debug)]
pub struct Sample {
    pub at: f64,
    pub instance: usize,
    pub rss_kib: u64,
    pub fds: u64,
    /// jemalloc's allocated and resident bytes, from the instance's `/metrics` (KiB).
    pub heap: Option<(u64, u64)>,
}

/// The outcome of the session-survival checks around the Redis kills.
#[derive(Default, Debug)]
pub struct Survival {
    pub stored: usize,
    pub lost: usize,
}

fn parse_duration(text: &str) -> Result<Duration> {
    let (number, unit) = match text.strip_suffix('m') {
        Some(n) => (n, 60),
        None => (text.strip_suffix('s').unwrap_or(text), 1),
    };
    let n: u64 = number
        .parse()
        .with_context(|| format!("SOAK={text}: use seconds (90s) or minutes (10m)"))?;
    if n * unit < 30 {
        bail!("SOAK={text}: at least 30s");
    }
    Ok(Duration::from_secs(n * unit))
}

fn config(mock: &str, upstream: &str, redis: &str, secret: &str) -> String {
    format!(
        r#"# written by the soak (examples/soak)
[server]
listen = "127.0.0.1:0"
[admin]
listen = "127.0.0.1:0"
[wechat]
api_base = "http://{mock}"
timeout = "2s"
circuit_open_for = "2s"
[[wechat.apps]]
appid = "{appid}"
secret = "soak-app-secret"
[auth]
audience = "soak"
# Short, so that the verified-token cache (entries live until their token's exp) reaches
# its steady size within the run: the memory check compares after that.
access_ttl = "{access_ttl}s"
[auth.login_rate_limit]   # every client of the soak is 127.0.0.1
per_minute = 1000000
burst = 100000
[[auth.keys]]
kid = "soak"
alg = "HS256"
secret = "{secret}"
[store]
backend = "redis"
url = "{redis}"
[[routes]]
prefix = "/api"
upstream = "http://{upstream}"
auth = "required"
connect_timeout = "1s"
response_timeout = "2s"
"#,
        appid = traffic::APPID,
        access_ttl = ACCESS_TTL.as_secs()
    )
}

struct Soak {
    shared: Arc<Shared>,
    gateways: Vec<Gateway>,
    redis: Mutex<Redis>,
    upstream: Upstream,
    windows: Mutex<Vec<Window>>,
    survival: Mutex<Survival>,
}

impl Soak {
    /// Opens a window: from now on, revocation probes are not counted as quiet ones.
    fn open(&self) -> f64 {
        self.shared.faulty.fetch_add(1, Ordering::SeqCst);
        self.shared.now()
    }

    /// Closes a window; the probes stay excluded from latency figures until the grace ends.
    fn close(self: &Arc<Self>, fault: Fault, start: f64) {
        let end = self.shared.now();
        self.windows
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(Window { fault, start, end });
        let shared = self.shared.clone();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_secs_f64(GRACE)).await;
            shared.faulty.fetch_sub(1, Ordering::SeqCst);
        });
    }

    async fn inject(self: &Arc<Self>, fault: Fault, length: Duration) -> Result<()> {
        let mock = &self.shared.mock;
        match fault {
            Fault::WechatSlow => {
                let start = self.open();
                self.shared.wechat_slow.store(true, Ordering::SeqCst);
                tokio::time::sleep(length).await;
                self.shared.wechat_slow.store(false, Ordering::SeqCst);
                self.close(fault, start);
            }
            Fault::WechatError(failure) => {
                let start = self.open();
                mock.fail_path("/sns/jscode2session", Some(failure));
                tokio::time::sleep(length).await;
                mock.fail_path("/sns/jscode2session", None);
                self.close(fault, start);
            }
            Fault::UpstreamReset | Fault::UpstreamStall => {
                let start = self.open();
                let mode = if matches!(fault, Fault::UpstreamReset) {
                    Mode::Reset
                } else {
                    Mode::Stall
                };
                self.upstream.set(mode);
                tokio::time::sleep(length).await;
                self.upstream.set(Mode::Normal);
                self.close(fault, start);
            }
            Fault::RedisKill => self.redis_kill(length).await?,
            Fault::Reload(i) => {
                let start = self.shared.now();
                self.gateways[i].reload().await?;
                self.windows
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .push(Window {
                        fault,
                        start,
                        end: self.shared.now(),
                    });
            }
        }
        Ok(())
    }

    /// Sessions are stored, Redis is SIGKILLed and restarted on its port after `length`;
    /// once both instances are ready again every stored session must still refresh.
    async fn redis_kill(self: &Arc<Self>, length: Duration) -> Result<()> {
        let mut stored: Vec<User> = Vec::new();
        for i in 0..SURVIVORS {
            if let Some(user) = traffic::login(&self.shared, i, Kind::Login).await {
                stored.push(user);
            }
        }
        let start = self.open();
        tokio::task::block_in_place(|| self.redis().kill())?;
        tokio::time::sleep(length).await;
        tokio::task::block_in_place(|| self.redis().spawn())?;
        for gateway in &self.gateways {
            wait_ready(&self.shared.http, gateway).await?;
        }
        self.close(Fault::RedisKill, start);
        let mut lost = 0;
        for (i, user) in stored.iter_mut().enumerate() {
            if !traffic::refresh(&self.shared, i + 1, user, Kind::Survival).await {
                lost += 1;
            }
        }
        let mut survival = self.survival.lock().unwrap_or_else(PoisonError::into_inner);
        survival.stored += stored.len();
        survival.lost += lost;
        Ok(())
    }

    fn redis(&self) -> std::sync::MutexGuard<'_, Redis> {
        self.redis.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

async fn wait_ready(http: &reqwest::Client, gateway: &Gateway) -> Result<()> {
    let url = format!("http://{}/readyz", gateway.admin);
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let ready = http
            .get(&url)
            .timeout(Duration::from_secs(2))
            .send()
            .await
            .is_ok_and(|r| r.status() == 200);
        if ready {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!("{} not ready within 60 s", gateway.name);
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The faults, as (fraction of the run, fault): a quiet first tenth, then every kind at
/// least twice, and a quiet last tenth (minus the last fault's grace).
fn schedule() -> Vec<(f64, Fault)> {
    vec![
        (0.10, Fault::WechatSlow),
        (0.17, Fault::UpstreamReset),
        (0.24, Fault::RedisKill),
        (0.31, Fault::Reload(0)),
        (0.35, Fault::WechatError(Failure::Errcode(-1))),
        (0.42, Fault::UpstreamStall),
        (0.49, Fault::Reload(1)),
        (0.53, Fault::RedisKill),
        (0.60, Fault::WechatError(Failure::Status(502))),
        (0.66, Fault::UpstreamReset),
        (0.72, Fault::Reload(0)),
        (0.74, Fault::Reload(1)),
        (0.77, Fault::UpstreamStall),
        (0.83, Fault::WechatSlow),
        (0.88, Fault::RedisKill),
    ]
}

async fn run_schedule(soak: Arc<Soak>, total: Duration) -> Result<()> {
    // Each window lasts 4% of the run, at least 4 s (24 s in a 10-minute run).
    let length = total.mul_f64(0.04).max(Duration::from_secs(4));
    for (at, fault) in schedule() {
        let due = soak.shared.t0 + total.mul_f64(at);
        tokio::time::sleep_until(due.into()).await;
        println!("{:>7.1}s  {}", soak.shared.now(), fault.label());
        soak.inject(fault, length).await?;
    }
    Ok(())
}

/// VmRSS, open fds and the allocator's figures of each instance, every 2 s.
async fn sample(soak: Arc<Soak>, samples: Arc<Mutex<Vec<Sample>>>) {
    while !soak.shared.stop.load(Ordering::SeqCst) {
        for (instance, gateway) in soak.gateways.iter().enumerate() {
            let heap = heap_kib(&soak.shared.http, gateway.admin).await;
            if let Some((rss_kib, fds)) = gateway.usage() {
                samples
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .push(Sample {
                        at: soak.shared.now(),
                        instance,
                        rss_kib,
                        fds,
                        heap,
                    });
            }
        }
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
}

/// `wxgate_heap_allocated_bytes` and `wxgate_heap_resident_bytes` from the admin listener,
/// in KiB; `None` when the scrape fails (during a fault it may).
async fn heap_kib(http: &reqwest::Client, admin: std::net::SocketAddr) -> Option<(u64, u64)> {
    let text = http
        .get(format!("http://{admin}/metrics"))
        .timeout(Duration::from_secs(1))
        .send()
        .await
        .ok()?
        .text()
        .await
        .ok()?;
    let gauge = |name: &str| -> Option<u64> {
        text.lines()
            .find_map(|line| line.strip_prefix(name)?.strip_prefix(' '))
            .and_then(|v| v.trim().parse::<u64>().ok())
            .map(|bytes| bytes / 1024)
    };
    Some((
        gauge("wxgate_heap_allocated_bytes")?,
        gauge("wxgate_heap_resident_bytes")?,
    ))
}

async fn soak(total: Duration, bin: &Path, dir: &Path) -> Result<bool> {
    let redis = Redis::start(dir)?;
    let mock = MockWechat::new(MockOptions {
        slow_delay: SLOW_DELAY,
        ..MockOptions::default()
    });
    let mock_listener = TcpListener::bind("127.0.0.1:0").await?;
    let mock_addr = mock_listener.local_addr()?;
    tokio::spawn(mock.clone().serve(mock_listener, std::future::pending()));
    let upstream = Upstream::start().await?;
    let secret = wxgate::tokens::random_id(48);
    let mut gateways = Vec::new();
    for name in ["A", "B"] {
        let text = config(
            &mock_addr.to_string(),
            &upstream.addr.to_string(),
            &redis.url(),
            &secret,
        );
        let path = dir.join(format!("gateway-{name}.toml"));
        std::fs::write(&path, text)?;
        let log = dir.join(format!("wxgate-{name}.log"));
        gateways.push(Gateway::spawn(name, bin, &path, &log)?);
    }
    let addrs = [gateways[0].public, gateways[1].public];
    let shared = Arc::new(Shared::new(addrs, mock)?);
    for gateway in &gateways {
        wait_ready(&shared.http, gateway).await?;
    }
    println!(
        "soak: {}s; A {} (pid {}), B {} (pid {}), redis 127.0.0.1:{}, logs in {}",
        total.as_secs(),
        gateways[0].public,
        gateways[0].pid(),
        gateways[1].public,
        gateways[1].pid(),
        redis.port,
        dir.display()
    );
    let soak = Arc::new(Soak {
        shared: shared.clone(),
        gateways,
        redis: Mutex::new(redis),
        upstream,
        windows: Mutex::new(Vec::new()),
        survival: Mutex::new(Survival::default()),
    });
    let samples = Arc::new(Mutex::new(Vec::new()));
    let sampler = tokio::spawn(sample(soak.clone(), samples.clone()));
    let workers: Vec<_> = (0..WORKERS)
        .map(|id| tokio::spawn(traffic::worker(shared.clone(), id)))
        .collect();
    let faults = tokio::spawn(run_schedule(soak.clone(), total));
    tokio::time::sleep_until((shared.t0 + total).into()).await;
    shared.stop.store(true, Ordering::SeqCst);
    faults.await??;
    for worker in workers {
        worker.await?;
    }
    sampler.await?;
    let Ok(soak) = Arc::try_unwrap(soak) else {
        bail!("the soak is still shared after every task ended");
    };
    let mut clean_exit = true;
    for gateway in soak.gateways {
        let name = gateway.name;
        let status = gateway.stop()?;
        if !status.success() {
            println!("instance {name} exited with {status}");
            clean_exit = false;
        }
    }
    let report = report::Report {
        total: total.as_secs_f64(),
        records: shared
            .records
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone(),
        windows: soak
            .windows
            .into_inner()
            .unwrap_or_else(PoisonError::into_inner),
        samples: samples
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone(),
        revocations: shared
            .revocations
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone(),
        probes_skipped: shared.probes_skipped.load(Ordering::SeqCst),
        survival: soak
            .survival
            .into_inner()
            .unwrap_or_else(PoisonError::into_inner),
    };
    Ok(report.print() && clean_exit)
}

#[tokio::main]
async fn main() -> ExitCode {
    let total = match parse_duration(&std::env::var("SOAK").unwrap_or_else(|_| "10m".into())) {
        Ok(total) => total,
        Err(e) => {
            eprintln!("soak: {e:#}");
            return ExitCode::from(2);
        }
    };
    let bin = PathBuf::from(
        std::env::var("WXGATE_BIN").unwrap_or_else(|_| "target/release/wxgate".into()),
    );
    let dir = std::env::temp_dir().join(format!("wxgate-soak-{}", std::process::id()));
    if let Err(e) = std::fs::create_dir_all(&dir) {
        eprintln!("soak: {}: {e}", dir.display());
        return ExitCode::FAILURE;
    }
    let result = soak(total, &bin, &dir).await;
    let keep = std::env::var_os("KEEP_TMP").is_some_and(|v| v == "1");
    match result {
        Ok(true) => {
            if !keep {
                let _ = std::fs::remove_dir_all(&dir);
            }
            println!("soak: PASS");
            ExitCode::SUCCESS
        }
        Ok(false) => {
            println!("soak: FAIL (logs kept in {})", dir.display());
            ExitCode::FAILURE
        }
        Err(e) => {
            eprintln!("soak: {e:#} (logs kept in {})", dir.display());
            ExitCode::FAILURE
        }
    }
}
