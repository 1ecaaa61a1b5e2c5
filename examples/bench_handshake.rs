//! New TLS connections per second for `bench/run.sh`: `--conns` clients in a loop, each
//! connecting, shaking hands (TLS 1.3, the suite and group of `bench_tls`), sending one
//! request (`Connection: close`) and reading until the server closes. With `--resume` each
//! client keeps its own session store, so after its first connection it resumes with a
//! ticket the server gave it on the previous one, as a phone coming back does; without,
//! every handshake is a full one (certificate, signature, key exchange). (One store shared
//! by all clients would starve: rustls keeps at most 8 TLS 1.3 tickets per server, and
//! with more clients than that in flight most found none left.)
//!
//! One thread (the script pins it to a core). A full client handshake costs about what the
//! server's does (it checks two signatures and the chain), so against the cheapest server
//! the client may be the limit: the server's CPU per connection is the figure to compare.
//!
//! Runs `--warmup` seconds unrecorded (every client has a ticket after it), prints
//! `ready`, waits for a line on stdin (the script reads the servers' CPU time then), runs
//! `--duration` seconds and prints one line:
//! `connections=… resumed=… errors=… cps=… p50_us=… p99_us=…`, where resumed counts the
//! measured connections whose handshake was a resumption and the latencies are of whole
//! connections (connect to close); then waits for the end of its input.
// Test code may panic on what it set up, and its helpers are `pub` for the test files.
#![allow(clippy::unwrap_used, clippy::expect_used, unreachable_pub)]

mod bench_http;
mod bench_measure;
mod bench_tls;

use std::cell::RefCell;
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::Parser;
use rustls::{ClientConfig, HandshakeKind};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

#[derive(Parser)]
struct Args {
    /// host:port to connect to
    addr: String,
    /// the CA certificate (PEM) the server's certificate chains to
    #[arg(long)]
    ca: String,
    /// concurrent clients
    #[arg(long, default_value_t = 64)]
    conns: usize,
    /// measured seconds
    #[arg(long, default_value_t = 5.0)]
    duration: f64,
    /// seconds before measuring (not recorded; fills the session store)
    #[arg(long, default_value_t = 1.0)]
    warmup: f64,
    /// resume sessions (a store per client) instead of full handshakes
    #[arg(long)]
    resume: bool,
    /// extra request header, `Name: value` (repeatable)
    #[arg(long = "header", short = 'H')]
    headers: Vec<String>,
}

#[derive(Default)]
struct Tally {
    latencies_us: Vec<u64>,
    resumed: u64,
    errors: u64,
    /// The first few errors, to say what went wrong.
    first_errors: Vec<String>,
}

impl Tally {
    /// Counts one connection begun at `start`; whether it worked.
    fn record(&mut self, start: Instant, result: Result<HandshakeKind, String>) -> bool {
        match result {
            Ok(kind) => {
                self.latencies_us.push(start.elapsed().as_micros() as u64);
                if kind == HandshakeKind::Resumed {
                    self.resumed += 1;
                }
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

/// One connection: handshake, request, the response, the server's close.
async fn one(
    addr: &str,
    connector: &TlsConnector,
    request: &[u8],
) -> Result<HandshakeKind, String> {
    let tcp = TcpStream::connect(addr)
        .await
        .map_err(|e| format!("connect: {e}"))?;
    tcp.set_nodelay(true).map_err(|e| format!("nodelay: {e}"))?;
    let mut tls = connector
        .connect(bench_tls::server_name(), tcp)
        .await
        .map_err(|e| format!("handshake: {e}"))?;
    tls.write_all(request)
        .await
        .map_err(|e| format!("write: {e}"))?;
    let mut buf = Vec::with_capacity(512);
    // A server may end with close_notify or just a FIN; either is the end here.
    match tls.read_to_end(&mut buf).await {
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof && !buf.is_empty() => {}
        Err(e) => return Err(format!("read: {e}")),
    }
    match bench_http::frame(&buf) {
        Ok(Some(framed)) if framed.status == 200 => {}
        Ok(Some(framed)) => return Err(format!("status {}", framed.status)),
        Ok(None) => return Err("incomplete response".into()),
        Err(e) => return Err(e),
    }
    tls.get_ref()
        .1
        .handshake_kind()
        .ok_or_else(|| "handshake not done".into())
}

/// The clients looping until `until`, each with its connector; every connection started
/// before it is counted.
async fn run(
    args: &Args,
    connectors: &[TlsConnector],
    request: &Rc<Vec<u8>>,
    until: Instant,
) -> Tally {
    let tally = Rc::new(RefCell::new(Tally::default()));
    let local = tokio::task::LocalSet::new();
    for connector in connectors {
        let connector = connector.clone();
        let (addr, request, tally) = (args.addr.clone(), request.clone(), tally.clone());
        local.spawn_local(async move {
            while Instant::now() < until {
                let start = Instant::now();
                let result = one(&addr, &connector, &request).await;
                if !tally.borrow_mut().record(start, result) {
                    // A refused connection fails at once: do not spin on it.
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
            }
        });
    }
    local.await;
    Rc::try_unwrap(tally)
        .ok()
        .expect("all clients done")
        .into_inner()
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let args = Args::parse();
    assert!(args.conns > 0, "--conns must be positive");
    let config: Arc<ClientConfig> = bench_tls::client_config(&args.ca, &[b"http/1.1"], args.resume);
    // Each client its own session store (they are used by one connection at a time).
    let connectors: Vec<TlsConnector> = (0..args.conns)
        .map(|_| match args.resume {
            true => TlsConnector::from(bench_tls::own_sessions(&config)),
            false => TlsConnector::from(config.clone()),
        })
        .collect();
    let mut headers = args.headers.clone();
    headers.push("Connection: close".into());
    let request = Rc::new(bench_http::get_request(&args.addr, &headers));

    let warmup = run(
        &args,
        &connectors,
        &request,
        Instant::now() + Duration::from_secs_f64(args.warmup),
    )
    .await;
    if warmup.errors > 0 {
        panic!(
            "{} of the warm-up connections failed: {:?}",
            warmup.errors, warmup.first_errors
        );
    }
    bench_measure::ready_then_wait();

    let start = Instant::now();
    let mut tally = run(
        &args,
        &connectors,
        &request,
        start + Duration::from_secs_f64(args.duration),
    )
    .await;
    let elapsed = start.elapsed().as_secs_f64();
    for e in &tally.first_errors {
        eprintln!("bench_handshake: {e}");
    }
    tally.latencies_us.sort_unstable();
    let done = tally.latencies_us.len();
    bench_measure::report_then_wait(&format!(
        "connections={done} resumed={} errors={} cps={:.0} p50_us={} p99_us={}",
        tally.resumed,
        tally.errors,
        done as f64 / elapsed.max(1e-9),
        bench_measure::percentile(&tally.latencies_us, 50.0),
        bench_measure::percentile(&tally.latencies_us, 99.0),
    ));
}
