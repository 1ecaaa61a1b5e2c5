//! Routing: unrouted paths, the longest prefix on segment boundaries, method filters,
//! `strip_prefix` and the query string, host routes, app- and phone-restricted routes,
//! gateway endpoints before a catch-all route, upstream failures, and userinfo in a Host or
//! target.

use std::time::{Duration, Instant};

use crate::support::{self, mint, Upstream, World, APPID};
use crate::{bearer, expect, route, send, targets};

#[tokio::test]
async fn unrouted_paths_are_404_with_a_json_body() {
    let world = World::start().await;
    for target in ["/nothing", "/apix", "/publicx/y", "/"] {
        let reply = send(world.gateway.addr, &format!("GET {target}"), &[]).await;
        expect(&reply, 404, "no_route", target);
        let json = reply.one("content-type");
        assert_eq!(json, Some("application/json"), "{target}");
    }
    assert_eq!(world.upstream.count(), 0);
}

#[tokio::test]
async fn the_longest_prefix_wins_on_segment_boundaries() {
    let world = World::start_with(|c| {
        c.routes = route(&c.upstream, "/api", "auth = \"required\"")
            + &route(&c.upstream, "/api/open", "auth = \"none\"");
    })
    .await;
    #[rustfmt::skip]
    let cases = [("/api/open", 200), ("/api/open/x", 200), ("/api/openx", 401), ("/api", 401)];
    for (target, status) in cases {
        let reply = send(world.gateway.addr, &format!("GET {target}"), &[]).await;
        assert_eq!(reply.status, status, "{target}");
    }
    assert_eq!(targets(&world.upstream), ["/api/open", "/api/open/x"]);
}

#[tokio::test]
async fn a_method_filter_answers_405_with_allow() {
    let world = World::start_with(|c| {
        c.routes = route(&c.upstream, "/ro", "auth = \"none\"\nmethods = [\"GET\"]");
    })
    .await;
    let gw = world.gateway.addr;
    let reply = send(gw, "POST /ro/x", &[("Content-Length", "0")]).await;
    expect(&reply, 405, "method_not_allowed", "POST");
    assert_eq!(reply.one("allow"), Some("GET"));
    assert_eq!(world.upstream.count(), 0);
    expect(&send(gw, "GET /ro/x", &[]).await, 200, "", "GET");
    assert_eq!(world.upstream.last().method, "GET");
}

#[tokio::test]
async fn strip_prefix_and_the_query_string_are_forwarded_as_documented() {
    let world = World::start_with(|c| {
        c.routes = route(&c.upstream, "/svc", "auth = \"none\"\nstrip_prefix = true")
            + &route(&c.upstream, "/public", "auth = \"none\"");
    })
    .await;
    #[rustfmt::skip]
    let cases = [
        ("/svc/users/1?x=1", "/users/1?x=1"), ("/svc", "/"), ("/svc?x=1", "/?x=1"),
        ("/public/q?a=1&b=%2F", "/public/q?a=1&b=%2F"),
        ("/public/q?next=../../admin&p=%2e%2e;x&&=", "/public/q?next=../../admin&p=%2e%2e;x&&="),
    ];
    for (sent, forwarded) in cases {
        let reply = send(world.gateway.addr, &format!("GET {sent}"), &[]).await;
        expect(&reply, 200, "", sent);
        assert_eq!(world.upstream.last().target, forwarded, "{sent}");
    }
}

#[tokio::test]
async fn a_host_route_takes_only_requests_for_that_host() {
    let other = Upstream::start().await;
    let world = World::start_with(|c| {
        c.routes = route(
            &c.upstream,
            "/h",
            "auth = \"none\"\nhost = \"a.example.com\"",
        ) + &route(&other.base(), "/h", "auth = \"none\"");
    })
    .await;
    let mut expected = (0, 0);
    #[rustfmt::skip]
    let hosts = [("a.example.com", true), ("A.Example.COM:8080", true), ("b.example.com", false)];
    for (host, to_a) in hosts {
        let reply = send(world.gateway.addr, "GET /h/x", &[("Host", host)]).await;
        expect(&reply, 200, "", host);
        expected = (
            expected.0 + usize::from(to_a),
            expected.1 + usize::from(!to_a),
        );
        let counts = (world.upstream.count(), other.count());
        assert_eq!(counts, expected, "{host} went to the wrong upstream");
    }
}

#[tokio::test]
async fn app_and_phone_restricted_routes_answer_403_without_forwarding() {
    let world = World::start_with(|c| {
        c.routes = route(&c.upstream, "/mine", &format!("apps = [\"{APPID}\"]"))
            + &route(&c.upstream, "/theirs", "apps = [\"wx00000000000000ff\"]")
            + &route(&c.upstream, "/phone", "auth = \"phone\"");
    })
    .await;
    let auth = bearer(&mint("olga_1", 600));
    #[rustfmt::skip]
    let cases = [
        ("/theirs/x", 403, "app_not_allowed"), ("/phone/x", 403, "phone_required"), ("/mine/x", 200, ""),
    ];
    for (target, status, error) in cases {
        let line = format!("GET {target}");
        let reply = send(world.gateway.addr, &line, &[("Authorization", &auth)]).await;
        expect(&reply, status, error, target);
    }
    let reply = send(world.gateway.addr, "GET /phone/x", &[]).await;
    expect(&reply, 401, "missing_token", "phone without a token");
    assert_eq!(targets(&world.upstream), ["/mine/x"]);
}

#[tokio::test]
async fn gateway_endpoints_take_precedence_over_a_catch_all_route() {
    let catch_all = |c: &mut support::ConfigBuilder| c.routes = route(&c.upstream, "/", "");
    let world = World::start_with(catch_all).await;
    let gw = world.gateway.addr;
    expect(
        &send(gw, "GET /.well-known/jwks.json", &[]).await,
        200,
        "",
        "jwks",
    );
    assert_eq!(world.upstream.count(), 0);
    expect(
        &send(gw, "GET /anything", &[]).await,
        401,
        "missing_token",
        "route",
    );
    assert_eq!(world.upstream.count(), 0);
}

#[tokio::test]
async fn upstream_failures_are_502_or_504_with_the_fixed_error_body() {
    let closed = support::closed_port().await;
    let world = World::start_with(|c| {
        c.routes = route(&format!("http://{closed}"), "/down", "auth = \"none\"")
            + &route(&c.upstream, "/api", "response_timeout = \"300ms\"");
    })
    .await;
    let auth = bearer(&mint("liam_1", 600));
    #[rustfmt::skip]
    let cases = [
        ("/down/x", 502, "upstream_unavailable"), ("/api/slow", 504, "upstream_timeout"),
        ("/api/reset", 502, "upstream_unavailable"),
    ];
    for (target, status, error) in cases {
        let started = Instant::now();
        let line = format!("GET {target}");
        let reply = send(world.gateway.addr, &line, &[("Authorization", &auth)]).await;
        expect(&reply, status, error, target);
        let took = started.elapsed();
        assert!(took < Duration::from_secs(2), "{target} took {took:?}");
        let body: serde_json::Value = serde_json::from_slice(&reply.body).expect("json");
        let keys: Vec<&String> = body.as_object().expect("object").keys().collect();
        assert_eq!(
            keys,
            ["error", "error_description"],
            "{target}: {}",
            reply.text()
        );
        let port = closed.port().to_string();
        assert!(!reply.text().contains(&port), "{}", reply.text());
    }
}

#[tokio::test]
async fn a_host_or_target_with_userinfo_is_refused() {
    let world = World::start().await;
    let host = [("Host", "admin.example.com@api.example.com")];
    let reply = send(world.gateway.addr, "GET /public/h", &host).await;
    expect(&reply, 400, "invalid_request", "Host userinfo");
    let reply = send(
        world.gateway.addr,
        "GET http://admin@wxgate.test/public/h",
        &[],
    )
    .await;
    expect(&reply, 400, "invalid_request", "absolute-form userinfo");
    assert_eq!(world.upstream.count(), 0);
}
