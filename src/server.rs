//! Accept loops: the public listener, the HTTPS listener and the admin listener, each
//! connection served by hyper-util's auto builder (HTTP/1.1, and HTTP/2 by prior knowledge
//! or ALPN), drained on shutdown.

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use http::{Request, Response};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::{TcpListener, TcpStream};

use crate::dispatch::{self, Conn};
use crate::gateway::Gateway;
use crate::settings::ServerSettings;
use bytes::Bytes;
use http_body::Body;

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
    let runtime = gateway.runtime();
    let limits = &runtime.settings.server;
    let builder = connection_builder(limits);
    let grace = limits.shutdown_grace;
    let graceful = GracefulShutdown::new();
    let admin_gateway = gateway.clone();
    let public = |tls: bool| {
        let gateway = gateway.clone();
        move |peer: SocketAddr| {
            let gateway = gateway.clone();
            let conn = Conn::new(peer, tls);
            move |request: Request<Incoming>| {
                let gateway = gateway.clone();
                let conn = conn.clone();
                // Boxed: hyper keeps the slot for a request's future for the whole life of a
                // connection, so an idle keep-alive connection holds a pointer, not the
                // (several KiB) state of a request in flight.
                Box::pin(async move {
                    Ok::<_, Infallible>(dispatch::handle(gateway, conn, request).await)
                })
            }
        }
    };
    let admin = move |_peer: SocketAddr| {
        let gateway = admin_gateway.clone();
        move |request: Request<Incoming>| {
            let gateway = gateway.clone();
            async move { Ok::<_, Infallible>(crate::admin::handle(&gateway, request).await) }
        }
    };
    tokio::pin!(shutdown);
    let admin_loop = async {
        match listeners.admin {
            Some(listener) => accept_loop(listener, &builder, &graceful, admin, "admin").await,
            None => std::future::pending().await,
        }
    };
    let tls_loop = async {
        match listeners.tls {
            Some(listener) => {
                let handshake_timeout = limits.header_read_timeout;
                let tls = Tls {
                    gateway: &gateway,
                    handshake_timeout,
                };
                tls_accept_loop(listener, &builder, &graceful, public(true), tls).await;
            }
            None => std::future::pending().await,
        }
    };
    tokio::select! {
        _ = accept_loop(listeners.public, &builder, &graceful, public(false), "public") => {}
        _ = tls_loop => {}
        _ = admin_loop => {}
        _ = &mut shutdown => {}
    }
    tracing::info!(
        connections = graceful.count(),
        "shutting down: no new connections"
    );
    tokio::select! {
        _ = graceful.shutdown() => tracing::info!("all connections finished"),
        _ = tokio::time::sleep(grace) => tracing::warn!("shutdown grace period ended with connections still open"),
    }
}

fn connection_builder(limits: &ServerSettings) -> auto::Builder<TokioExecutor> {
    let mut builder = auto::Builder::new(TokioExecutor::new());
    // hyper's own limits stay above ours so that ours answer first, with a JSON body;
    // hyper's only catch what would otherwise grow without bound.
    let head_room = limits.max_header_bytes + limits.max_uri_bytes + 8192;
    builder
        .http1()
        // Without a timer hyper never fires header_read_timeout (slowloris).
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout)
        .max_buf_size(head_room.max(8192))
        .max_headers(limits.max_headers + 32)
        .keep_alive(true);
    builder
        .http2()
        .timer(TokioTimer::new())
        .max_header_list_size(u32::try_from(head_room).unwrap_or(u32::MAX))
        .max_concurrent_streams(256)
        .max_pending_accept_reset_streams(64)
        .keep_alive_interval(Duration::from_secs(30))
        .keep_alive_timeout(Duration::from_secs(20));
    builder
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
    builder: &auto::Builder<TokioExecutor>,
    graceful: &GracefulShutdown,
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
        let (stream, peer) = accept(&listener).await;
        let service = service_fn(make(peer));
        let connection = builder
            .serve_connection_with_upgrades(TokioIo::new(stream), service)
            .into_owned();
        let watched = graceful.watch(connection);
        let open = crate::metrics::connection_opened(name);
        tokio::spawn(async move {
            let _open = open;
            if let Err(e) = watched.await {
                tracing::debug!(error = %e, %peer, "connection ended with an error");
            }
        });
    }
}

struct Tls<'a> {
    gateway: &'a Gateway,
    handshake_timeout: Duration,
}

/// Like [`accept_loop`], with a TLS handshake (bounded like a request head) first. Each
/// handshake uses the certificate of the configuration current at that moment.
async fn tls_accept_loop<M, S, F, B>(
    listener: TcpListener,
    builder: &auto::Builder<TokioExecutor>,
    graceful: &GracefulShutdown,
    make: M,
    tls: Tls<'_>,
) where
    M: Fn(SocketAddr) -> S,
    S: Fn(Request<Incoming>) -> F + Send + Sync + 'static,
    F: Future<Output = Result<Response<B>, Infallible>> + Send + 'static,
    B: Body<Data = Bytes> + Send + 'static,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    loop {
        let (stream, peer) = accept(&listener).await;
        let runtime = tls.gateway.runtime();
        let Some(settings) = runtime.settings.server.tls.as_ref() else {
            continue;
        };
        let acceptor = tokio_rustls::TlsAcceptor::from(settings.config.clone());
        let service = service_fn(make(peer));
        let builder = builder.clone();
        let watcher = graceful.watcher();
        let handshake_timeout = tls.handshake_timeout;
        tokio::spawn(async move {
            let stream =
                match tokio::time::timeout(handshake_timeout, acceptor.accept(stream)).await {
                    Ok(Ok(stream)) => stream,
                    Ok(Err(e)) => {
                        tracing::debug!(error = %e, %peer, "TLS handshake failed");
                        return;
                    }
                    Err(_) => {
                        tracing::debug!(%peer, "TLS handshake timed out");
                        return;
                    }
                };
            let connection = builder
                .serve_connection_with_upgrades(TokioIo::new(stream), service)
                .into_owned();
            if let Err(e) = watcher.watch(connection).await {
                tracing::debug!(error = %e, %peer, "connection ended with an error");
            }
        });
    }
}
