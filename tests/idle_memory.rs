//! What an idle keep-alive connection costs wxgate once it is parked, on the cleartext and
//! the TLS listener of the real binary: the growth of jemalloc's allocated bytes (from
//! `/metrics`) over many parked connections, divided by their number. Printed for
//! `--nocapture`; asserted under bounds that a TLS connection's task holding rustls' state
//! several times over (12.3 KiB per connection in this debug build), or hyper's buffers kept
//! while parked (over 9 KiB), would break.
// Test code may panic on what it set up, and its helpers are `pub` for the test files.
#![allow(clippy::unwrap_used, clippy::expect_used, unreachable_pub)]

mod support;

use std::net::SocketAddr;
use std::time::Duration;

use support::binary::{Binary, ConfigFile, Listening};
use support::certs::Ca;
use support::raw::{head, Raw};
use support::{ConfigBuilder, Upstream};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use tokio::time::Instant;

/// Connections held open at once, enough that the rest of the heap's movement is noise.
const CONNECTIONS: usize = 200;

/// The target for a parked cleartext connection (see the README's Performance section);
/// 2.7–3.1 KiB here.
const PLAINTEXT_BOUND: f64 = 4.0 * 1024.0;

/// A parked TLS connection: rustls' state (its 4 KiB record buffer, the two record keys, the
/// connection itself) and the task; 6.5–7.2 KiB here.
const TLS_BOUND: f64 = 10.0 * 1024.0;

struct Target {
    binary: Binary,
    at: Listening,
    ca: Ca,
    http: reqwest::Client,
    _upstream: Upstream,
    _config: ConfigFile,
}

impl Target {
    async fn start() -> Self {
        let upstream = Upstream::start().await;
        // WeChat is never called: nothing here logs in.
        let mut config = ConfigBuilder::new("http://127.0.0.1:9", &upstream.base());
        config.server_extra = "header_read_timeout = \"5m\"\ntls_listen = \"127.0.0.1:0\"\n\
             tls_cert_file = \"tls.crt\"\ntls_key_file = \"tls.key\"\n"
            .into();
        let file = ConfigFile::new(&config.text());
        let ca = Ca::new();
        let (cert, key, _) = ca.leaf("wxgate");
        let dir = file.parent().expect("config folder");
        std::fs::write(dir.join("tls.crt"), cert).expect("cert");
        std::fs::write(dir.join("tls.key"), key).expect("key");
        let mut binary = Binary::run(&file, &[]);
        let at = binary.listening();
        Self {
            binary,
            at,
            ca,
            http: support::client(),
            _upstream: upstream,
            _config: file,
        }
    }

    async fn metrics(&self) -> String {
        let url = format!("http://{}/metrics", self.at.admin);
        let response = self.http.get(url).send().await.expect("metrics");
        response.text().await.expect("metrics text")
    }

    /// jemalloc's allocated bytes and the parked connections, from one scrape.
    async fn heap_and_parked(&self) -> (f64, f64) {
        let text = self.metrics().await;
        (
            wxgate::metric_sample(&text, "wxgate_heap_allocated_bytes"),
            wxgate::metric_sample(&text, "wxgate_parked_connections"),
        )
    }

    /// Opens `CONNECTIONS` connections with `open`, one request on each, and returns the
    /// heap's growth per connection once all of them are parked.
    async fn per_parked_connection<S, F>(
        &self,
        open: impl Fn(SocketAddr) -> F,
        addr: SocketAddr,
    ) -> f64
    where
        S: AsyncRead + AsyncWrite + Unpin,
        F: std::future::Future<Output = S>,
    {
        // Whatever the first request sets up lazily (the upstream pool, the access log's
        // buffer) belongs to the baseline; that connection is then closed.
        drop(one_request(open(addr).await).await);
        let (before, parked_before) = self.wait_parked(0.0).await;
        let mut held = Vec::with_capacity(CONNECTIONS);
        for _ in 0..CONNECTIONS {
            held.push(one_request(open(addr).await).await);
        }
        let (after, _) = self.wait_parked(parked_before + CONNECTIONS as f64).await;
        // Every connection still answers after its park: they were idle, not closed.
        for raw in held.iter_mut().take(3) {
            raw.send(head("GET /public/again", &[]).as_bytes()).await;
            assert_eq!(raw.reply().await.map(|r| r.status), Some(200));
        }
        (after - before) / CONNECTIONS as f64
    }

    /// Waits (10 s at most) until exactly `parked` connections are parked, and returns the
    /// heap then.
    async fn wait_parked(&self, parked: f64) -> (f64, f64) {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let (heap, now) = self.heap_and_parked().await;
            if now == parked {
                return (heap, now);
            }
            assert!(
                Instant::now() < deadline,
                "{now} connections parked, waiting for {parked}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

/// `GET /public/idle` on a new connection, answered 200; the connection is kept.
async fn one_request<S: AsyncRead + AsyncWrite + Unpin>(stream: S) -> Raw<S> {
    let mut raw = Raw::from(stream);
    raw.send(head("GET /public/idle", &[]).as_bytes()).await;
    assert_eq!(raw.reply().await.map(|r| r.status), Some(200));
    raw
}

// Multi-threaded: the binary's output is read on a blocking thread.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_parked_connection_costs_a_few_kib_in_cleartext_and_with_tls() {
    let target = Target::start().await;
    let plaintext = target
        .per_parked_connection(
            |addr| async move { TcpStream::connect(addr).await.expect("connect") },
            target.at.public,
        )
        .await;
    let ca = &target.ca;
    let tls = target
        .per_parked_connection(
            |addr| async move {
                let tcp = TcpStream::connect(addr).await.expect("connect");
                ca.connect(tcp, &[b"http/1.1"]).await
            },
            target.at.https.expect("the https listener"),
        )
        .await;
    println!(
        "heap per parked connection: cleartext {:.2} KiB, TLS {:.2} KiB",
        plaintext / 1024.0,
        tls / 1024.0
    );
    assert!(
        plaintext <= PLAINTEXT_BOUND,
        "{plaintext} bytes per parked cleartext connection"
    );
    assert!(tls <= TLS_BOUND, "{tls} bytes per parked TLS connection");
    drop(target.binary);
}
