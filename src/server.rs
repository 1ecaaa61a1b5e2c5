//! Accept loops: the public listener, the HTTPS listener and the admin listener, each
//! connection served by hyper as HTTP/1.1 or HTTP/2 (prior knowledge in cleartext, ALPN on
//! TLS), drained on shutdown.

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use http::{Request, Response};
use hyper::body::Incoming;
use hyper::server::conn::{http1, http2};
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use tokio::io::AsyncReadExt;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::time::MissedTickBehavior;

use crate::gateway::Gateway;
use crate::proxy::{self, ClientConn};
use crate::settings::ServerSettings;
use bytes::{Bytes, BytesMut};
use client_io::{ClientIo, Readable};
use futures_util::future::Either;
use http_body::Body;
use stalls::Stalls;

mod client_io;
mod park;
mod stalls;

/// The sockets `run` serves; binding them is the caller's job, so tests can use port 0.
pub struct Listeners {
    pub public: TcpListener,
    /// HTTPS with the certificate of `server.tls_*` (the current one at each handshake).
    pub tls: Option<TcpListener>,
    pub admin: Option<TcpListener>,
}

/// Serves until `shutdown` resolves, then stops accepting and lets in-flight requests finish
/// within `shutdown_grace`.
pub async fn run(listeners: Listeners, gateway: Arc<Gateway>, shutdown: impl Future<Output = ()>) {
    // Read from the first configuration, and only read: a runtime held here for the life of
    // the server would keep that configuration's caches (its verified tokens, tens of MiB
    // under load) alive after every reload, no longer used and never pruned.
    let (protocols, grace, head_timeout, write_timeout) = {
        let limits = &gateway.runtime().settings.server;
        (
            Arc::new(Protocols::new(limits)),
            limits.shutdown_grace,
            limits.header_read_timeout,
            limits.request_timeout,
        )
    };
    // Every connection task holds a receiver: the drain begins with a send, and ends when the
    // last receiver is gone.
    let (drain_tx, drain) = watch::channel(());
    let admin_gateway = gateway.clone();
    let public = |tls: bool| {
        let gateway = gateway.clone();
        move |peer: SocketAddr| {
            let gateway = gateway.clone();
            let conn = Arc::new(ClientConn::new(peer, tls));
            move |request: Request<Incoming>| {
                let gateway = gateway.clone();
                let conn = conn.clone();
                // Boxed: hyper keeps the slot for a request's future for the whole life of a
                // connection, so an idle keep-alive connection holds a pointer, not the
                // (KiB-sized) state of a request in flight.
                Box::pin(proxy::handle(gateway, conn, request))
            }
        }
    };
    let admin = move |_peer: SocketAddr| {
        let gateway = admin_gateway.clone();
        move |request: Request<Incoming>| {
            let gateway = gateway.clone();
            async move { Ok::<_, Infallible>(crate::ops::admin::handle(&gateway, request).await) }
        }
    };
    tokio::pin!(shutdown);
    let served = Served {
        protocols: &protocols,
        drain: &drain,
        head_timeout,
        write_timeout,
    };
    let admin_loop = async {
        match listeners.admin {
            Some(listener) => accept_loop(listener, &served, admin, "admin").await,
            None => std::future::pending().await,
        }
    };
    let tls_loop = async {
        match listeners.tls {
            Some(listener) => tls_accept_loop(listener, &served, public(true), &gateway).await,
            None => std::future::pending().await,
        }
    };
    tokio::select! {
        _ = accept_loop(listeners.public, &served, public(false), "public") => {}
        _ = tls_loop => {}
        _ = admin_loop => {}
        _ = &mut shutdown => {}
    }
    drop(drain);
    tracing::info!(
        connections = drain_tx.receiver_count(),
        "shutting down: no new connections"
    );
    drain_tx.send_replace(());
    tokio::select! {
        _ = drain_tx.closed() => tracing::info!("all connections finished"),
        _ = tokio::time::sleep(grace) => tracing::warn!("shutdown grace period ended with connections still open"),
    }
}

/// HTTP/1.1 and HTTP/2 as configured. Which one a connection speaks is decided before hyper
/// sees it: by ALPN on TLS, by the first bytes in cleartext ([`first_bytes`]).
struct Protocols {
    http1: http1::Builder,
    http2: http2::Builder<TokioExecutor>,
    /// How long an HTTP/1 connection may wait for a request head, parked or not
    /// (`header_read_timeout`; see [`park`]).
    http1_idle: Duration,
    /// An HTTP/2 connection that starts no request for this long is wound down, as an idle
    /// HTTP/1 connection is closed by hyper's header-read timer (`header_read_timeout`).
    http2_idle: Duration,
    /// How long a response may wait for the client's flow-control window before the
    /// connection is closed, as an HTTP/1 client that stops reading is disconnected by the
    /// write timeout (`request_timeout`); see [`stalls`].
    http2_stall: Duration,
}

impl Protocols {
    fn new(limits: &ServerSettings) -> Self {
        // hyper's own limits stay above ours so that ours answer first, with a JSON body;
        // hyper's only catch what would otherwise grow without bound.
        let head_room = limits.max_header_bytes + limits.max_uri_bytes + 8192;
        let mut http1 = http1::Builder::new();
        http1
            // Without a timer hyper never fires header_read_timeout (slowloris).
            .timer(TokioTimer::new())
            .header_read_timeout(limits.header_read_timeout)
            .max_buf_size(head_room.max(8192))
            .max_headers(limits.max_headers + 32)
            .keep_alive(true);
        let mut http2 = http2::Builder::new(TokioExecutor::new());
        http2
            .timer(TokioTimer::new())
            // The decoded header list, like `max_buf_size` for HTTP/1. h2 answers a larger
            // one 431 itself, and ends the connection (ENHANCE_YOUR_CALM) past four times
            // it or after more CONTINUATION frames than it takes to carry it.
            .max_header_list_size(u32::try_from(head_room).unwrap_or(u32::MAX))
            // The HPACK dynamic table a client can make wxgate keep: h2's and the spec's 4 KiB.
            .header_table_size(4096)
            // Requests in flight per connection; more are refused (REFUSED_STREAM). A
            // mini-program has at most 10 at once; 128 is nginx's default. Each stream may
            // hold an upstream connection and its send buffer, so this bounds what one
            // connection holds.
            .max_concurrent_streams(128)
            // Rapid reset (CVE-2023-44487): streams the client resets before wxgate has
            // accepted them; more at once end the connection (ENHANCE_YOUR_CALM).
            .max_pending_accept_reset_streams(64)
            // Streams the client's errors made wxgate reset (CVE-2025-8671, and each
            // refused stream); more end the connection (ENHANCE_YOUR_CALM). hyper's value.
            .max_local_error_reset_streams(1024)
            // Response data queued per stream ahead of the socket. hyper's 400 KiB let a
            // client that opens a huge window and never reads make one connection hold
            // 80-115 MiB (256 streams) for `request_timeout`; with one frame's worth the
            // kernel's socket buffer still keeps a fast reader fed (1 MiB downloads took
            // as long, within the noise).
            .max_send_buf_size(16 * 1024)
            // The largest frame a client may send: the spec's minimum, so one frame never
            // needs more than 16 KiB buffered.
            .max_frame_size(16 * 1024)
            // Request body a client may send ahead of wxgate reading it: 1 MiB per stream
            // and 1 MiB for the whole connection, whatever its number of streams.
            .initial_stream_window_size(1024 * 1024)
            .initial_connection_window_size(1024 * 1024)
            .keep_alive_interval(Duration::from_secs(30))
            .keep_alive_timeout(Duration::from_secs(20));
        Self {
            http1,
            http2,
            http1_idle: limits.header_read_timeout,
            http2_idle: limits.header_read_timeout,
            http2_stall: limits.request_timeout,
        }
    }
}

#[derive(Clone, Copy)]
enum Protocol {
    Http1,
    Http2,
}

/// What every accept loop shares.
struct Served<'a> {
    protocols: &'a Arc<Protocols>,
    drain: &'a watch::Receiver<()>,
    /// How long a new connection may take to say anything (or to finish its TLS handshake).
    head_timeout: Duration,
    /// How long a write may wait on a client that takes nothing.
    write_timeout: Duration,
}

/// Serves one connection until it ends; once the drain begins, hyper finishes the request in
/// flight and closes. HTTP/1 connections are parked while idle ([`park`]).
///
/// An HTTP/2 connection is made here, before the returned future exists, so the future holds
/// it once: an `async fn` would keep its arguments (the I/O and the service) beside the
/// connection built from them.
fn serve_connection<I, S, F, B>(
    protocols: &Arc<Protocols>,
    protocol: Protocol,
    io: ClientIo<I>,
    service: S,
    mut drain: watch::Receiver<()>,
    peer: SocketAddr,
) -> impl Future<Output = ()> + Send
where
    I: hyper::rt::Read + hyper::rt::Write + Readable + Unpin + Send + 'static,
    S: Fn(Request<Incoming>) -> F + Send + Sync + 'static,
    F: Future<Output = Result<Response<B>, Infallible>> + Send + 'static,
    B: Body<Data = Bytes> + Send + 'static,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let report = move |ended: hyper::Result<()>| {
        if let Err(e) = ended {
            tracing::debug!(error = %e, %peer, "connection ended with an error");
        }
    };
    match protocol {
        Protocol::Http1 => Either::Left(park::serve_http1(
            protocols.clone(),
            io,
            service,
            drain,
            peer,
        )),
        Protocol::Http2 => {
            let started = Arc::new(AtomicU64::new(0));
            let stalls = Arc::new(Stalls::default());
            let counted = {
                let started = started.clone();
                let stalls = stalls.clone();
                service_fn(move |request| {
                    started.fetch_add(1, Ordering::Relaxed);
                    let stalls = stalls.clone();
                    let response = service(request);
                    async move { Ok::<_, Infallible>(response.await?.map(|b| stalls.watch(b))) }
                })
            };
            // Boxed: an HTTP/2 connection's state is several times an HTTP/1 one's, and the
            // task of every HTTP/1 connection would otherwise be sized for it.
            let mut connection = Box::pin(protocols.http2.serve_connection(io, counted));
            let (idle, stall) = (protocols.http2_idle, protocols.http2_stall);
            Either::Right(async move {
                let now = tokio::time::Instant::now();
                let mut idle_check = tokio::time::interval_at(now + idle, idle);
                // A stall is seen between `stall` and 1.25 × `stall` after it began.
                let every = (stall / 4).max(Duration::from_millis(1));
                let mut stall_check = tokio::time::interval_at(now + every, every);
                for check in [&mut idle_check, &mut stall_check] {
                    check.set_missed_tick_behavior(MissedTickBehavior::Delay);
                }
                // Streams in flight finish after a graceful shutdown (GOAWAY); only new ones
                // are refused, so an idle connection can be wound down without cutting
                // anything off. Stalls are still watched meanwhile: a stalled stream would
                // keep a connection that is winding down open for ever.
                let (mut seen, mut closing) = (0, false);
                report(loop {
                    tokio::select! {
                        ended = connection.as_mut() => break ended,
                        _ = drain.changed(), if !closing => {
                            connection.as_mut().graceful_shutdown();
                            closing = true;
                        }
                        _ = idle_check.tick(), if !closing => {
                            let now = started.load(Ordering::Relaxed);
                            if now == seen {
                                connection.as_mut().graceful_shutdown();
                                closing = true;
                            }
                            seen = now;
                        }
                        _ = stall_check.tick() => {
                            // Dropping the connection ends its streams, and with them the
                            // upstream connections they hold.
                            if stalls.longest(std::time::Instant::now()) >= stall {
                                tracing::debug!(%peer, "the client took no response data: disconnected");
                                break Ok(());
                            }
                        }
                    }
                });
            })
        }
    }
}

/// The HTTP/2 connection preface (RFC 9113 3.4): how a cleartext client with prior
/// knowledge begins.
const H2_PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// Reads a cleartext connection's first bytes: enough to tell the HTTP/2 preface from an
/// HTTP/1 request. hyper then reads them first ([`Replay`]), so its buffer starts with the
/// whole first read rather than a short one (which would make it double its buffer for the
/// life of the connection). `None` when the client closes first.
async fn first_bytes(stream: &mut TcpStream) -> Option<(Protocol, Bytes)> {
    let mut head = BytesMut::with_capacity(8192);
    loop {
        if stream.read_buf(&mut head).await.ok()? == 0 {
            return None;
        }
        let n = head.len().min(H2_PREFACE.len());
        if head[..n] != H2_PREFACE[..n] {
            return Some((Protocol::Http1, head.freeze()));
        }
        if n == H2_PREFACE.len() {
            return Some((Protocol::Http2, head.freeze()));
        }
    }
}

/// Accepts the next connection; transient failures (out of file descriptors) back off.
async fn accept(listener: &TcpListener) -> (TcpStream, SocketAddr) {
    loop {
        match listener.accept().await {
            Ok((stream, peer)) => {
                let _ = stream.set_nodelay(true);
                return (stream, peer);
            }
            Err(e) => {
                tracing::warn!(error = %e, "accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
}

async fn accept_loop<M, S, F, B>(
    listener: TcpListener,
    served: &Served<'_>,
    make: M,
    name: &'static str,
) where
    M: Fn(SocketAddr) -> S,
    S: Fn(Request<Incoming>) -> F + Send + Sync + 'static,
    F: Future<Output = Result<Response<B>, Infallible>> + Send + 'static,
    B: Body<Data = Bytes> + Send + 'static,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    loop {
        let (mut stream, peer) = accept(&listener).await;
        let service = make(peer);
        let protocols = served.protocols.clone();
        let drain = served.drain.clone();
        let head_timeout = served.head_timeout;
        let write_timeout = served.write_timeout;
        let open = crate::ops::metrics::connection_opened(name);
        tokio::spawn(async move {
            let _open = open;
            // A client that says nothing is closed like one that never finishes its head.
            let first = tokio::time::timeout(head_timeout, first_bytes(&mut stream)).await;
            let Ok(Some((protocol, head))) = first else {
                return;
            };
            let io = ClientIo::new(TokioIo::new(stream), Some(head), write_timeout);
            serve_connection(&protocols, protocol, io, service, drain, peer).await;
        });
    }
}

/// Like [`accept_loop`], with a TLS handshake (bounded like a request head) first; ALPN
/// chooses the protocol. Each handshake uses the certificate of the configuration current at
/// that moment.
async fn tls_accept_loop<M, S, F, B>(
    listener: TcpListener,
    served: &Served<'_>,
    make: M,
    gateway: &Gateway,
) where
    M: Fn(SocketAddr) -> S,
    S: Fn(Request<Incoming>) -> F + Send + Sync + 'static,
    F: Future<Output = Result<Response<B>, Infallible>> + Send + 'static,
    B: Body<Data = Bytes> + Send + 'static,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    loop {
        let (stream, peer) = accept(&listener).await;
        let runtime = gateway.runtime();
        let Some(settings) = runtime.settings.server.tls.as_ref() else {
            continue;
        };
        let acceptor = tokio_rustls::TlsAcceptor::from(settings.config.clone());
        let service = make(peer);
        let protocols = served.protocols.clone();
        let drain = served.drain.clone();
        let handshake_timeout = served.head_timeout;
        let write_timeout = served.write_timeout;
        let open = crate::ops::metrics::connection_opened("https");
        tokio::spawn(async move {
            let _open = open;
            // The handshake's future and the stream are boxed: each holds rustls' connection
            // state (over 1 KiB inline), and the task, which keeps room for every value that
            // lives across an await, would otherwise hold room for it several times over for
            // the life of the connection.
            let handshake = Box::pin(tokio::time::timeout(
                handshake_timeout,
                acceptor.accept(stream),
            ));
            let stream = match handshake.await {
                Ok(Ok(stream)) => Box::new(stream),
                Ok(Err(e)) => {
                    tracing::debug!(error = %e, %peer, "TLS handshake failed");
                    return;
                }
                Err(_) => {
                    tracing::debug!(%peer, "TLS handshake timed out");
                    return;
                }
            };
            // HTTP/2 over TLS is negotiated with ALPN, never assumed (RFC 9113 3.2).
            let protocol = match stream.get_ref().1.alpn_protocol() {
                Some(b"h2") => Protocol::Http2,
                _ => Protocol::Http1,
            };
            let io = ClientIo::new(TokioIo::new(stream), None, write_timeout);
            serve_connection(&protocols, protocol, io, service, drain, peer).await;
        });
    }
}
