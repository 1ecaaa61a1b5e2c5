//! Limits: large bodies arrive intact, bodies over the server's or a route's limit are 413
//! (declared or chunked), oversized heads are 431 or 414, and every request on a kept-alive
//! connection is authenticated on its own.

use std::time::Duration;

use crate::support::raw::{self, head_of, replies};
use crate::support::{mint, World};
use crate::{assert_identity, bearer, exchange, expect, route, send, targets, verified, Headers};

#[tokio::test]
async fn a_large_body_arrives_byte_identical() {
    let world = World::start().await;
    let body: Vec<u8> = (0..100 * 1024u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    let request = world.http.post(world.url("/api/upload"));
    let request = request.bearer_auth(mint("mia_1", 600)).body(body.clone());
    assert_eq!(request.send().await.expect("post").status(), 200);
    let seen = world.upstream.last();
    assert_eq!(
        (seen.method.as_str(), seen.body.len()),
        ("POST", body.len())
    );
    assert!(seen.body == body, "the body changed on the way");
}

#[tokio::test]
async fn bodies_over_the_limit_are_413_and_never_complete_upstream() {
    let limit = "max_body_bytes = 1000";
    let world = World::start_with(|c| c.server_extra = limit.into()).await;
    let gw = world.gateway.addr;
    // Only the head is sent: the answer must come from Content-Length alone.
    let reply = send(gw, "POST /public/declared", &[("Content-Length", "5000")]).await;
    expect(&reply, 413, "payload_too_large", "declared");
    assert_eq!(world.upstream.count(), 0);
    // A chunked body gives no warning: it is cut off when it grows past the limit.
    let chunk = format!("258\r\n{}\r\n", "x".repeat(0x258));
    let head = head_of("POST /public/grow", &[("Transfer-Encoding", "chunked")]);
    let request = format!("{head}{chunk}{chunk}0\r\n\r\n");
    let text = raw::collect(gw, request.as_bytes(), Duration::from_secs(10)).await;
    let answers = replies(&text);
    assert_eq!(answers.len(), 1, "{text}");
    expect(&answers[0], 413, "payload_too_large", "chunked");
    // A later request has landed, so an earlier complete one would have.
    expect(
        &send(gw, "GET /public/barrier", &[]).await,
        200,
        "",
        "barrier",
    );
    assert_eq!(targets(&world.upstream), ["/public/barrier"]);
}

#[tokio::test]
async fn a_route_can_set_its_own_body_limit() {
    let world = World::start_with(|c| {
        c.routes = route(
            &c.upstream,
            "/small",
            "auth = \"none\"\nmax_body_bytes = 100",
        ) + &route(&c.upstream, "/public", "auth = \"none\"");
    })
    .await;
    #[rustfmt::skip]
    let cases = [("/small/x", 100, 200), ("/small/x", 101, 413), ("/public/x", 5000, 200)];
    for (target, size, status) in cases {
        let request = world.http.post(world.url(target)).body(vec![b'b'; size]);
        let response = request.send().await.expect("post");
        assert_eq!(response.status(), status, "{target} with {size} bytes");
    }
    let sizes: Vec<usize> = world
        .upstream
        .requests()
        .iter()
        .map(|r| r.body.len())
        .collect();
    assert_eq!(sizes, [100, 5000]);
}

#[tokio::test]
async fn oversized_request_heads_are_431_or_414() {
    let limits = "max_headers = 20\nmax_header_bytes = 2000\nmax_uri_bytes = 300";
    let world = World::start_with(|c| c.server_extra = limits.into()).await;
    let names: Vec<String> = (0..20).map(|i| format!("X-Filler-{i}")).collect();
    let filler = |n: usize| {
        names[..n]
            .iter()
            .map(|k| (k.as_str(), "1"))
            .collect::<Vec<_>>()
    };
    let (big, small) = ("b".repeat(3000), "b".repeat(1000));
    let uri = |len: usize| format!("GET /public/{}", "a".repeat(len - "/public/".len()));
    // `head` adds Host and `send` adds Connection, so 18 fillers make exactly max_headers.
    #[rustfmt::skip]
    let cases = [
        (uri(40), filler(18), 200, ""), (uri(40), filler(19), 431, "headers_too_large"),
        (uri(40), vec![("X-Big", &*small)], 200, ""),
        (uri(40), vec![("X-Big", &*big)], 431, "headers_too_large"),
        (uri(300), vec![], 200, ""), (uri(301), vec![], 414, "uri_too_long"),
    ];
    for (line, headers, status, error) in &cases {
        let reply = send(world.gateway.addr, line, headers).await;
        let case = format!("{} byte target, {} headers", line.len() - 4, headers.len());
        expect(&reply, *status, error, &case);
    }
    assert_eq!(world.upstream.count(), 3);

    let world = World::start().await; // default max_header_bytes = 65536
    let huge = "h".repeat(70_000);
    let reply = send(world.gateway.addr, "GET /public/h", &[("X-Huge", &huge)]).await;
    expect(&reply, 431, "headers_too_large", "70 kB header");
    assert_eq!(world.upstream.count(), 0);
}

#[tokio::test]
async fn a_kept_alive_connection_authenticates_every_request_on_its_own() {
    let world = World::start().await;
    let auth = bearer(&mint("nina_1", 600));
    let requests: [(&str, Headers); 4] = [
        ("GET /api/first", &[("Authorization", &auth)]),
        ("GET /api/second", &[]),
        ("GET /optional/third", &[]),
        ("GET /api/fourth", &[("X-OpenId", "evil-1")]),
    ];
    // All four are pipelined on one connection; each is authenticated on its own.
    let replies = exchange(world.gateway.addr, &requests).await;
    let statuses: Vec<u16> = replies.iter().map(|r| r.status).collect();
    assert_eq!(statuses, [200, 401, 200, 401]);
    let seen = world.upstream.requests();
    assert_eq!(targets(&world.upstream), ["/api/first", "/optional/third"]);
    assert_identity(&seen[0], &verified("nina_1"), "first");
    assert_identity(&seen[1], &[], "third, after an authenticated request");
}
