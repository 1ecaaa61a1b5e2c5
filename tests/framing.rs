//! Request framing on raw sockets: CL/TE smuggling, obfuscated codings, bad lengths, obs-fold,
//! Host rules, request-target forms, h2c upgrades, slow heads, trailers and pipelining
//! (stalled bodies are in `timeouts.rs`, WebSocket upgrades in `websocket.rs`). Each case
//! checks what the client got, whether the connection was closed, and that the upstream
//! never got a smuggled request.
// Test code may panic on what it set up, and its helpers are `pub` for the test files.
#![allow(clippy::unwrap_used, clippy::expect_used, unreachable_pub)]

mod support;

use std::net::SocketAddr;
use std::time::Duration;

use support::raw::{answer, head, Raw};
use support::{mint, World};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// A complete request that, if anyone parsed it out of a body, the upstream would receive.
fn smuggled() -> String {
    let auth = format!("Authorization: Bearer {}", mint("smuggler_1", 600));
    head("GET /api/smuggled", &[&auth])
}

/// Sends each request on its own connection. A row fails unless its first answer has one of
/// `statuses`, the gateway then closes the connection, and nothing else (no second response)
/// was sent. Returns the failing rows.
async fn answered_then_closed(addr: SocketAddr, rows: &[String], statuses: &[u16]) -> Vec<String> {
    let mut failures = Vec::new();
    for request in rows {
        let mut raw = Raw::connect(addr).await;
        raw.send(request.as_bytes()).await;
        let status = raw.reply().await.map_or(0, |r| r.status);
        let closed = raw.closes_within(Duration::from_secs(3)).await;
        let extra = String::from_utf8_lossy(&raw.buf);
        if !statuses.contains(&status) || !closed || !extra.is_empty() {
            let got = format!("{status}, closed: {closed}, then {extra:?}");
            failures.push(format!("{request:?}\n    -> {got}"));
        }
    }
    failures
}

fn assert_no_failures(failures: Vec<String>) {
    let n = failures.len();
    assert!(n == 0, "{n} rows failed:\n{}", failures.join("\n"));
}

fn targets(world: &World) -> Vec<String> {
    world
        .upstream
        .requests()
        .into_iter()
        .map(|r| r.target)
        .collect()
}

/// A request through the same pool has landed, so an earlier complete one would have too.
async fn barrier(world: &World) {
    let status = answer(world.gateway.addr, &head("GET /public/barrier", &[])).await;
    assert_eq!(status, Some(200));
}

#[tokio::test]
async fn transfer_encoding_with_content_length_never_lets_a_second_request_through() {
    let world = World::start().await;
    let inner = smuggled();
    let size = format!("{:x}\r\n", inner.len());
    // CL.TE: Content-Length covers all; chunked ends at `0` and leaves `inner` behind.
    let cl_te = format!("0\r\n\r\n{inner}");
    let cl_all = format!("Content-Length: {}", cl_te.len());
    // TE.CL: Content-Length ends after the chunk-size line and leaves `inner` behind.
    let te_cl = format!("{size}{inner}\r\n0\r\n\r\n");
    let cl_size = format!("Content-Length: {}", size.len());
    let te = "Transfer-Encoding: chunked";
    let line = "POST /public/outer";
    #[rustfmt::skip]
    let rows = [
        head(line, &[&cl_all, te]) + &cl_te, head(line, &[te, &cl_all]) + &cl_te,
        head(line, &[te, &cl_size]) + &te_cl, head(line, &[&cl_size, te]) + &te_cl,
    ];
    // SPEC: 400, or chunked with Content-Length removed and the connection closed after.
    let failures = answered_then_closed(world.gateway.addr, &rows, &[200, 400]).await;
    assert_no_failures(failures);
    let seen = world.upstream.requests();
    assert!(
        seen.iter().all(|r| !r.target.contains("smuggled")),
        "{seen:#?}"
    );
    for r in seen {
        let framing = r.all("content-length").len() + r.all("transfer-encoding").len();
        assert!(framing <= 1, "ambiguous framing upstream:\n{}", r.head);
    }
}

#[tokio::test]
async fn obfuscated_transfer_encodings_are_refused_and_the_connection_closed() {
    let world = World::start().await;
    let body = format!("0\r\n\r\n{}", smuggled());
    let te = |v: &str| format!("Transfer-Encoding{v}");
    #[rustfmt::skip]
    let codings = [
        vec![te(": gzip, chunked")], vec![te(": chunked, chunked")], vec![te(": xchunked")],
        vec![te(": chunked"), te(": chunked")], vec![te(": chunked"), te(": identity")],
        vec![te(": identity")], vec![te(" : chunked")], vec![te(": chunked\x0b")],
    ];
    let rows = codings.iter().map(|lines| {
        let lines: Vec<&str> = lines.iter().map(String::as_str).collect();
        head("POST /public/outer", &lines) + &body
    });
    let http10 = format!(
        "POST /public/outer HTTP/1.0\r\n{}\r\n\r\n{body}",
        te(": chunked")
    );
    let rows: Vec<String> = rows.chain([http10]).collect();
    let failures = answered_then_closed(world.gateway.addr, &rows, &[400, 501]).await;
    assert_no_failures(failures);
    assert_eq!(targets(&world), Vec::<String>::new());
}

#[tokio::test]
async fn ambiguous_content_lengths_are_refused_and_the_connection_closed() {
    let world = World::start().await;
    let body = format!("hello{}", smuggled());
    #[rustfmt::skip]
    let lengths: [&[&str]; 6] = [
        &["Content-Length: 5", "Content-Length: 6"], &["Content-Length: +5"],
        &["Content-Length: -1"], &["Content-Length: 5, 6"], &["Content-Length: 0x5"],
        &["Content-Length: 5 5"],
    ];
    let rows = lengths.map(|lines| head("POST /public/outer", lines) + &body);
    let failures = answered_then_closed(world.gateway.addr, &rows, &[400]).await;
    assert_no_failures(failures);
    assert_eq!(targets(&world), Vec::<String>::new());
}

#[tokio::test]
async fn obs_fold_continuation_lines_are_refused() {
    let world = World::start().await;
    let auth = format!("Authorization: Bearer {}", mint("fold_1", 600));
    let rows = [
        head("GET /public/fold", &["X-Folded: a", " X-OpenId: evil"]),
        head("GET /api/fold", &[&auth, "X-Trace: a", "\tb"]),
        head("GET /public/fold", &["Content-Length: 0", " 5"]),
    ];
    let failures = answered_then_closed(world.gateway.addr, &rows, &[400]).await;
    assert_no_failures(failures);
    assert_eq!(targets(&world), Vec::<String>::new());
}

#[tokio::test]
async fn http_1_1_needs_exactly_one_host_and_http_1_0_needs_none() {
    let world = World::start().await;
    #[rustfmt::skip]
    let rows = [
        ("GET /public/h HTTP/1.1\r\n\r\n", 400),
        ("GET /public/h HTTP/1.1\r\nHost: a.test\r\nHost: b.test\r\n\r\n", 400),
        ("GET /public/h HTTP/1.1\r\nHost: a.test\r\nHost: a.test\r\n\r\n", 400),
        ("GET /public/h HTTP/1.0\r\n\r\n", 200),
    ];
    for (request, status) in rows {
        let got = answer(world.gateway.addr, request).await;
        assert_eq!(got, Some(status), "{request:?}");
    }
    let seen = world.upstream.requests();
    assert_eq!(seen.len(), 1, "{seen:#?}");
    assert_eq!(seen[0].all("host"), vec![world.upstream.addr.to_string()]);
}

#[tokio::test]
async fn connect_asterisk_and_authority_form_targets_are_refused_and_never_tunnel() {
    let world = World::start().await;
    let up = world.upstream.addr;
    #[rustfmt::skip]
    let rows = [
        format!("CONNECT {up} HTTP/1.1\r\nHost: {up}\r\n\r\n"),
        "CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n\r\n".into(),
        "OPTIONS * HTTP/1.1\r\nHost: wxgate.test\r\n\r\n".into(),
        format!("GET {up} HTTP/1.1\r\nHost: {up}\r\n\r\n"),
    ];
    for request in rows {
        let mut raw = Raw::connect(world.gateway.addr).await;
        // Were the CONNECT a tunnel, the second request would reach the upstream as it is.
        let follow_up = head("GET /tunnelled", &[]);
        raw.send(format!("{request}{follow_up}").as_bytes()).await;
        assert_eq!(
            raw.reply().await.map(|r| r.status),
            Some(400),
            "{request:?}"
        );
        if let Some(second) = raw.reply().await {
            assert_eq!(
                second.status, 404,
                "{request:?}: follow-up not routed by wxgate"
            );
        }
    }
    assert_eq!(targets(&world), Vec::<String>::new());
}

#[tokio::test]
async fn absolute_form_is_routed_by_its_path_and_never_dials_the_named_host() {
    let other = support::Upstream::start().await;
    let world = World::start().await;
    let auth = format!("Authorization: Bearer {}", mint("abs_1", 600));
    for authority in [other.addr.to_string(), "evil.example".to_string()] {
        let line = format!("GET http://{authority}/api/x?q=1");
        let request = head(&line, &[&auth]).replace("wxgate.test", &authority);
        let status = answer(world.gateway.addr, &request).await;
        assert_eq!(status, Some(200), "{authority}");
        let seen = world.upstream.last();
        assert_eq!(seen.target, "/api/x?q=1", "{authority}");
        assert_eq!(seen.all("x-openid"), vec!["abs_1"]);
    }
    assert_eq!(
        other.count(),
        0,
        "wxgate connected where the target pointed"
    );
}

#[tokio::test]
async fn an_h2c_upgrade_is_never_honoured_or_forwarded() {
    let world = World::start().await;
    #[rustfmt::skip]
    let lines = [
        "Connection: Upgrade, HTTP2-Settings", "Upgrade: h2c", "HTTP2-Settings: AAMAAABkAARAAAAAAAIAAAAA",
    ];
    let mut raw = Raw::connect(world.gateway.addr).await;
    raw.send(head("GET /public/h2c", &lines).as_bytes()).await;
    let reply = raw.reply().await.expect("answer");
    assert_eq!((reply.version.as_str(), reply.status), ("HTTP/1.1", 200));
    assert!(reply.header("upgrade").is_none(), "{reply:?}");
    // The connection still speaks HTTP/1.1 afterwards.
    raw.send(head("GET /public/after", &[]).as_bytes()).await;
    assert_eq!(raw.reply().await.map(|r| r.status), Some(200));
    let seen = &world.upstream.requests()[0];
    for name in ["upgrade", "http2-settings"] {
        assert!(
            seen.all(name).is_empty(),
            "{name} went upstream:\n{}",
            seen.head
        );
    }
}

#[tokio::test]
async fn a_client_that_never_finishes_its_head_is_disconnected() {
    let timeout = "header_read_timeout = \"500ms\"";
    let world = World::start_with(|c| c.server_extra = timeout.into()).await;
    let mut raw = Raw::connect(world.gateway.addr).await;
    raw.send(b"GET /public/slow HTTP/1.1\r\nHost: wxgate.test\r\nX-Partial: ")
        .await;
    let closed = raw.closes_within(Duration::from_secs(5)).await;
    assert!(closed, "a half-sent head kept the connection for 5 s");

    // Dripping a header every 100 ms does not reset the clock: it covers the whole head.
    let stream = TcpStream::connect(world.gateway.addr)
        .await
        .expect("connect");
    let (mut reader, mut writer) = stream.into_split();
    let drip = tokio::spawn(async move {
        let _ = writer
            .write_all(b"GET /public/drip HTTP/1.1\r\nHost: x\r\n")
            .await;
        let mut tick = tokio::time::interval(Duration::from_millis(100));
        loop {
            tick.tick().await;
            if writer.write_all(b"X-Drip: a\r\n").await.is_err() {
                return;
            }
        }
    });
    let mut sink = [0u8; 1024];
    let until_closed = async { while reader.read(&mut sink).await.is_ok_and(|n| n > 0) {} };
    let closed = tokio::time::timeout(Duration::from_secs(5), until_closed).await;
    drip.abort();
    assert!(
        closed.is_ok(),
        "a dripping head kept the connection for 5 s"
    );
    assert_eq!(targets(&world), Vec::<String>::new());
}

#[tokio::test]
async fn a_client_that_says_nothing_or_half_a_preface_is_disconnected() {
    let timeout = "header_read_timeout = \"500ms\"";
    let world = World::start_with(|c| c.server_extra = timeout.into()).await;
    // Connected and silent: nothing to time as a head yet, but the same clock applies.
    let mut silent = Raw::connect(world.gateway.addr).await;
    assert!(
        silent.closes_within(Duration::from_secs(5)).await,
        "a silent connection was kept for 5 s"
    );
    // The start of the HTTP/2 preface, then nothing: neither protocol is ever decided.
    let mut hesitant = Raw::connect(world.gateway.addr).await;
    hesitant.send(b"PRI * HTTP/2").await;
    assert!(
        hesitant.closes_within(Duration::from_secs(5)).await,
        "half a preface kept the connection for 5 s"
    );
    // A request split inside its first bytes is still read as HTTP/1.1.
    let mut split = Raw::connect(world.gateway.addr).await;
    split.send(b"P").await;
    split
        .send(b"UT /public/split HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n")
        .await;
    let reply = split.reply().await.map(|r| r.status);
    assert_eq!(reply, Some(200));
    assert_eq!(targets(&world), vec!["/public/split".to_string()]);
}

#[tokio::test]
async fn an_idle_http2_connection_is_wound_down_like_an_idle_http1_one() {
    use http_body_util::{BodyExt, Empty};
    use hyper_util::rt::{TokioExecutor, TokioIo};

    let timeout = "header_read_timeout = \"500ms\"";
    let world = World::start_with(|c| c.server_extra = timeout.into()).await;
    let stream = TcpStream::connect(world.gateway.addr)
        .await
        .expect("connect");
    let (mut sender, connection) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(stream))
            .await
            .expect("HTTP/2 handshake");
    let driver = tokio::spawn(connection);
    let request = http::Request::get("http://wxgate.test/public/h2-idle")
        .body(Empty::<bytes::Bytes>::new())
        .expect("request");
    let response = sender.send_request(request).await.expect("response");
    assert_eq!(response.status(), 200);
    response.into_body().collect().await.expect("body");
    assert_eq!(targets(&world), vec!["/public/h2-idle".to_string()]);
    // Nothing more is asked: the gateway ends the connection (a GOAWAY, then close).
    let ended = tokio::time::timeout(Duration::from_secs(5), driver).await;
    assert!(ended.is_ok(), "an idle HTTP/2 connection was kept for 5 s");
}

#[tokio::test]
async fn request_trailers_never_become_headers_upstream() {
    let world = World::start().await;
    let auth = format!("Authorization: Bearer {}", mint("trailer_1", 600));
    #[rustfmt::skip]
    let body = concat!(
        "5\r\nhello\r\n6\r\n world\r\n0\r\n",
        "X-OpenId: evil-1\r\nX_OpenId: evil-2\r\nX-Forwarded-For: 6.6.6.6\r\n\r\n",
    );
    let lines = [
        "Transfer-Encoding: chunked",
        "Trailer: X-OpenId, X_OpenId",
        &auth,
    ];
    for (target, expected) in [("/public/t", vec![]), ("/api/t", vec!["trailer_1"])] {
        let request = head(&format!("POST {target}"), &lines) + body;
        let status = answer(world.gateway.addr, &request).await;
        assert_eq!(status, Some(200), "{target}");
        let seen = world.upstream.last();
        assert_eq!(seen.body, b"hello world", "{target}");
        let spelled = seen.spellings("X-OpenId").len();
        assert_eq!(spelled, expected.len(), "{target}\n{}", seen.head);
        assert_eq!(seen.all("X-OpenId"), expected, "{target}");
        let leaked = !seen.all("trailer").is_empty() || seen.head.contains("6.6.6.6");
        assert!(!leaked, "{}", seen.head);
    }
}

#[tokio::test]
async fn pipelined_requests_are_answered_in_order() {
    let world = World::start().await;
    let requests = [
        head("GET /public/one", &["X-Request-Id: one"]),
        head(
            "POST /public/two",
            &["X-Request-Id: two", "Content-Length: 3"],
        ) + "abc",
        head("GET /nothing", &["X-Request-Id: three"]),
        head("GET /public/four", &["X-Request-Id: four"]),
    ];
    let mut raw = Raw::connect(world.gateway.addr).await;
    raw.send(requests.concat().as_bytes()).await;
    let mut answers = Vec::new();
    for _ in &requests {
        let reply = raw.reply().await.expect("one answer per request");
        let id = reply.header("x-request-id").unwrap_or_default().to_string();
        answers.push((reply.status, id));
    }
    let want = [(200, "one"), (200, "two"), (404, "three"), (200, "four")];
    assert_eq!(answers, want.map(|(s, id)| (s, id.to_string())));
    let seen = world.upstream.requests();
    assert_eq!(
        targets(&world),
        ["/public/one", "/public/two", "/public/four"]
    );
    assert_eq!(seen[1].body, b"abc");
}

#[tokio::test]
async fn a_chunk_size_overflow_is_refused_and_the_connection_closed() {
    let world = World::start().await;
    let body = format!("fffffffffffffffff1\r\nhello\r\n0\r\n\r\n{}", smuggled());
    let rows = [head("POST /public/overflow", &["Transfer-Encoding: chunked"]) + &body];
    let failures = answered_then_closed(world.gateway.addr, &rows, &[400]).await;
    assert_no_failures(failures);
    barrier(&world).await;
    assert_eq!(targets(&world), ["/public/barrier"]);
}

#[tokio::test]
async fn connection_naming_a_framing_header_does_not_change_the_body_upstream() {
    let world = World::start().await;
    let (cl, te) = ("Content-Length: 5", "Transfer-Encoding: chunked");
    let rows = [
        head("POST /public/c", &[cl, "Connection: Content-Length"]) + "hello",
        head("POST /public/c", &[te, "Connection: Transfer-Encoding"]) + "5\r\nhello\r\n0\r\n\r\n",
    ];
    for request in rows {
        let status = answer(world.gateway.addr, &request).await;
        assert_eq!(status, Some(200), "{request:?}");
        assert_eq!(world.upstream.last().body, b"hello", "{request:?}");
    }
}
