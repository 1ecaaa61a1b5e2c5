//! The upstream side of the wire: response framings (length, chunked, until close), 1xx
//! answers, HEAD, keep-alive reuse, pooled connections the upstream closed, and malformed,
//! truncated or stalled responses, against a scripted upstream that writes raw bytes.
// Test code may panic on what it set up, and its helpers are `pub` for the test files.
#![allow(clippy::unwrap_used, clippy::expect_used, unreachable_pub)]

mod support;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use support::{ConfigBuilder, RunningGateway, Wechat};

/// What the scripted upstream writes for a request target, and whether it then closes.
type Script = fn(&str) -> (Vec<u8>, bool);

struct Scripted {
    addr: SocketAddr,
    connections: Arc<AtomicUsize>,
}

impl Scripted {
    async fn start(script: Script) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let connections = Arc::new(AtomicUsize::new(0));
        let counter = connections.clone();
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                counter.fetch_add(1, Ordering::SeqCst);
                tokio::spawn(serve(stream, script));
            }
        });
        Self { addr, connections }
    }

    fn connections(&self) -> usize {
        self.connections.load(Ordering::SeqCst)
    }
}

/// Reads request heads (and `Content-Length` bodies) and answers each from the script.
async fn serve(mut stream: TcpStream, script: Script) {
    let mut buf = Vec::new();
    loop {
        let head_end = loop {
            if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                break i + 4;
            }
            let mut chunk = [0u8; 4096];
            match stream.read(&mut chunk).await {
                Ok(0) | Err(_) => return,
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
            }
        };
        let head = String::from_utf8_lossy(&buf[..head_end]).into_owned();
        let length: usize = head
            .lines()
            .filter_map(|l| l.split_once(':'))
            .find(|(k, _)| k.eq_ignore_ascii_case("content-length"))
            .and_then(|(_, v)| v.trim().parse().ok())
            .unwrap_or(0);
        let target = head.split(' ').nth(1).unwrap_or("").to_string();
        if target.ends_with("/early-open") {
            // Answers at once and keeps the connection open, reading nothing more: only a
            // client that listens while it sends hears the answer.
            let _ = stream
                .write_all(b"HTTP/1.1 401 Unauthorized\r\ncontent-length: 4\r\n\r\nnope")
                .await;
            tokio::time::sleep(std::time::Duration::from_secs(30)).await;
            return;
        }
        if target.ends_with("/early") {
            // Answers without reading the body, then closes with it unread.
            let _ = stream
                .write_all(b"HTTP/1.1 413 Payload Too Large\r\ncontent-length: 7\r\nconnection: close\r\n\r\ntoo big")
                .await;
            return;
        }
        while buf.len() < head_end + length {
            let mut chunk = [0u8; 4096];
            match stream.read(&mut chunk).await {
                Ok(0) | Err(_) => return,
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
            }
        }
        buf.drain(..head_end + length);
        let (answer, close) = script(&target);
        if stream.write_all(&answer).await.is_err() {
            return;
        }
        if close {
            let _ = stream.shutdown().await;
            return;
        }
    }
}

async fn gateway(upstream: &Scripted) -> (Wechat, RunningGateway) {
    let wechat = Wechat::start().await;
    let config = ConfigBuilder::new(&wechat.base(), &format!("http://{}", upstream.addr));
    let gateway = RunningGateway::start(&config.text()).await;
    (wechat, gateway)
}

async fn get(gw: &RunningGateway, path: &str) -> (u16, Vec<u8>) {
    let response = support::client()
        .get(gw.url(path))
        .send()
        .await
        .expect("request");
    let status = response.status().as_u16();
    let body = response.bytes().await.expect("body").to_vec();
    (status, body)
}

fn pattern(len: usize) -> Vec<u8> {
    (0..len).map(|i| b'a' + (i % 26) as u8).collect()
}

const LARGE: usize = 1 << 20;

fn answers(target: &str) -> (Vec<u8>, bool) {
    let path = target.rsplit('/').next().unwrap_or("");
    let text = |s: &str| s.as_bytes().to_vec();
    match path {
        "chunked" => (
            text("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5;ext=1\r\nhello\r\n6\r\n world\r\n0\r\nx-trailer: t\r\n\r\n"),
            false,
        ),
        "until-close" => (text("HTTP/1.1 200 OK\r\n\r\nuntil close"), true),
        "then-close" => (text("HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok"), true),
        "informational" => (
            text("HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 103 Early Hints\r\nlink: </a>\r\n\r\nHTTP/1.1 201 Created\r\ncontent-length: 4\r\n\r\ndone"),
            false,
        ),
        "two-lengths" => (
            text("HTTP/1.1 200 OK\r\ncontent-length: 1\r\ncontent-length: 2\r\n\r\nxy"),
            true,
        ),
        "garbage" => (text("SSH-2.0-OpenSSH_9.2\r\n\r\n"), true),
        // A tenth of the body, then the upstream closes ("truncated") or stays open and
        // sends nothing more ("stalled").
        "truncated" | "stalled" => (
            text("HTTP/1.1 200 OK\r\ncontent-length: 100\r\n\r\nonly ten b"),
            path == "truncated",
        ),
        "large" => {
            let mut out = format!("HTTP/1.1 200 OK\r\ncontent-length: {LARGE}\r\n\r\n").into_bytes();
            out.extend_from_slice(&pattern(LARGE));
            (out, false)
        }
        "large-chunked" => {
            let mut out = b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n".to_vec();
            for piece in pattern(LARGE).chunks(7919) {
                out.extend_from_slice(format!("{:X}\r\n", piece.len()).as_bytes());
                out.extend_from_slice(piece);
                out.extend_from_slice(b"\r\n");
            }
            out.extend_from_slice(b"0\r\n\r\n");
            (out, false)
        }
        "head" => (
            text("HTTP/1.1 200 OK\r\ncontent-length: 5\r\ncontent-type: text/plain\r\n\r\n"),
            false,
        ),
        _ => (text("HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\nplain"), false),
    }
}

#[tokio::test]
async fn chunked_responses_arrive_whole_and_the_connection_is_reused() {
    let upstream = Scripted::start(answers).await;
    let (_wechat, gw) = gateway(&upstream).await;
    for _ in 0..3 {
        let (status, body) = get(&gw, "/public/chunked").await;
        assert_eq!((status, body.as_slice()), (200, &b"hello world"[..]));
    }
    assert_eq!(
        upstream.connections(),
        1,
        "one kept-alive upstream connection"
    );
}

#[tokio::test]
async fn a_response_without_a_length_ends_with_its_connection() {
    let upstream = Scripted::start(answers).await;
    let (_wechat, gw) = gateway(&upstream).await;
    for _ in 0..2 {
        let (status, body) = get(&gw, "/public/until-close").await;
        assert_eq!((status, body.as_slice()), (200, &b"until close"[..]));
    }
    assert_eq!(
        upstream.connections(),
        2,
        "such a connection is never reused"
    );
}

#[tokio::test]
async fn pooled_connections_the_upstream_closed_are_replaced() {
    let upstream = Scripted::start(answers).await;
    let (_wechat, gw) = gateway(&upstream).await;
    for _ in 0..5 {
        let (status, body) = get(&gw, "/public/then-close").await;
        assert_eq!((status, body.as_slice()), (200, &b"ok"[..]));
    }
    assert_eq!(upstream.connections(), 5);
}

#[tokio::test]
async fn informational_answers_are_skipped() {
    let upstream = Scripted::start(answers).await;
    let (_wechat, gw) = gateway(&upstream).await;
    let (status, body) = get(&gw, "/public/informational").await;
    assert_eq!((status, body.as_slice()), (201, &b"done"[..]));
    let (status, body) = get(&gw, "/public/informational").await;
    assert_eq!((status, body.as_slice()), (201, &b"done"[..]));
    assert_eq!(upstream.connections(), 1);
}

#[tokio::test]
async fn malformed_responses_are_502_with_the_fixed_error() {
    let upstream = Scripted::start(answers).await;
    let (_wechat, gw) = gateway(&upstream).await;
    for path in ["/public/two-lengths", "/public/garbage"] {
        let (status, body) = get(&gw, path).await;
        assert_eq!(status, 502, "{path}");
        let json: serde_json::Value = serde_json::from_slice(&body).expect("JSON error");
        assert_eq!(json["error"], "upstream_unavailable", "{path}");
    }
    // The gateway keeps serving afterwards.
    assert_eq!(get(&gw, "/public/ok").await, (200, b"plain".to_vec()));
}

#[tokio::test]
async fn large_bodies_stream_through_intact_in_both_framings() {
    let upstream = Scripted::start(answers).await;
    let (_wechat, gw) = gateway(&upstream).await;
    for path in ["/public/large", "/public/large-chunked", "/public/large"] {
        let (status, body) = get(&gw, path).await;
        assert_eq!(status, 200, "{path}");
        assert!(
            body == pattern(LARGE),
            "{path}: {} bytes differ",
            body.len()
        );
    }
    assert_eq!(upstream.connections(), 1, "each body was read to its end");
}

#[tokio::test]
async fn a_head_answer_has_no_body_and_keeps_the_connection() {
    let upstream = Scripted::start(answers).await;
    let (_wechat, gw) = gateway(&upstream).await;
    let client = support::client();
    let response = client
        .head(gw.url("/public/head"))
        .send()
        .await
        .expect("head");
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["content-length"], "5");
    assert_eq!(get(&gw, "/public/ok").await, (200, b"plain".to_vec()));
    assert_eq!(upstream.connections(), 1);
}

#[tokio::test]
async fn an_upstream_that_dies_inside_the_body_aborts_the_response() {
    let upstream = Scripted::start(answers).await;
    let (_wechat, gw) = gateway(&upstream).await;
    // The head may or may not have left before the failure; a whole body never arrives.
    let outcome = support::client()
        .get(gw.url("/public/truncated"))
        .send()
        .await;
    if let Ok(response) = outcome {
        assert_eq!(response.status(), 200);
        assert!(
            response.bytes().await.is_err(),
            "a truncated body must not look complete"
        );
    }
    assert_eq!(get(&gw, "/public/ok").await, (200, b"plain".to_vec()));
}

#[tokio::test]
async fn an_upstream_that_stalls_inside_the_body_is_cut_off_after_the_response_timeout() {
    let upstream = Scripted::start(answers).await;
    let wechat = Wechat::start().await;
    let mut config = ConfigBuilder::new(&wechat.base(), &format!("http://{}", upstream.addr));
    config.routes = config.routes.replacen(
        "auth = \"none\"",
        "auth = \"none\"\nresponse_timeout = \"300ms\"",
        1,
    );
    let gw = RunningGateway::start(&config.text()).await;
    let response = support::client()
        .get(gw.url("/public/stalled"))
        .send()
        .await
        .expect("the head arrives");
    assert_eq!(response.status(), 200);
    let body = tokio::time::timeout(std::time::Duration::from_secs(5), response.bytes())
        .await
        .expect("the response is cut off, not left hanging");
    assert!(body.is_err(), "a stalled body must not look complete");
    assert_eq!(get(&gw, "/public/ok").await, (200, b"plain".to_vec()));
}

#[tokio::test]
async fn a_client_that_stops_reading_is_dropped_and_its_upstream_connection_with_it() {
    // An upstream that streams a chunked body for as long as anyone takes it.
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let (let_go, upstream_released) = tokio::sync::oneshot::channel();
    tokio::spawn(async move {
        let (mut stream, _) = listener.accept().await.expect("accept");
        let mut head = [0u8; 4096];
        let _ = stream.read(&mut head).await;
        let mut chunk = b"10000\r\n".to_vec();
        chunk.extend_from_slice(&[b'x'; 0x10000]);
        chunk.extend_from_slice(b"\r\n");
        let _ = stream
            .write_all(b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n")
            .await;
        while stream.write_all(&chunk).await.is_ok() {}
        let _ = let_go.send(());
    });
    let wechat = Wechat::start().await;
    let mut config = ConfigBuilder::new(&wechat.base(), &format!("http://{addr}"));
    config.server_extra = "request_timeout = \"500ms\"".into();
    let gw = RunningGateway::start(&config.text()).await;
    let mut client = TcpStream::connect(gw.addr).await.expect("connect");
    client
        .write_all(b"GET /public/endless HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .expect("request");
    // The client never reads: the gateway gives up on it and lets the upstream go.
    let released =
        tokio::time::timeout(std::time::Duration::from_secs(20), upstream_released).await;
    assert!(
        released.is_ok(),
        "a client that stopped reading held its upstream connection for 20 s"
    );
    drop(client);
}

#[tokio::test]
async fn an_early_answer_to_a_trickling_body_is_passed_on_at_once() {
    let upstream = Scripted::start(answers).await;
    let wechat = Wechat::start().await;
    let mut config = ConfigBuilder::new(&wechat.base(), &format!("http://{}", upstream.addr));
    config.server_extra = "request_timeout = \"10s\"".into();
    let gw = RunningGateway::start(&config.text()).await;
    let head = "POST /public/early-open HTTP/1.1\r\nHost: t\r\nContent-Length: 100000\r\n\r\n";
    let (answer, elapsed) =
        support::trickle(gw.addr, head, std::time::Duration::from_millis(200)).await;
    assert_eq!(support::status_of(&answer), 401, "{answer}");
    assert!(
        elapsed < std::time::Duration::from_secs(5),
        "the early answer waited for the body: {elapsed:?}"
    );
}

#[tokio::test]
async fn an_upstream_that_answers_before_reading_the_body_is_heard() {
    let upstream = Scripted::start(answers).await;
    let (_wechat, gw) = gateway(&upstream).await;
    let body = vec![b'x'; 4 << 20];
    let outcome = support::client()
        .post(gw.url("/public/early"))
        .body(body)
        .send()
        .await;
    // The upstream's early answer comes back, or the client's own request fails while it is
    // still sending: never a hang, and never a 502 once the answer arrived.
    if let Ok(response) = outcome {
        assert_eq!(response.status(), 413);
        assert_eq!(response.text().await.expect("body"), "too big");
    }
    assert_eq!(get(&gw, "/public/ok").await, (200, b"plain".to_vec()));
}

#[test]
fn a_response_head_over_64_kib_is_refused_however_it_arrives() {
    use bytes::BytesMut;
    use wxgate::read_head;

    let head = [
        b"HTTP/1.1 200 OK\r\nx-big: ".as_ref(),
        &[b'a'; 66_000],
        b"\r\ncontent-length: 0\r\n\r\n",
    ]
    .concat();
    // Whole (one read), and in two reads the first of which ends past 64 KiB.
    let mut whole = BytesMut::from(&head[..]);
    let mut first = BytesMut::from(&head[..65_600]);
    assert!(read_head(&mut first, false).is_err());
    let whole = read_head(&mut whole, false).map(|h| h.map(|h| h.status));
    assert!(whole.is_err(), "a 66 kB head parsed in one read: {whole:?}");
    // Just under the limit it parses, whole or split.
    let fits = [
        b"HTTP/1.1 200 OK\r\nx-big: ".as_ref(),
        &[b'a'; 65_000],
        b"\r\ncontent-length: 0\r\n\r\n",
    ]
    .concat();
    let mut split = BytesMut::from(&fits[..60_000]);
    assert!(matches!(read_head(&mut split, false), Ok(None)));
    split.extend_from_slice(&fits[60_000..]);
    let parsed = read_head(&mut split, false).map(|h| h.map(|h| h.status.as_u16()));
    assert!(matches!(parsed, Ok(Some(200))), "{parsed:?}");
}
