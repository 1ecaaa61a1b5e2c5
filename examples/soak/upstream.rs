//! The upstream behind both gateways: echoes GET and POST (the body back, and the
//! `X-OpenId` it received as `x-seen-openid`), completes WebSocket handshakes and echoes
//! the bytes, and can be switched at runtime to reset its connections or to stall.

use std::convert::Infallible;
use std::net::{Shutdown, SocketAddr};
use std::time::Duration;

use anyhow::Result;
use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::header::HeaderValue;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

/// How the upstream treats connections.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    Normal,
    /// Open connections are shut down, new ones reset (RST) as soon as they are accepted.
    Reset,
    /// Requests are read and never answered while the mode lasts (at most 30 s).
    Stall,
}

/// A stalled request is held at most this long, so a stall cannot outlive the soak.
const STALL_LIMIT: Duration = Duration::from_secs(30);

pub struct Upstream {
    pub addr: SocketAddr,
    mode: watch::Sender<Mode>,
}

impl Upstream {
    pub async fn start() -> Result<Self> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let (mode, rx) = watch::channel(Mode::Normal);
        tokio::spawn(accept_loop(listener, rx));
        Ok(Self { addr, mode })
    }

    pub fn set(&self, mode: Mode) {
        self.mode.send_replace(mode);
    }
}

async fn accept_loop(listener: TcpListener, mode: watch::Receiver<Mode>) {
    loop {
        let stream = match listener.accept().await {
            Ok((stream, _)) => stream,
            Err(_) => {
                // EMFILE and the like: back off rather than spin.
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        if *mode.borrow() == Mode::Reset {
            // A zero linger makes the close an RST, as a crashed or overloaded peer sends.
            let _ = stream.set_zero_linger();
            drop(stream);
            continue;
        }
        tokio::spawn(connection(stream, mode.clone()));
    }
}

async fn connection(stream: TcpStream, mut mode: watch::Receiver<Mode>) {
    // A second handle on the socket, to shut it down under hyper's feet on a reset.
    let Ok(std) = stream.into_std() else { return };
    let Ok(handle) = std.try_clone() else { return };
    let Ok(stream) = TcpStream::from_std(std) else {
        return;
    };
    let service_mode = mode.clone();
    let service = service_fn(move |req| answer(req, service_mode.clone()));
    let conn = http1::Builder::new()
        .serve_connection(TokioIo::new(stream), service)
        .with_upgrades();
    tokio::select! {
        _ = conn => {}
        _ = mode.wait_for(|m| *m == Mode::Reset) => {
            let _ = handle.shutdown(Shutdown::Both);
        }
    }
}

type Resp = Response<Full<Bytes>>;

async fn answer(
    mut req: Request<Incoming>,
    mut mode: watch::Receiver<Mode>,
) -> Result<Resp, Infallible> {
    if *mode.borrow() == Mode::Stall {
        let _ = tokio::time::timeout(STALL_LIMIT, mode.wait_for(|m| *m != Mode::Stall)).await;
    }
    let Some(openid) = req.headers().get("x-openid").cloned() else {
        return Ok(plain(StatusCode::INTERNAL_SERVER_ERROR, "no X-OpenId"));
    };
    let mut resp = if is_websocket(&req) {
        let key = req
            .headers()
            .get("sec-websocket-key")
            .map(|k| k.as_bytes().to_vec())
            .unwrap_or_default();
        tokio::spawn(echo_upgraded(hyper::upgrade::on(&mut req), mode));
        let mut resp = plain(StatusCode::SWITCHING_PROTOCOLS, "");
        let headers = resp.headers_mut();
        headers.insert("upgrade", HeaderValue::from_static("websocket"));
        headers.insert("connection", HeaderValue::from_static("Upgrade"));
        if let Ok(accept) = accept_value(&key).parse() {
            headers.insert("sec-websocket-accept", accept);
        }
        resp
    } else {
        let label = format!("{} {}\n", req.method(), req.uri().path());
        match Limited::new(req.into_body(), 1 << 20).collect().await {
            Ok(body) => {
                let mut echoed = label.into_bytes();
                echoed.extend_from_slice(&body.to_bytes());
                Response::new(Full::new(Bytes::from(echoed)))
            }
            Err(_) => plain(StatusCode::BAD_REQUEST, "unreadable body"),
        }
    };
    resp.headers_mut().insert("x-seen-openid", openid);
    Ok(resp)
}

fn plain(status: StatusCode, text: &'static str) -> Resp {
    let mut resp = Response::new(Full::new(Bytes::from_static(text.as_bytes())));
    *resp.status_mut() = status;
    resp
}

fn is_websocket(req: &Request<Incoming>) -> bool {
    req.headers()
        .get("upgrade")
        .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"websocket"))
}

/// `Sec-WebSocket-Accept` for a key (RFC 6455 4.2.2).
fn accept_value(key: &[u8]) -> String {
    let mut sha1 = aws_lc_rs::digest::Context::new(&aws_lc_rs::digest::SHA1_FOR_LEGACY_USE_ONLY);
    sha1.update(key);
    sha1.update(b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11");
    STANDARD.encode(sha1.finish())
}

/// Echoes every byte of the tunnel back, frames included, until either side closes or a
/// reset is injected.
async fn echo_upgraded(upgrade: hyper::upgrade::OnUpgrade, mut mode: watch::Receiver<Mode>) {
    let Ok(upgraded) = upgrade.await else { return };
    let (mut reader, mut writer) = tokio::io::split(TokioIo::new(upgraded));
    tokio::select! {
        _ = tokio::io::copy(&mut reader, &mut writer) => {}
        _ = mode.wait_for(|m| *m == Mode::Reset) => {}
    }
}
