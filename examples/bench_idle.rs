//! Idle keep-alive connections for `bench/run.sh`'s memory measurement: opens N connections
//! one after another, completes one request on each (so the proxy has set up everything a
//! served connection keeps), then holds them all open and idle.
//!
//! Talks over stdin/stdout so the script can measure in between:
//! prints `ready N`, then for each `check` line on stdin prints `open K of N` (connections
//! the server has not closed), and exits at end of input, closing everything.
// Test code may panic on what it set up, and its helpers are `pub` for the test files.
#![allow(clippy::unwrap_used, clippy::expect_used, unreachable_pub)]

mod bench_http;

use std::io::{BufRead, ErrorKind, Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use clap::Parser;

#[derive(Parser)]
struct Args {
    /// host:port to connect to
    addr: String,
    /// connections to open and hold
    count: usize,
    /// extra request header, `Name: value` (repeatable)
    #[arg(long = "header", short = 'H')]
    headers: Vec<String>,
}

/// One request, its whole response read; the connection stays open.
fn open_served(addr: &str, request: &[u8]) -> TcpStream {
    let mut stream =
        TcpStream::connect(addr).unwrap_or_else(|e| panic!("cannot connect to {addr}: {e}"));
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .expect("set read timeout");
    stream.write_all(request).expect("write request");
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
                return stream;
            }
            Ok(None) => continue,
            Err(e) => panic!("unexpected response from {addr}: {e}"),
        }
    }
}

/// Whether the server still holds the connection open: nothing to read yet, no FIN.
fn still_open(mut stream: &TcpStream) -> bool {
    stream.set_nonblocking(true).expect("set O_NONBLOCK");
    let mut byte = [0u8; 1];
    let open = matches!(stream.read(&mut byte), Err(e) if e.kind() == ErrorKind::WouldBlock);
    stream.set_nonblocking(false).expect("clear O_NONBLOCK");
    open
}

fn main() {
    let args = Args::parse();
    let request = bench_http::get_request(&args.addr, &args.headers);
    let streams: Vec<TcpStream> = (0..args.count)
        .map(|_| open_served(&args.addr, &request))
        .collect();
    let mut stdout = std::io::stdout();
    writeln!(stdout, "ready {}", streams.len()).expect("write stdout");
    stdout.flush().expect("flush stdout");
    for line in std::io::stdin().lock().lines() {
        let line = line.expect("read stdin");
        if line.trim() == "check" {
            let open = streams.iter().filter(|s| still_open(s)).count();
            writeln!(stdout, "open {open} of {}", streams.len()).expect("write stdout");
            stdout.flush().expect("flush stdout");
        }
    }
}
