//! Open-loop load for `bench/run.sh`: requests leave on a fixed schedule (RATE per second)
//! whatever the server does, and each latency is measured from the request's *scheduled*
//! time, so a stalled server is charged for the requests that queued behind it (no
//! coordinated omission, unlike a closed loop such as wrk).
//!
//! One thread busy-polls non-blocking keep-alive sockets: at a few thousand requests per
//! second the proxies answer in tens of microseconds, below the 1 ms resolution of an async
//! runtime's timers, so the schedule is kept by spinning on the clock instead. Connections
//! are used in turn (FIFO), one request in flight on each; a request scheduled while every
//! connection is busy waits in a queue, its clock already running.
//!
//! Prints one line: `requests=… errors=… rps=… p50_us=… p90_us=… p99_us=… p999_us=… max_us=…`.
// Test code may panic on what it set up, and its helpers are `pub` for the test files.
#![allow(clippy::unwrap_used, clippy::expect_used, unreachable_pub)]

mod bench_http;
mod bench_measure;

use std::collections::VecDeque;
use std::io::{ErrorKind, Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use clap::Parser;

#[derive(Parser)]
struct Args {
    /// host:port to load
    addr: String,
    /// requests per second
    #[arg(long, default_value_t = 2000)]
    rate: u32,
    /// measured seconds
    #[arg(long, default_value_t = 10.0)]
    duration: f64,
    /// seconds at the same rate before measuring (not recorded)
    #[arg(long, default_value_t = 1.0)]
    warmup: f64,
    /// keep-alive connections
    #[arg(long, default_value_t = 64)]
    conns: usize,
    /// extra request header, `Name: value` (repeatable)
    #[arg(long = "header", short = 'H')]
    headers: Vec<String>,
}

struct Conn {
    stream: TcpStream,
    buf: Vec<u8>,
    /// Scheduled time of the request in flight, if any.
    in_flight: Option<Instant>,
    /// Whether the request in flight has seen any answer byte (a retry is safe if not).
    answered: bool,
}

impl Conn {
    fn open(addr: &str) -> Conn {
        let stream =
            TcpStream::connect(addr).unwrap_or_else(|e| panic!("cannot connect to {addr}: {e}"));
        stream.set_nodelay(true).expect("set TCP_NODELAY");
        stream.set_nonblocking(true).expect("set O_NONBLOCK");
        Conn {
            stream,
            buf: Vec::with_capacity(1024),
            in_flight: None,
            answered: false,
        }
    }

    fn send(&mut self, request: &[u8], scheduled: Instant) -> std::io::Result<()> {
        self.buf.clear();
        self.in_flight = Some(scheduled);
        self.answered = false;
        let mut rest = request;
        while !rest.is_empty() {
            match self.stream.write(rest) {
                Ok(n) => rest = &rest[n..],
                Err(e) if e.kind() == ErrorKind::WouldBlock => std::hint::spin_loop(),
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }

    /// Sends on this connection, or on a fresh one if the server has closed this one.
    fn send_or_reopen(&mut self, addr: &str, request: &[u8], scheduled: Instant) {
        if self.send(request, scheduled).is_err() {
            *self = Conn::open(addr);
            self.send(request, scheduled)
                .unwrap_or_else(|e| panic!("write to {addr} failed: {e}"));
        }
    }
}

enum Poll {
    Pending,
    Done {
        status: u16,
        close: bool,
    },
    /// The server closed before answering: the connection went stale, resend elsewhere.
    Stale,
}

fn poll(conn: &mut Conn) -> Poll {
    let mut chunk = [0u8; 4096];
    loop {
        match conn.stream.read(&mut chunk) {
            Ok(0) if !conn.answered => return Poll::Stale,
            Ok(0) => panic!("connection closed in the middle of a response"),
            Ok(n) => {
                conn.answered = true;
                conn.buf.extend_from_slice(&chunk[..n]);
            }
            Err(e) if e.kind() == ErrorKind::WouldBlock => break,
            Err(e) if e.kind() == ErrorKind::ConnectionReset && !conn.answered => {
                return Poll::Stale
            }
            Err(e) => panic!("read failed: {e}"),
        }
    }
    match bench_http::frame(&conn.buf) {
        Ok(None) => Poll::Pending,
        Ok(Some(framed)) => Poll::Done {
            status: framed.status,
            close: framed.close,
        },
        Err(e) => panic!("unexpected response: {e}"),
    }
}

fn main() {
    let args = Args::parse();
    assert!(
        args.rate > 0 && args.conns > 0,
        "--rate and --conns must be positive"
    );
    let request = bench_http::get_request(&args.addr, &args.headers);
    let mut conns: Vec<Conn> = (0..args.conns).map(|_| Conn::open(&args.addr)).collect();
    let mut idle: VecDeque<usize> = (0..conns.len()).collect();
    let mut busy: Vec<usize> = Vec::with_capacity(conns.len());
    let mut queued: VecDeque<Instant> = VecDeque::new();

    let warmup = (args.warmup * f64::from(args.rate)).round() as u64;
    let total = warmup + (args.duration * f64::from(args.rate)).round() as u64;
    let mut latencies_us: Vec<u64> = Vec::with_capacity((total - warmup) as usize);
    let mut errors = 0u64;
    let mut scheduled_count = 0u64;
    let mut done_count = 0u64;
    // The clock starts a little ahead so the first requests are not already late.
    let start = Instant::now() + Duration::from_millis(10);
    let rate = u64::from(args.rate);
    let schedule = |i: u64| start + Duration::from_nanos(i * 1_000_000_000 / rate);
    let measure_from = schedule(warmup);
    let mut last_done = start;
    // A server that stops answering fails the run instead of hanging it.
    let give_up = schedule(total) + Duration::from_secs(10);

    while done_count < total {
        let now = Instant::now();
        assert!(
            now < give_up,
            "{} requests unanswered 10 s after the last was due",
            total - done_count
        );
        while scheduled_count < total && schedule(scheduled_count) <= now {
            queued.push_back(schedule(scheduled_count));
            scheduled_count += 1;
        }
        while !queued.is_empty() && !idle.is_empty() {
            let (Some(at), Some(c)) = (queued.pop_front(), idle.pop_front()) else {
                break;
            };
            conns[c].send_or_reopen(&args.addr, &request, at);
            busy.push(c);
        }
        let mut i = 0;
        while i < busy.len() {
            let c = busy[i];
            match poll(&mut conns[c]) {
                Poll::Pending => i += 1,
                Poll::Stale => {
                    // Reopen and resend at once; the request keeps its scheduled time.
                    let at = conns[c].in_flight.expect("a busy connection has a request");
                    conns[c] = Conn::open(&args.addr);
                    conns[c].send_or_reopen(&args.addr, &request, at);
                    i += 1;
                }
                Poll::Done { status, close } => {
                    let finished = Instant::now();
                    let at = conns[c]
                        .in_flight
                        .take()
                        .expect("a busy connection has a request");
                    if at >= measure_from {
                        latencies_us.push(finished.duration_since(at).as_micros() as u64);
                        if status != 200 {
                            errors += 1;
                        }
                    }
                    last_done = finished;
                    done_count += 1;
                    if close {
                        conns[c] = Conn::open(&args.addr);
                    }
                    busy.swap_remove(i);
                    idle.push_back(c);
                }
            }
        }
        // Nothing in flight and the next send far enough: sleep most of the way, spin the rest.
        if busy.is_empty() && queued.is_empty() && scheduled_count < total {
            let next = schedule(scheduled_count);
            let now = Instant::now();
            if next > now + Duration::from_micros(300) {
                std::thread::sleep(next - now - Duration::from_micros(200));
            }
        }
    }

    let measured = latencies_us.len();
    let elapsed = last_done.duration_since(measure_from).as_secs_f64();
    latencies_us.sort_unstable();
    println!(
        "requests={measured} errors={errors} rps={:.0} p50_us={} p90_us={} p99_us={} p999_us={} max_us={}",
        measured as f64 / elapsed.max(1e-9),
        bench_measure::percentile(&latencies_us, 50.0),
        bench_measure::percentile(&latencies_us, 90.0),
        bench_measure::percentile(&latencies_us, 99.0),
        bench_measure::percentile(&latencies_us, 99.9),
        latencies_us.last().copied().unwrap_or(0),
    );
}
