//! Logins and refreshes per second for `bench/run.sh`: `--conns` clients, each on its own
//! HTTP/1.1 keep-alive connection, in a closed loop.
//!
//! - `--mode login`: `POST /auth/login` with a fresh code each time (`bench-<run>-<client>-<n>`,
//!   which mock-wechat accepts once and turns into a new user), so every request is a whole
//!   login: the code claimed in the store, a `jscode2session` call, a session created, two
//!   tokens signed.
//! - `--mode refresh`: each client logs in once before measuring, then `POST /auth/refresh`
//!   with the refresh token the previous answer gave it (refresh tokens rotate: each is
//!   good once).
//!
//! Every answer must be 200 (a refresh must carry a new refresh token). Runs `--warmup`
//! seconds unrecorded, prints `ready`, waits for a line on stdin (the script reads the CPU
//! time of wxgate, the mock and Redis then), runs `--duration` seconds and prints one line:
//! `requests=… errors=… rps=… p50_us=… p99_us=…`, then waits for the end of its input.
// Test code may panic on what it set up, and its helpers are `pub` for the test files.
#![allow(clippy::unwrap_used, clippy::expect_used, unreachable_pub)]

mod bench_measure;

use std::cell::RefCell;
use std::rc::Rc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use clap::{Parser, ValueEnum};
use http::header::{CONTENT_TYPE, HOST};
use http::{Method, Request};
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1::SendRequest;
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Mode {
    Login,
    Refresh,
}

#[derive(Parser)]
struct Args {
    /// wxgate's host:port (plain HTTP)
    addr: String,
    #[arg(long, value_enum)]
    mode: Mode,
    /// concurrent clients, one connection each
    #[arg(long, default_value_t = 16)]
    conns: usize,
    /// measured seconds
    #[arg(long, default_value_t = 5.0)]
    duration: f64,
    /// seconds before measuring (not recorded)
    #[arg(long, default_value_t = 1.0)]
    warmup: f64,
    /// where the session endpoints are (`auth.endpoint_prefix`)
    #[arg(long, default_value = "/auth")]
    prefix: String,
}

/// One client: its connection, its place in the code sequence, its session's refresh token.
struct Client {
    addr: String,
    prefix: String,
    tag: String,
    sent: u64,
    send: SendRequest<Full<Bytes>>,
    refresh_token: Option<String>,
}

impl Client {
    async fn connect(args: &Args, tag: String) -> Client {
        let tcp = TcpStream::connect(&args.addr)
            .await
            .unwrap_or_else(|e| panic!("cannot connect to {}: {e}", args.addr));
        tcp.set_nodelay(true).expect("TCP_NODELAY");
        let (send, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tcp))
            .await
            .expect("HTTP/1.1 client");
        tokio::task::spawn_local(async move {
            let _ = conn.await;
        });
        Client {
            addr: args.addr.clone(),
            prefix: args.prefix.clone(),
            tag,
            sent: 0,
            send,
            refresh_token: None,
        }
    }

    /// POSTs `body` to `{prefix}/{endpoint}`; the answer's JSON when it is 200.
    async fn post(&mut self, endpoint: &str, body: String) -> Result<serde_json::Value, String> {
        let request = Request::builder()
            .method(Method::POST)
            .uri(format!("{}/{endpoint}", self.prefix))
            .header(HOST, &self.addr)
            .header(CONTENT_TYPE, "application/json")
            .body(Full::new(Bytes::from(body)))
            .expect("request");
        self.send
            .ready()
            .await
            .map_err(|e| format!("connection: {e}"))?;
        let response = self
            .send
            .send_request(request)
            .await
            .map_err(|e| format!("{endpoint}: {e}"))?;
        let status = response.status();
        let body = response
            .into_body()
            .collect()
            .await
            .map_err(|e| format!("{endpoint}: body: {e}"))?
            .to_bytes();
        if status != 200 {
            return Err(format!(
                "{endpoint}: {status} {}",
                String::from_utf8_lossy(&body)
            ));
        }
        serde_json::from_slice(&body).map_err(|e| format!("{endpoint}: not JSON: {e}"))
    }

    /// A login with the next fresh code; keeps the session's refresh token.
    async fn login(&mut self) -> Result<(), String> {
        self.sent += 1;
        let code = format!("bench-{}-{}", self.tag, self.sent);
        let answer = self
            .post("login", serde_json::json!({ "code": code }).to_string())
            .await?;
        self.keep_refresh_token(&answer)
    }

    /// A refresh of this client's session; keeps the new refresh token.
    async fn refresh(&mut self) -> Result<(), String> {
        let token = self
            .refresh_token
            .take()
            .ok_or("no session to refresh (its last refresh failed)")?;
        let answer = self
            .post(
                "refresh",
                serde_json::json!({ "refresh_token": token }).to_string(),
            )
            .await?;
        self.keep_refresh_token(&answer)
    }

    fn keep_refresh_token(&mut self, answer: &serde_json::Value) -> Result<(), String> {
        match answer["refresh_token"].as_str() {
            Some(token) if answer["access_token"].is_string() => {
                self.refresh_token = Some(token.to_owned());
                Ok(())
            }
            _ => Err("a 200 without tokens".into()),
        }
    }
}

#[derive(Default)]
struct Tally {
    latencies_us: Vec<u64>,
    errors: u64,
    /// The first few errors, to say what went wrong.
    first_errors: Vec<String>,
}

impl Tally {
    /// Counts one request sent at `start`; whether it worked.
    fn record(&mut self, start: Instant, result: Result<(), String>) -> bool {
        match result {
            Ok(()) => {
                self.latencies_us.push(start.elapsed().as_micros() as u64);
                true
            }
            Err(e) => {
                self.errors += 1;
                if self.first_errors.len() < 5 {
                    self.first_errors.push(e);
                }
                false
            }
        }
    }
}

/// Every client in a loop of `mode` until `until`.
async fn run(clients: Vec<Client>, mode: Mode, until: Instant) -> (Vec<Client>, Tally) {
    let tally = Rc::new(RefCell::new(Tally::default()));
    let tasks: Vec<_> = clients
        .into_iter()
        .map(|mut client| {
            let tally = tally.clone();
            tokio::task::spawn_local(async move {
                while Instant::now() < until {
                    let start = Instant::now();
                    let result = match mode {
                        Mode::Login => client.login().await,
                        // A failed refresh leaves no usable token: log in again.
                        Mode::Refresh if client.refresh_token.is_none() => client.login().await,
                        Mode::Refresh => client.refresh().await,
                    };
                    if !tally.borrow_mut().record(start, result) {
                        tokio::time::sleep(Duration::from_millis(10)).await;
                    }
                }
                client
            })
        })
        .collect();
    let mut clients = Vec::with_capacity(tasks.len());
    for task in tasks {
        clients.push(task.await.expect("client task"));
    }
    let tally = Rc::try_unwrap(tally)
        .ok()
        .expect("all clients done")
        .into_inner();
    (clients, tally)
}

async fn bench(args: Args) {
    // Codes must never repeat across runs against the same mock (it keeps every code it
    // has seen): the run's start time tells them apart.
    let run_tag = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock")
        .as_nanos();
    let mut clients = Vec::with_capacity(args.conns);
    for i in 0..args.conns {
        clients.push(Client::connect(&args, format!("{run_tag}-{i}")).await);
    }
    // The warm-up runs the measured operation, after which every client has a session.
    let (clients, warmup) = run(
        clients,
        args.mode,
        Instant::now() + Duration::from_secs_f64(args.warmup),
    )
    .await;
    if warmup.errors > 0 {
        panic!(
            "{} warm-up requests failed: {:?}",
            warmup.errors, warmup.first_errors
        );
    }
    bench_measure::ready_then_wait();

    let start = Instant::now();
    let (_clients, mut tally) = run(
        clients,
        args.mode,
        start + Duration::from_secs_f64(args.duration),
    )
    .await;
    let elapsed = start.elapsed().as_secs_f64();
    for e in &tally.first_errors {
        eprintln!("bench_login: {e}");
    }
    tally.latencies_us.sort_unstable();
    let done = tally.latencies_us.len();
    bench_measure::report_then_wait(&format!(
        "requests={done} errors={} rps={:.0} p50_us={} p99_us={}",
        tally.errors,
        done as f64 / elapsed.max(1e-9),
        bench_measure::percentile(&tally.latencies_us, 50.0),
        bench_measure::percentile(&tally.latencies_us, 99.0),
    ));
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let args = Args::parse();
    assert!(args.conns > 0, "--conns must be positive");
    tokio::task::LocalSet::new().run_until(bench(args)).await;
}
