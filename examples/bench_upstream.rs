//! The benchmark's tiny upstream (`bench/run.sh`): answers every request 200 `ok` over
//! HTTP/1.1 keep-alive (or HTTP/2). On `/echo` it also returns the `x-openid` it received
//! as `x-seen-openid`, so the correctness checks can see what a proxy injected; the load
//! runs use `/`, where every setup costs the upstream the same answer.
//!
//! `bench_upstream 127.0.0.1:PORT [--tls CERT.pem KEY.pem]` — one thread: it is pinned to one
//! core with the proxy. With `--tls` it terminates TLS itself (tokio-rustls on aws-lc-rs,
//! with the suite, group and session tickets of `bench_tls`): the "direct" baseline of the
//! HTTPS tests, a client talking TLS straight to a hyper server.
// Test code may panic on what it set up, and its helpers are `pub` for the test files.
#![allow(clippy::unwrap_used, clippy::expect_used, unreachable_pub)]

mod bench_tls;

use std::convert::Infallible;

use bytes::Bytes;
use http::header::{HeaderValue, CONTENT_TYPE};
use http::{Request, Response};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;

fn answer(request: Request<Incoming>) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from_static(b"ok")));
    let headers = response.headers_mut();
    headers.insert(CONTENT_TYPE, HeaderValue::from_static("text/plain"));
    if request.uri().path() == "/echo" {
        if let Some(openid) = request.headers().get("x-openid") {
            headers.insert("x-seen-openid", openid.clone());
        }
    }
    response
}

/// Serves one connection, HTTP/1.1 or HTTP/2 (the preface tells, after ALPN on TLS).
async fn serve<I>(io: I)
where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let service = service_fn(|request| async move { Ok::<_, Infallible>(answer(request)) });
    let _ = auto::Builder::new(TokioExecutor::new())
        .serve_connection(TokioIo::new(io), service)
        .await;
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let usage = "usage: bench_upstream 127.0.0.1:PORT [--tls CERT.pem KEY.pem]";
    let (addr, tls) = match args.as_slice() {
        [addr] => (addr.clone(), None),
        [addr, flag, cert, key] if flag == "--tls" => (
            addr.clone(),
            Some(TlsAcceptor::from(bench_tls::server_config(cert, key))),
        ),
        _ => panic!("{usage}"),
    };
    let listener = TcpListener::bind(&addr)
        .await
        .unwrap_or_else(|e| panic!("cannot listen on {addr}: {e}"));
    eprintln!(
        "bench_upstream listening on {addr}{}",
        if tls.is_some() { " (TLS)" } else { "" }
    );
    loop {
        let stream = match listener.accept().await {
            Ok((stream, _)) => stream,
            Err(e) => {
                // Out of file descriptors: say so and keep serving the open connections.
                eprintln!("bench_upstream: accept failed: {e}");
                tokio::time::sleep(std::time::Duration::from_millis(10)).await;
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        let tls = tls.clone();
        tokio::spawn(async move {
            match tls {
                None => serve(stream).await,
                Some(acceptor) => {
                    if let Ok(stream) = acceptor.accept(stream).await {
                        serve(stream).await;
                    }
                }
            }
        });
    }
}
