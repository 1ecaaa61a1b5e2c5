//! Idle keep-alive connections for `bench/run.sh`'s memory measurement: opens N connections
//! one after another, completes one request on each (so the proxy has set up everything a
//! served connection keeps), then holds them all open and idle. With `--tls CA.pem` they
//! are HTTPS connections (full handshakes, HTTP/1.1 by ALPN).
//!
//! Talks over stdin/stdout so the script can measure in between:
//! prints `ready N`, then for each `check` line on stdin prints `open K of N` (connections
//! the server has not closed), and exits at end of input, closing everything.
// Test code may panic on what it set up, and its helpers are `pub` for the test files.
#![allow(clippy::unwrap_used, clippy::expect_used, unreachable_pub)]

mod bench_http;
mod bench_tls;

use std::io::{BufRead, ErrorKind, Read, Write};
use std::net::TcpStream;
use std::sync::Arc;
use std::time::Duration;

use clap::Parser;
use rustls::{ClientConfig, ClientConnection, StreamOwned};

#[derive(Parser)]
struct Args {
    /// host:port to connect to
    addr: String,
    /// connections to open and hold
    count: usize,
    /// extra request header, `Name: value` (repeatable)
    #[arg(long = "header", short = 'H')]
    headers: Vec<String>,
    /// speak TLS, trusting the CA certificate in this PEM file
    #[arg(long)]
    tls: Option<String>,
}

/// A held connection: plain TCP, or TLS over it.
enum Conn {
    Plain(TcpStream),
    Tls(Box<StreamOwned<ClientConnection, TcpStream>>),
}

impl Conn {
    fn open(addr: &str, tls: Option<&Arc<ClientConfig>>) -> Conn {
        let tcp =
            TcpStream::connect(addr).unwrap_or_else(|e| panic!("cannot connect to {addr}: {e}"));
        tcp.set_read_timeout(Some(Duration::from_secs(10)))
            .expect("set read timeout");
        match tls {
            None => Conn::Plain(tcp),
            Some(config) => {
                let session = ClientConnection::new(config.clone(), bench_tls::server_name())
                    .expect("TLS client");
                Conn::Tls(Box::new(StreamOwned::new(session, tcp)))
            }
        }
    }

    fn tcp(&self) -> &TcpStream {
        match self {
            Conn::Plain(tcp) => tcp,
            Conn::Tls(tls) => tls.get_ref(),
        }
    }

    fn stream(&mut self) -> &mut dyn ReadWrite {
        match self {
            Conn::Plain(tcp) => tcp,
            Conn::Tls(tls) => tls.as_mut(),
        }
    }
}

trait ReadWrite: Read + Write {}
impl<T: Read + Write> ReadWrite for T {}

/// One request, its whole response read; the connection stays open.
fn open_served(addr: &str, tls: Option<&Arc<ClientConfig>>, request: &[u8]) -> Conn {
    let mut conn = Conn::open(addr, tls);
    let stream = conn.stream();
    stream.write_all(request).expect("write request");
    stream.flush().expect("flush request");
    let mut buf = Vec::with_capacity(1024);
    let mut chunk = [0u8; 4096];
    loop {
        let n = stream.read(&mut chunk).expect("read response");
        assert!(n > 0, "{addr} closed the connection before answering");
        buf.extend_from_slice(&chunk[..n]);
        match bench_http::frame(&buf) {
            Ok(Some(framed)) => {
                assert_eq!(framed.status, 200, "{addr} answered {}", framed.status);
                assert!(!framed.close, "{addr} closed a keep-alive connection");
                return conn;
            }
            Ok(None) => continue,
            Err(e) => panic!("unexpected response from {addr}: {e}"),
        }
    }
}

/// Whether the server still holds the connection open: nothing to read yet, no FIN (over
/// TLS: no close_notify either; records that carry no data, such as a late session
/// ticket, are taken in passing).
fn still_open(conn: &mut Conn) -> bool {
    conn.tcp().set_nonblocking(true).expect("set O_NONBLOCK");
    let mut byte = [0u8; 1];
    let open = matches!(conn.stream().read(&mut byte), Err(e) if e.kind() == ErrorKind::WouldBlock);
    conn.tcp().set_nonblocking(false).expect("clear O_NONBLOCK");
    open
}

fn main() {
    let args = Args::parse();
    let tls = args
        .tls
        .as_deref()
        .map(|ca| bench_tls::client_config(ca, &[b"http/1.1"], false));
    let request = bench_http::get_request(&args.addr, &args.headers);
    let mut conns: Vec<Conn> = (0..args.count)
        .map(|_| open_served(&args.addr, tls.as_ref(), &request))
        .collect();
    let mut stdout = std::io::stdout();
    writeln!(stdout, "ready {}", conns.len()).expect("write stdout");
    stdout.flush().expect("flush stdout");
    for line in std::io::stdin().lock().lines() {
        let line = line.expect("read stdin");
        if line.trim() == "check" {
            let open = conns
                .iter_mut()
                .map(still_open)
                .filter(|open| *open)
                .count();
            writeln!(stdout, "open {open} of {}", conns.len()).expect("write stdout");
            stdout.flush().expect("flush stdout");
        }
    }
}
