//! Proxying: identity headers in every spelling and mode, `Connection` tricks, 401/400 answers,
//! forwarded headers, request ids, hop-by-hop hygiene, routing, upstream failures, bodies,
//! limits, and per-request identity on a kept-alive connection.

mod support;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use support::{mint, Recorded, Upstream, World, APPID};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Every identity header wxgate owns, in either header style.
const IDENTITY: [&str; 7] = [
    "X-OpenId", "X-UnionId", "X-AppId", "X-WX-OPENID", "X-WX-APPID", "X-WX-UNIONID", "X-WX-SOURCE",
];

/// Identity headers a client forges, in the spellings WSGI/PHP/Django fold together.
const SPOOFS: [(&str, &str); 14] = [
    ("X-OpenId", "evil-1"),
    ("x-openid", "evil-2"),
    ("X_OpenId", "evil-3"),
    ("X-OPENID", "evil-4"),
    ("x_OPENID", "evil-5"),
    ("X-UnionId", "evil-6"),
    ("X_UnionId", "evil-7"),
    ("X-AppId", "evil-8"),
    ("x_appid", "evil-9"),
    ("X-WX-OPENID", "evil-10"),
    ("X_WX_OPENID", "evil-11"),
    ("X-WX-APPID", "evil-12"),
    ("X-WX-UNIONID", "evil-13"),
    ("X-WX-SOURCE", "evil-14"),
];

/// One response as read off a raw connection.
#[derive(Debug)]
struct Reply {
    status: u16,
    headers: Vec<(String, String)>,
    body: String,
}

impl Reply {
    fn header(&self, name: &str) -> Option<&str> {
        let mut all = self.headers.iter().filter(|(k, _)| k.eq_ignore_ascii_case(name));
        let first = all.next().map(|(_, v)| v.as_str());
        assert!(all.next().is_none(), "{name} answered twice: {self:?}");
        first
    }

    fn error(&self) -> String {
        let json: serde_json::Value = serde_json::from_str(&self.body).unwrap_or_default();
        json["error"].as_str().unwrap_or_default().to_string()
    }
}

/// A raw connection, so that tests send exactly the header spellings they mean.
struct Raw {
    stream: TcpStream,
    buf: Vec<u8>,
}

impl Raw {
    async fn connect(addr: SocketAddr) -> Self {
        let stream = TcpStream::connect(addr).await.expect("connect");
        Self { stream, buf: Vec::new() }
    }

    async fn send(&mut self, bytes: &[u8]) {
        // A refused request may be answered and closed before all of it is written.
        let _ = self.stream.write_all(bytes).await;
    }

    async fn fill(&mut self) -> bool {
        let mut chunk = [0u8; 16384];
        let read = tokio::time::timeout(Duration::from_secs(10), self.stream.read(&mut chunk));
        match read.await {
            Ok(Ok(n)) if n > 0 => {
                self.buf.extend_from_slice(&chunk[..n]);
                true
            }
            _ => false,
        }
    }

    /// The next response (framed by `Content-Length`), or `None` if the connection ended first.
    async fn reply(&mut self) -> Option<Reply> {
        let end = loop {
            if let Some(i) = self.buf.windows(4).position(|w| w == b"\r\n\r\n") {
                break i;
            }
            if !self.fill().await {
                return None;
            }
        };
        let head = String::from_utf8_lossy(&self.buf[..end]).into_owned();
        self.buf.drain(..end + 4);
        let mut lines = head.split("\r\n");
        let status = lines.next()?.split(' ').nth(1)?.parse().ok()?;
        let headers = lines
            .filter_map(|l| l.split_once(':'))
            .map(|(k, v)| (k.to_string(), v.trim().to_string()))
            .collect();
        let mut reply = Reply { status, headers, body: String::new() };
        assert!(reply.header("transfer-encoding").is_none(), "chunked answer: {head}");
        let len: usize = reply.header("content-length").map_or(0, |v| v.parse().expect("length"));
        while self.buf.len() < len {
            if !self.fill().await {
                return None;
            }
        }
        reply.body = String::from_utf8_lossy(&self.buf.drain(..len).collect::<Vec<_>>()).into();
        Some(reply)
    }
}

/// A request head with `Host`, the given headers in order, and the blank line.
fn head(line: &str, headers: &[(&str, &str)]) -> String {
    let mut text = format!("{line} HTTP/1.1\r\nHost: wxgate.test\r\n");
    for (name, value) in headers {
        text.push_str(&format!("{name}: {value}\r\n"));
    }
    text + "\r\n"
}

/// Sends `request` on a fresh connection and returns the first response.
async fn send(addr: SocketAddr, request: &str) -> Reply {
    let mut raw = Raw::connect(addr).await;
    raw.send(request.as_bytes()).await;
    raw.reply().await.unwrap_or_else(|| panic!("no answer to {request:?}"))
}

fn bearer(token: &str) -> String {
    format!("Bearer {token}")
}

fn verified(sub: &str) -> Vec<(&str, &str)> {
    vec![("X-OpenId", sub), ("X-AppId", APPID)]
}

/// The upstream saw exactly `expected` of the identity headers, once each, and nothing forged.
fn assert_identity(seen: &Recorded, expected: &[(&str, &str)], case: &str) {
    for name in IDENTITY {
        let want: Vec<&str> = expected.iter().filter(|(n, _)| *n == name).map(|(_, v)| *v).collect();
        assert_eq!(seen.spellings(name).len(), want.len(), "{case}: {name}\n{}", seen.head);
        assert_eq!(seen.all(name), want, "{case}: {name}\n{}", seen.head);
    }
    assert!(!seen.head.contains("evil"), "{case}: forged value upstream\n{}", seen.head);
}

/// Sends a request through `/public` and waits for it, so that anything sent before it has landed.
async fn barrier(world: &World) {
    let n = world.upstream.count();
    let response = world.http.get(world.url("/public/barrier")).send().await.expect("barrier");
    assert_eq!(response.status(), 200);
    world.upstream.wait_for(n + 1).await;
}

#[tokio::test]
async fn identity_headers_from_clients_never_reach_the_upstream() {
    let world = World::start().await;
    let auth = bearer(&mint("alice_1", 600));
    // (target, sends a valid token, the upstream gets identity)
    let cases = [
        ("/public/p", false, false),
        ("/public/p", true, false),
        ("/optional/o", false, false),
        ("/optional/o", true, true),
        ("/api/a", true, true),
    ];
    for (target, with_token, identified) in cases {
        let mut headers = SPOOFS.to_vec();
        if with_token {
            headers.push(("Authorization", &auth));
        }
        let reply = send(world.gateway.addr, &head(&format!("GET {target}"), &headers)).await;
        let case = format!("{target} with token: {with_token}");
        assert_eq!(reply.status, 200, "{case}: {reply:?}");
        let seen = world.upstream.last();
        assert_eq!(seen.target, target);
        let expected = if identified { verified("alice_1") } else { vec![] };
        assert_identity(&seen, &expected, &case);
    }
}

#[tokio::test]
async fn a_login_token_injects_its_unionid_once_whatever_the_client_forges() {
    let world = World::start().await;
    let login = world.login(&format!("withunion{}", support::unique())).await;
    let (openid, unionid) = (login["openid"].as_str().unwrap(), login["unionid"].as_str().unwrap());
    let auth = bearer(login["access_token"].as_str().unwrap());
    let mut headers = SPOOFS.to_vec();
    headers.push(("Authorization", &auth));
    assert_eq!(send(world.gateway.addr, &head("GET /api/u", &headers)).await.status, 200);
    let mut expected = verified(openid);
    expected.push(("X-UnionId", unionid));
    assert_identity(&world.upstream.last(), &expected, "login token with unionid");
}

#[tokio::test]
async fn cloudrun_style_injects_wx_headers_and_strips_every_other_spelling() {
    let world = World::start_with(|c| c.auth_extra = "header_style = \"cloudrun\"".into()).await;
    let auth = bearer(&mint("carol_1", 600));
    let mut headers = SPOOFS.to_vec();
    headers.push(("Authorization", &auth));
    assert_eq!(send(world.gateway.addr, &head("GET /api/c", &headers)).await.status, 200);
    let seen = world.upstream.last();
    let source = seen.one("X-WX-SOURCE").expect("X-WX-SOURCE").to_string();
    let expected = [("X-WX-OPENID", "carol_1"), ("X-WX-APPID", APPID), ("X-WX-SOURCE", &source)];
    assert_identity(&seen, &expected, "cloudrun");
}

#[tokio::test]
async fn claim_headers_are_identity_headers_that_clients_can_never_send() {
    let world = World::start_with(|c| {
        c.auth_extra = "[auth.claim_headers]\nuid = \"X-User-Id\"".into();
    })
    .await;
    let auth = bearer(&mint("dave_1", 600));
    let forged = [("X-User-Id", "evil-1"), ("x_user_id", "evil-2"), ("Authorization", &auth)];
    for target in ["/public/c", "/api/c"] {
        assert_eq!(send(world.gateway.addr, &head(&format!("GET {target}"), &forged)).await.status, 200);
        let seen = world.upstream.last();
        assert!(seen.spellings("X-User-Id").is_empty(), "{target}\n{}", seen.head);
    }
}

#[tokio::test]
async fn identity_headers_are_stripped_over_http2_too() {
    let world = World::start().await;
    let h2 = reqwest::Client::builder().http2_prior_knowledge().build().expect("client");
    let response = h2
        .get(world.url("/api/h2"))
        .bearer_auth(mint("erin_1", 600))
        .header("x-openid", "evil-1")
        .header("x_openid", "evil-2")
        .header("x-wx-openid", "evil-3")
        .send()
        .await
        .expect("h2 request");
    assert_eq!((response.version(), response.status().as_u16()), (reqwest::Version::HTTP_2, 200));
    assert_identity(&world.upstream.last(), &verified("erin_1"), "h2");
}

#[tokio::test]
async fn an_optional_route_refuses_a_bad_token_instead_of_going_anonymous() {
    let world = World::start().await;
    for (token, error) in [("garbage", "invalid_token"), (&*mint("frank_1", -120), "token_expired")] {
        let reply = send(world.gateway.addr, &head("GET /optional/o", &[("Authorization", &bearer(token))])).await;
        assert_eq!((reply.status, reply.error()), (401, error.to_string()), "{reply:?}");
    }
    assert_eq!(world.upstream.count(), 0);
}

#[tokio::test]
async fn connection_tokens_cannot_remove_the_identity_the_gateway_adds() {
    let world = World::start().await;
    let auth = bearer(&mint("grace_1", 600));
    for connection in ["X-OpenId", "close, X-OpenId, X-AppId", "x_openid, X-WX-OPENID, Authorization"] {
        let headers = [("Connection", connection), ("X-OpenId", "evil-1"), ("Authorization", &auth)];
        let reply = send(world.gateway.addr, &head("GET /api/conn", &headers)).await;
        assert_eq!(reply.status, 200, "Connection: {connection}: {reply:?}");
        assert_identity(&world.upstream.last(), &verified("grace_1"), connection);
    }
}

#[tokio::test]
async fn connection_tokens_cannot_remove_the_gateways_forwarded_headers() {
    for trusted in [true, false] {
        let world = World::start_with(|c| {
            if !trusted {
                c.server_extra = "trusted_proxies = []".into();
            }
        })
        .await;
        let headers = [
            ("Connection", "X-Forwarded-For, X-Real-IP, X-Request-Id, X-Forwarded-Proto"),
            ("X-Forwarded-For", "6.6.6.6"),
        ];
        assert_eq!(send(world.gateway.addr, &head("GET /public/f", &headers)).await.status, 200);
        let seen = world.upstream.last();
        let chain = seen.one("X-Forwarded-For").unwrap_or_default();
        assert!(chain.ends_with("127.0.0.1"), "trusted={trusted}\n{}", seen.head);
        for name in ["X-Real-IP", "X-Request-Id", "X-Forwarded-Proto"] {
            assert!(seen.one(name).is_some(), "trusted={trusted}: {name}\n{}", seen.head);
        }
    }
}

#[tokio::test]
async fn requests_without_a_valid_token_get_a_bearer_challenge_and_never_reach_the_upstream() {
    let world = World::start().await;
    let valid = mint("heidi_1", 600);
    let (expired, auth) = (bearer(&mint("heidi_1", -120)), bearer(&valid));
    let query = format!("GET /api/q?access_token={valid}");
    let cookie = format!("access_token={valid}");
    // (request line, headers, status, error, challenge carries error="invalid_token")
    let cases: Vec<(&str, Vec<(&str, &str)>, u16, &str, Option<bool>)> = vec![
        ("GET /api/x", vec![], 401, "missing_token", Some(false)),
        ("GET /api/x", vec![("Authorization", "Bearer garbage")], 401, "invalid_token", Some(true)),
        ("GET /api/x", vec![("Authorization", &expired)], 401, "token_expired", Some(true)),
        (&query, vec![], 401, "missing_token", Some(false)),
        ("GET /api/x", vec![("Cookie", &cookie)], 401, "missing_token", Some(false)),
        ("GET /api/x", vec![("Authorization", &auth), ("Authorization", &auth)], 400, "invalid_request", None),
    ];
    for (line, headers, status, error, challenge) in cases {
        let reply = send(world.gateway.addr, &head(line, &headers)).await;
        let case = format!("{line} {headers:?}");
        assert_eq!((reply.status, reply.error()), (status, error.to_string()), "{case}: {reply:?}");
        let json: serde_json::Value = serde_json::from_str(&reply.body).expect("json");
        assert!(json["error_description"].is_string(), "{case}");
        let www = reply.header("www-authenticate");
        match challenge {
            Some(false) => assert_eq!(www, Some("Bearer realm=\"wxgate\""), "{case}"),
            Some(true) => {
                let www = www.unwrap_or_default();
                assert!(www.starts_with("Bearer realm=\"wxgate\""), "{case}: {www}");
                assert!(www.contains("error=\"invalid_token\""), "{case}: {www}");
                assert!(www.contains("error_description="), "{case}: {www}");
            }
            None => {}
        }
    }
    assert_eq!(world.upstream.count(), 0, "{:?}", world.upstream.requests());
}

#[tokio::test]
async fn the_bearer_scheme_is_case_insensitive() {
    let world = World::start().await;
    let token = mint("ivan_1", 600);
    for scheme in ["bearer", "BEARER", "Bearer"] {
        let headers = [("Authorization", &*format!("{scheme} {token}"))];
        assert_eq!(send(world.gateway.addr, &head("GET /api/s", &headers)).await.status, 200, "{scheme}");
        assert_identity(&world.upstream.last(), &verified("ivan_1"), scheme);
    }
}

#[tokio::test]
async fn the_gateway_token_is_stripped_unless_forward_token_is_set() {
    let world = World::start().await;
    let token = mint("judy_1", 600);
    assert_eq!(world.get_with_token("/api/t", &token).await.status(), 200);
    assert_eq!(world.upstream.last().all("authorization"), Vec::<&str>::new());

    let world = World::start_with(|c| c.auth_extra = "forward_token = true".into()).await;
    assert_eq!(world.get_with_token("/api/t", &token).await.status(), 200);
    assert_eq!(world.upstream.last().all("authorization"), vec![bearer(&token)]);
}

#[tokio::test]
#[ignore = "BUG: on an auth = \"none\" route the client's gateway token is forwarded upstream (I7)"]
async fn the_gateway_token_never_reaches_a_public_upstream() {
    let world = World::start().await;
    let token = mint("judy_2", 600);
    assert_eq!(world.get_with_token("/public/t", &token).await.status(), 200);
    let seen = world.upstream.last();
    assert!(!seen.head.contains(&token), "the access token went upstream:\n{}", seen.head);
}

#[tokio::test]
async fn a_token_in_any_configured_header_works_but_two_credentials_are_refused() {
    let world = World::start_with(|c| {
        c.auth_extra = "token_headers = [\"Authorization\", \"X-Token\"]".into();
    })
    .await;
    let token = mint("kim_1", 600);
    let reply = send(world.gateway.addr, &head("GET /api/t", &[("X-Token", &token)])).await;
    assert_eq!(reply.status, 200, "{reply:?}");
    let seen = world.upstream.last();
    assert_identity(&seen, &verified("kim_1"), "X-Token");
    assert!(seen.all("x-token").is_empty(), "{}", seen.head);
    let both = [("X-Token", &*token), ("Authorization", &bearer(&token))];
    let reply = send(world.gateway.addr, &head("GET /api/t", &both)).await;
    assert_eq!((reply.status, reply.error()), (400, "invalid_request".into()));
    assert_eq!(world.upstream.count(), 1);
}

const FORGED_FORWARDING: [(&str, &str); 5] = [
    ("X-Forwarded-For", "6.6.6.6"),
    ("X-Real-IP", "6.6.6.6"),
    ("Forwarded", "for=6.6.6.6;proto=https"),
    ("X-Forwarded-Proto", "https"),
    ("X-Forwarded-Host", "evil.example"),
];

#[tokio::test]
async fn an_untrusted_peer_cannot_choose_its_forwarded_headers() {
    let world = World::start_with(|c| c.server_extra = "trusted_proxies = []".into()).await;
    assert_eq!(send(world.gateway.addr, &head("GET /public/f", &FORGED_FORWARDING)).await.status, 200);
    let seen = world.upstream.last();
    assert_eq!(seen.all("x-forwarded-for"), vec!["127.0.0.1"], "{}", seen.head);
    assert_eq!(seen.all("x-real-ip"), vec!["127.0.0.1"], "{}", seen.head);
    assert!(seen.all("forwarded").is_empty(), "{}", seen.head);
    assert_eq!(seen.all("x-forwarded-proto"), vec!["http"], "{}", seen.head);
    assert_eq!(seen.all("x-forwarded-host"), vec!["wxgate.test"], "{}", seen.head);
}

#[tokio::test]
async fn a_trusted_proxys_chain_is_kept_and_its_address_appended() {
    let world = World::start().await; // trusts 127.0.0.1/32 by default
    assert_eq!(send(world.gateway.addr, &head("GET /public/f", &FORGED_FORWARDING)).await.status, 200);
    let seen = world.upstream.last();
    assert_eq!(seen.all("x-forwarded-for"), vec!["6.6.6.6, 127.0.0.1"], "{}", seen.head);
    assert_eq!(seen.all("x-real-ip"), vec!["6.6.6.6"], "{}", seen.head);
    assert_eq!(seen.all("x-forwarded-proto"), vec!["https"], "{}", seen.head);
    assert_eq!(seen.all("x-forwarded-host"), vec!["evil.example"], "{}", seen.head);
}

#[tokio::test]
async fn request_ids_are_kept_when_plain_and_otherwise_replaced_on_both_sides() {
    let world = World::start().await;
    let long = "a".repeat(200);
    let plain = |id: &str| id.bytes().all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b));
    let mut generated = Vec::new();
    for sent in [Some("abc-123"), Some("A.b_9"), Some("bad id!"), Some(&*long), None] {
        let headers: Vec<_> = sent.map(|id| ("X-Request-Id", id)).into_iter().collect();
        let reply = send(world.gateway.addr, &head("GET /public/rid", &headers)).await;
        let returned = reply.header("x-request-id").expect("X-Request-Id answered").to_string();
        let seen = world.upstream.last();
        assert_eq!(seen.one("x-request-id"), Some(&*returned), "{sent:?}\n{}", seen.head);
        if sent.is_some_and(|id| id.len() <= 128 && plain(id)) {
            assert_eq!(Some(&*returned), sent);
        } else {
            assert!(Some(&*returned) != sent && plain(&returned) && returned.len() <= 128, "{returned}");
            generated.push(returned);
        }
    }
    generated.dedup();
    assert_eq!(generated.len(), 3, "generated ids repeat: {generated:?}");
    let reply = send(world.gateway.addr, &head("GET /nothing", &[("X-Request-Id", "err-1")])).await;
    assert_eq!((reply.status, reply.header("x-request-id")), (404, Some("err-1")));
}

#[tokio::test]
async fn hop_by_hop_headers_are_removed_in_both_directions() {
    let world = World::start().await;
    let headers = [
        ("Connection", "keep-alive, X-Hop-Custom"),
        ("X-Hop-Custom", "1"),
        ("Keep-Alive", "timeout=99"),
        ("TE", "trailers"),
        ("Trailer", "X-Later"),
        ("Upgrade", "h2c"),
        ("Proxy-Authorization", "Basic Zm9vOmJhcg=="),
        ("Proxy-Connection", "keep-alive"),
        ("X-End-To-End", "kept"),
    ];
    let reply = send(world.gateway.addr, &head("GET /public/hop", &headers)).await;
    assert_eq!(reply.status, 200);
    let seen = world.upstream.last();
    for name in ["x-hop-custom", "keep-alive", "te", "trailer", "upgrade", "proxy-authorization", "proxy-connection"] {
        assert!(seen.all(name).is_empty(), "{name} went upstream\n{}", seen.head);
    }
    let connection = seen.all("connection").join(",").to_ascii_lowercase();
    assert!(!connection.contains("x-hop") && !connection.contains("upgrade"), "{}", seen.head);
    assert_eq!(seen.all("x-end-to-end"), vec!["kept"]);
    // The upstream answers with `connection: keep-alive, x-upstream-private` and friends.
    assert_eq!(reply.header("x-upstream"), Some("recorded"), "{reply:?}");
    assert_eq!((reply.header("x-upstream-private"), reply.header("keep-alive")), (None, None), "{reply:?}");
    let connection = reply.header("connection").unwrap_or_default();
    assert!(!connection.contains("x-upstream-private"), "{reply:?}");
}

#[tokio::test]
async fn unrouted_paths_are_404_with_a_json_body() {
    let world = World::start().await;
    for target in ["/nothing", "/apix", "/publicx/y", "/"] {
        let response = world.http.get(world.url(target)).send().await.expect("request");
        assert_eq!(response.status(), 404, "{target}");
        assert_eq!(response.headers()["content-type"], "application/json", "{target}");
        let body: serde_json::Value = response.json().await.expect("json");
        assert_eq!(body["error"], "no_route", "{target}");
        assert!(body["error_description"].is_string());
    }
    assert_eq!(world.upstream.count(), 0);
}

/// A `[[routes]]` entry to the recording upstream with extra `key = value` lines.
fn route(upstream: &str, prefix: &str, extra: &str) -> String {
    format!("[[routes]]\nprefix = \"{prefix}\"\nupstream = \"{upstream}\"\n{extra}\n")
}

#[tokio::test]
async fn the_longest_prefix_wins_on_segment_boundaries() {
    let world = World::start_with(|c| {
        c.routes = route(&c.upstream, "/api", "auth = \"required\"")
            + &route(&c.upstream, "/api/open", "auth = \"none\"");
    })
    .await;
    for (target, status) in [("/api/open", 200), ("/api/open/x", 200), ("/api/openx", 401), ("/api", 401)] {
        let response = world.http.get(world.url(target)).send().await.expect("request");
        assert_eq!(response.status(), status, "{target}");
    }
    let targets: Vec<String> = world.upstream.requests().into_iter().map(|r| r.target).collect();
    assert_eq!(targets, ["/api/open", "/api/open/x"]);
}

#[tokio::test]
async fn a_method_filter_answers_405_with_allow() {
    let world = World::start_with(|c| {
        c.routes = route(&c.upstream, "/ro", "auth = \"none\"\nmethods = [\"GET\"]");
    })
    .await;
    let response = world.http.post(world.url("/ro/x")).body("x").send().await.expect("request");
    assert_eq!(response.status(), 405);
    assert_eq!(response.headers()["allow"], "GET");
    let body: serde_json::Value = response.json().await.expect("json");
    assert_eq!(body["error"], "method_not_allowed");
    assert_eq!(world.upstream.count(), 0);
    assert_eq!(world.http.get(world.url("/ro/x")).send().await.expect("get").status(), 200);
    assert_eq!(world.upstream.last().method, "GET");
}

#[tokio::test]
async fn strip_prefix_and_the_query_string_are_forwarded_as_documented() {
    let world = World::start_with(|c| {
        c.routes = route(&c.upstream, "/svc", "auth = \"none\"\nstrip_prefix = true")
            + &route(&c.upstream, "/public", "auth = \"none\"");
    })
    .await;
    let cases = [
        ("/svc/users/1?x=1", "/users/1?x=1"),
        ("/svc", "/"),
        ("/svc?x=1", "/?x=1"),
        ("/public/q?a=1&b=%2F", "/public/q?a=1&b=%2F"),
        ("/public/q?next=../../admin&p=%2e%2e;x&&=", "/public/q?next=../../admin&p=%2e%2e;x&&="),
    ];
    for (sent, forwarded) in cases {
        let reply = send(world.gateway.addr, &head(&format!("GET {sent}"), &[])).await;
        assert_eq!(reply.status, 200, "{sent}: {reply:?}");
        assert_eq!(world.upstream.last().target, forwarded, "{sent}");
    }
}

#[tokio::test]
async fn a_host_route_takes_only_requests_for_that_host() {
    let other = Upstream::start().await;
    let world = World::start_with(|c| {
        c.routes = route(&c.upstream, "/h", "auth = \"none\"\nhost = \"a.example.com\"")
            + &route(&other.base(), "/h", "auth = \"none\"");
    })
    .await;
    let mut expected = (0, 0);
    for (host, to_a) in [("a.example.com", true), ("A.Example.COM:8080", true), ("b.example.com", false)] {
        let request = format!("GET /h/x HTTP/1.1\r\nHost: {host}\r\n\r\n");
        assert_eq!(send(world.gateway.addr, &request).await.status, 200, "{host}");
        if to_a {
            expected.0 += 1;
        } else {
            expected.1 += 1;
        }
        assert_eq!((world.upstream.count(), other.count()), expected, "{host}");
    }
}

#[tokio::test]
async fn gateway_endpoints_take_precedence_over_a_catch_all_route() {
    let world = World::start_with(|c| c.routes = route(&c.upstream, "/", "auth = \"none\"")).await;
    let response = world.http.get(world.url("/.well-known/jwks.json")).send().await.expect("jwks");
    assert_eq!(response.status(), 200);
    assert_eq!(world.upstream.count(), 0);
    assert_eq!(world.http.get(world.url("/anything")).send().await.expect("any").status(), 200);
    assert_eq!(world.upstream.last().target, "/anything");
}
