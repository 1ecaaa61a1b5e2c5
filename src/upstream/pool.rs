//! One target's idle keep-alive connections: checkout of the warmest live one, checkin
//! after a complete response, a sweeper for the idle ones, and connecting anew.

use std::future::Future;
use std::io;
use std::sync::{Arc, Mutex, Weak};
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

use bytes::BytesMut;
use http::header::HeaderValue;
use tokio::io::AsyncReadExt;
use tokio::net::TcpStream;

use super::Error;

/// Read-buffer growth: room for a typical response in one read.
const READ_CHUNK: usize = 8 * 1024;

/// One target's keep-alive connections.
pub(crate) struct Pool {
    host: String,
    port: u16,
    /// The `Host` header sent to this target.
    pub host_header: HeaderValue,
    connect_timeout: Duration,
    idle_timeout: Duration,
    /// The route's `response_timeout`: how long the response head may take once the
    /// request is sent, and how long a response body may go without a byte.
    pub(super) stall_timeout: Duration,
    max_idle: usize,
    /// Most recently returned last: checkout takes the warmest connection.
    idle: Mutex<Vec<Idle>>,
}

struct Idle {
    conn: UpstreamConn,
    since: Instant,
}

/// A connection with the bytes read from it but not yet consumed.
pub(super) struct UpstreamConn {
    pub(super) io: TcpStream,
    pub(super) buf: BytesMut,
}

impl Pool {
    /// `stall_timeout`: how long a response body may go without a byte (the route's
    /// `response_timeout`); then the response is cut off.
    pub(crate) fn new(
        authority: &http::uri::Authority,
        connect_timeout: Duration,
        idle_timeout: Duration,
        stall_timeout: Duration,
        max_idle: usize,
    ) -> Arc<Self> {
        let host = authority.host();
        // An IPv6 literal comes bracketed in an authority.
        let host = host
            .strip_prefix('[')
            .and_then(|h| h.strip_suffix(']'))
            .unwrap_or(host);
        let host_header = HeaderValue::from_str(authority.as_str())
            .unwrap_or_else(|_| HeaderValue::from_static("localhost"));
        Arc::new(Self {
            host: host.to_string(),
            port: authority.port_u16().unwrap_or(80),
            host_header,
            connect_timeout,
            idle_timeout,
            stall_timeout,
            max_idle,
            idle: Mutex::new(Vec::new()),
        })
    }

    /// An idle connection that has not timed out and that the upstream has not closed.
    fn usable(&self, entry: &Idle, now: Instant) -> bool {
        now.duration_since(entry.since) < self.idle_timeout && entry.conn.is_open()
    }

    /// A pooled connection that is still open, if there is one.
    pub(super) fn checkout(&self) -> Option<UpstreamConn> {
        let now = Instant::now();
        let mut idle = self.idle.lock().unwrap_or_else(|e| e.into_inner());
        while let Some(entry) = idle.pop() {
            if self.usable(&entry, now) {
                return Some(entry.conn);
            }
        }
        None
    }

    pub(super) fn checkin(&self, conn: UpstreamConn) {
        if !conn.buf.is_empty() {
            // Bytes the upstream sent beyond its response: the connection is out of step.
            return;
        }
        let mut idle = self.idle.lock().unwrap_or_else(|e| e.into_inner());
        if idle.len() >= self.max_idle {
            idle.remove(0);
        }
        idle.push(Idle {
            conn,
            since: Instant::now(),
        });
    }

    /// Closes idle connections that timed out or that the upstream closed.
    fn sweep(&self) {
        let now = Instant::now();
        let mut idle = self.idle.lock().unwrap_or_else(|e| e.into_inner());
        idle.retain(|entry| self.usable(entry, now));
    }

    /// Sweeps these pools every few seconds for as long as any of them is alive.
    pub(crate) fn spawn_sweeper(pools: &[Arc<Pool>]) {
        let Ok(handle) = tokio::runtime::Handle::try_current() else {
            return;
        };
        let weak: Vec<Weak<Pool>> = pools.iter().map(Arc::downgrade).collect();
        handle.spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_secs(5));
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                let mut alive = false;
                for pool in weak.iter().filter_map(Weak::upgrade) {
                    alive = true;
                    pool.sweep();
                }
                if !alive {
                    return;
                }
            }
        });
    }

    pub(super) async fn connect(&self) -> Result<UpstreamConn, Error> {
        let connecting = TcpStream::connect((self.host.as_str(), self.port));
        let io = match tokio::time::timeout(self.connect_timeout, connecting).await {
            Ok(Ok(io)) => io,
            Ok(Err(e)) => return Err(Error::Connect(e)),
            Err(_) => return Err(Error::ConnectTimeout),
        };
        let _ = io.set_nodelay(true);
        Ok(UpstreamConn {
            io,
            buf: BytesMut::new(),
        })
    }
}

impl UpstreamConn {
    /// Whether an idle connection can still carry a request: nothing has arrived on it since
    /// its last response (an end of stream, a reset or stray bytes all rule it out). Uses
    /// the readiness the reactor already recorded; a system call only when it says readable.
    fn is_open(&self) -> bool {
        let mut cx = Context::from_waker(Waker::noop());
        match self.io.poll_read_ready(&mut cx) {
            Poll::Pending => true,
            Poll::Ready(Err(_)) => false,
            Poll::Ready(Ok(())) => {
                let mut probe = [0u8; 1];
                matches!(self.io.try_read(&mut probe), Err(e) if e.kind() == io::ErrorKind::WouldBlock)
            }
        }
    }

    /// Reads more bytes into the buffer; `Ok(0)` at the end of the stream.
    pub(super) async fn fill(&mut self) -> io::Result<usize> {
        std::future::poll_fn(|cx| self.poll_fill(cx)).await
    }

    pub(super) fn poll_fill(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<usize>> {
        if self.buf.capacity() - self.buf.len() < 1024 {
            self.buf.reserve(READ_CHUNK);
        }
        // The future holds no state of its own: made and dropped on each poll.
        std::pin::pin!(self.io.read_buf(&mut self.buf)).poll(cx)
    }
}
