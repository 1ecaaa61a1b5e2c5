//! Identity and provenance on the way upstream: identity headers in every spelling and
//! header style (also over HTTP/2 and against `Connection` tricks), 401/400 answers and their
//! bearer challenge, where a token may come from and when it is forwarded, forwarded headers
//! for trusted and untrusted peers, request ids, hop-by-hop hygiene and HTTP/2 cookies.

use std::time::Duration;

use crate::support::{self, mint, World, APPID};
use crate::{assert_identity, bearer, expect, send, targets, verified, Headers};

/// Identity headers a client forges, in the spellings WSGI/PHP/Django fold together.
#[rustfmt::skip]
const SPOOFS: [(&str, &str); 14] = [
    ("X-OpenId", "evil-1"), ("x-openid", "evil-2"), ("X_OpenId", "evil-3"), ("X-OPENID", "evil-4"),
    ("x_OPENID", "evil-5"), ("X-UnionId", "evil-6"), ("X_UnionId", "evil-7"), ("X-AppId", "evil-8"),
    ("x_appid", "evil-9"), ("X-WX-OPENID", "evil-10"), ("X_WX_OPENID", "evil-11"),
    ("X-WX-APPID", "evil-12"), ("X-WX-UNIONID", "evil-13"), ("X-WX-SOURCE", "evil-14"),
];

/// A gateway that trusts no proxy, or (`trusted`) the default 127.0.0.1/32.
async fn world_trusting(trusted: bool) -> World {
    let extra = if trusted { "" } else { "trusted_proxies = []" };
    World::start_with(|c| c.server_extra = extra.into()).await
}

#[tokio::test]
async fn identity_headers_from_clients_never_reach_the_upstream() {
    let world = World::start().await;
    let auth = bearer(&mint("alice_1", 600));
    // (target, sends a valid token, the upstream gets identity)
    #[rustfmt::skip]
    let cases = [
        ("/public/p", false, false), ("/public/p", true, false), ("/optional/o", false, false),
        ("/optional/o", true, true), ("/api/a", true, true),
    ];
    for (target, with_token, identified) in cases {
        let token = [("Authorization", auth.as_str())];
        let headers = [&SPOOFS[..], if with_token { &token } else { &[] }].concat();
        let reply = send(world.gateway.addr, &format!("GET {target}"), &headers).await;
        let case = format!("{target} with token: {with_token}");
        expect(&reply, 200, "", &case);
        let seen = world.upstream.last();
        assert_eq!(seen.target, target);
        let expected = if identified {
            verified("alice_1")
        } else {
            Vec::new()
        };
        assert_identity(&seen, &expected, &case);
    }
}

#[tokio::test]
async fn a_login_token_injects_its_unionid_once_whatever_the_client_forges() {
    let world = World::start().await;
    let login = world
        .login(&format!("withunion{}", support::unique()))
        .await;
    let field = |k: &str| login[k].as_str().expect(k).to_string();
    let (openid, unionid) = (field("openid"), field("unionid"));
    let auth = bearer(&field("access_token"));
    let headers = [&SPOOFS[..], &[("Authorization", &*auth)]].concat();
    expect(
        &send(world.gateway.addr, "GET /api/u", &headers).await,
        200,
        "",
        "u",
    );
    let expected = [verified(&openid), vec![("X-UnionId", &*unionid)]].concat();
    assert_identity(
        &world.upstream.last(),
        &expected,
        "login token with unionid",
    );
}

#[tokio::test]
async fn cloudrun_style_injects_wx_headers_and_strips_every_other_spelling() {
    let style = "header_style = \"cloudrun\"";
    let world = World::start_with(|c| c.auth_extra = style.into()).await;
    let auth = bearer(&mint("carol_1", 600));
    let headers = [&SPOOFS[..], &[("Authorization", &*auth)]].concat();
    expect(
        &send(world.gateway.addr, "GET /api/c", &headers).await,
        200,
        "",
        "c",
    );
    let seen = world.upstream.last();
    let source = seen.one("X-WX-SOURCE").expect("X-WX-SOURCE").to_string();
    #[rustfmt::skip]
    let expected = [("X-WX-OPENID", "carol_1"), ("X-WX-APPID", APPID), ("X-WX-SOURCE", &source)];
    assert_identity(&seen, &expected, "cloudrun");
}

#[tokio::test]
async fn identity_headers_are_stripped_over_http2_too() {
    let world = World::start().await;
    let h2 = reqwest::Client::builder().http2_prior_knowledge().build();
    let response = h2
        .expect("client")
        .get(world.url("/api/h2"))
        .bearer_auth(mint("erin_1", 600))
        .header("x-openid", "evil-1")
        .header("x_openid", "evil-2")
        .header("x-wx-openid", "evil-3")
        .send()
        .await
        .expect("h2 request");
    assert_eq!(response.version(), reqwest::Version::HTTP_2);
    assert_eq!(response.status(), 200);
    assert_identity(&world.upstream.last(), &verified("erin_1"), "h2");
}

#[tokio::test]
async fn connection_tokens_cannot_remove_the_identity_the_gateway_adds() {
    let world = World::start().await;
    let auth = bearer(&mint("grace_1", 600));
    #[rustfmt::skip]
    let named = ["X-OpenId", "close, X-OpenId, X-AppId", "x_openid, X-WX-OPENID, Authorization"];
    for connection in named {
        #[rustfmt::skip]
        let headers = [("Connection", connection), ("X-OpenId", "evil-1"), ("Authorization", &auth)];
        let reply = send(world.gateway.addr, "GET /api/conn", &headers).await;
        expect(&reply, 200, "", connection);
        assert_identity(&world.upstream.last(), &verified("grace_1"), connection);
    }
}

#[tokio::test]
async fn connection_tokens_cannot_remove_the_gateways_forwarded_headers() {
    let named = "X-Forwarded-For, X-Real-IP, X-Request-Id, X-Forwarded-Proto";
    let headers = [("Connection", named), ("X-Forwarded-For", "6.6.6.6")];
    for trusted in [true, false] {
        let world = world_trusting(trusted).await;
        let reply = send(world.gateway.addr, "GET /public/f", &headers).await;
        expect(&reply, 200, "", "forwarded");
        let seen = world.upstream.last();
        let chain = seen.one("X-Forwarded-For").unwrap_or_default();
        assert!(chain.ends_with("127.0.0.1"), "{trusted}\n{}", seen.head);
        for name in ["X-Real-IP", "X-Request-Id", "X-Forwarded-Proto"] {
            assert!(seen.one(name).is_some(), "{trusted}: {name}\n{}", seen.head);
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
    let none: Headers = &[];
    // (request line, headers, status, error); `/optional` refuses a bad token like `/api`.
    #[rustfmt::skip]
    let cases = [
        ("GET /api/x", none, 401, "missing_token"),
        ("GET /api/x", &[("Authorization", "Bearer garbage")], 401, "invalid_token"),
        ("GET /api/x", &[("Authorization", &*expired)], 401, "token_expired"),
        ("GET /optional/x", &[("Authorization", "Bearer garbage")], 401, "invalid_token"),
        ("GET /optional/x", &[("Authorization", &*expired)], 401, "token_expired"),
        (&query, none, 401, "missing_token"),
        ("GET /api/x", &[("Cookie", &*cookie)], 401, "missing_token"),
        ("GET /api/x", &[("Authorization", &*auth), ("Authorization", &*auth)], 400, "invalid_request"),
    ];
    for (line, headers, status, error) in cases {
        let reply = send(world.gateway.addr, line, headers).await;
        let case = format!("{line} {headers:?}");
        expect(&reply, status, error, &case);
        let json: serde_json::Value = serde_json::from_slice(&reply.body).expect("json");
        assert!(json["error_description"].is_string(), "{case}");
        let www = reply.one("www-authenticate").unwrap_or_default();
        match error {
            "missing_token" => assert_eq!(www, "Bearer realm=\"wxgate\"", "{case}"),
            "invalid_token" | "token_expired" => {
                assert!(
                    www.starts_with("Bearer realm=\"wxgate\", "),
                    "{case}: {www}"
                );
                assert!(www.contains("error=\"invalid_token\""), "{case}: {www}");
                assert!(www.contains("error_description=\""), "{case}: {www}");
            }
            _ => {}
        }
    }
    assert_eq!(targets(&world.upstream), Vec::<String>::new());
}

#[tokio::test]
async fn the_bearer_scheme_is_case_insensitive() {
    let world = World::start().await;
    let token = mint("ivan_1", 600);
    for scheme in ["bearer", "BEARER", "Bearer"] {
        let headers = [("Authorization", &*format!("{scheme} {token}"))];
        let reply = send(world.gateway.addr, "GET /api/s", &headers).await;
        expect(&reply, 200, "", scheme);
        assert_identity(&world.upstream.last(), &verified("ivan_1"), scheme);
    }
}

#[tokio::test]
async fn a_bearer_token_is_stripped_whatever_blank_follows_the_scheme() {
    let world = World::start().await;
    let token = mint("tab_1", 600);
    for value in [format!("Bearer\t{token}"), format!("bearer \t {token}")] {
        for path in ["GET /api/tab", "GET /public/tab"] {
            let reply = send(world.gateway.addr, path, &[("Authorization", &value)]).await;
            expect(&reply, 200, "", path);
            let seen = world.upstream.last();
            assert!(
                seen.all("authorization").is_empty(),
                "{path} {value:?} forwarded the token:\n{}",
                seen.head
            );
        }
    }
}

#[tokio::test]
async fn the_gateway_token_is_stripped_unless_forward_token_is_set() {
    let token = mint("judy_1", 600);
    for (forward, expected) in [(false, vec![]), (true, vec![bearer(&token)])] {
        let config = format!("forward_token = {forward}");
        let world = World::start_with(|c| c.auth_extra = config).await;
        let response = world.get_with_token("/api/t", &token).await;
        assert_eq!(response.status(), 200);
        let seen = world.upstream.last();
        assert_eq!(
            seen.all("authorization"),
            expected,
            "forward_token = {forward}"
        );
    }
}

#[tokio::test]
async fn the_gateway_token_never_reaches_a_public_upstream() {
    let world = World::start().await;
    let token = mint("judy_2", 600);
    let response = world.get_with_token("/public/t", &token).await;
    assert_eq!(response.status(), 200);
    let seen = world.upstream.last();
    assert!(
        !seen.head.contains(&token),
        "the token went upstream:\n{}",
        seen.head
    );
    // An upstream's own Basic credentials still pass on a public route.
    let basic = world
        .http
        .get(world.url("/public/t"))
        .header("Authorization", "Basic dXNlcjpwYXNz")
        .send()
        .await
        .expect("request");
    assert_eq!(basic.status(), 200);
    assert_eq!(
        world.upstream.last().one("authorization"),
        Some("Basic dXNlcjpwYXNz")
    );
}

#[tokio::test]
async fn a_token_in_any_configured_header_works_but_two_credentials_are_refused() {
    let names = "token_headers = [\"Authorization\", \"X-Token\"]";
    let world = World::start_with(|c| c.auth_extra = names.into()).await;
    let token = mint("kim_1", 600);
    let reply = send(world.gateway.addr, "GET /api/t", &[("X-Token", &token)]).await;
    expect(&reply, 200, "", "X-Token");
    let seen = world.upstream.last();
    assert_identity(&seen, &verified("kim_1"), "X-Token");
    assert!(seen.all("x-token").is_empty(), "{}", seen.head);
    let both = [("X-Token", &*token), ("Authorization", &bearer(&token))];
    let reply = send(world.gateway.addr, "GET /api/t", &both).await;
    expect(&reply, 400, "invalid_request", "two credentials");
    assert_eq!(world.upstream.count(), 1);
}

#[tokio::test]
async fn forwarded_headers_are_replaced_for_untrusted_peers_and_extended_for_trusted_ones() {
    #[rustfmt::skip]
    let forged = [
        ("X-Forwarded-For", "6.6.6.6"), ("X-Real-IP", "6.6.6.6"), ("Forwarded", "for=6.6.6.6"),
        ("X-Forwarded-Proto", "https"), ("X-Forwarded-Host", "evil.example"),
    ];
    #[rustfmt::skip]
    let names = ["x-forwarded-for", "x-real-ip", "x-forwarded-proto", "x-forwarded-host", "forwarded"];
    #[rustfmt::skip]
    let cases = [
        (false, ["127.0.0.1", "127.0.0.1", "http", "wxgate.test", ""]),
        (true, ["6.6.6.6, 127.0.0.1", "6.6.6.6", "https", "evil.example", "for=6.6.6.6"]),
    ];
    for (trusted, expected) in cases {
        let world = world_trusting(trusted).await;
        let reply = send(world.gateway.addr, "GET /public/f", &forged).await;
        expect(&reply, 200, "", "forwarded");
        let seen = world.upstream.last();
        let got = names.map(|name| seen.all(name).join(" | "));
        assert_eq!(got, expected, "trusted: {trusted}\n{}", seen.head);
    }
}

#[tokio::test]
async fn underscore_spellings_of_forwarding_headers_never_reach_the_upstream() {
    #[rustfmt::skip]
    let forged = [
        ("X_Real_IP", "6.6.6.6"), ("X_Forwarded_For", "6.6.6.6"), ("X_Forwarded_Proto", "https"),
        ("X_Forwarded_Host", "evil.example"), ("X_Request_Id", "evil"),
    ];
    for trusted in [false, true] {
        let world = world_trusting(trusted).await;
        let reply = send(world.gateway.addr, "GET /public/u", &forged).await;
        expect(&reply, 200, "", "underscores");
        let seen = world.upstream.last();
        let underscored = seen.headers.iter().any(|(name, _)| name.contains('_'));
        assert!(
            !underscored && !seen.head.contains("6.6.6.6") && !seen.head.contains("evil"),
            "trusted: {trusted}\n{}",
            seen.head
        );
        assert_eq!(seen.all("x-real-ip"), vec!["127.0.0.1"]);
    }
}

#[tokio::test]
async fn request_ids_are_kept_when_plain_and_otherwise_replaced_on_both_sides() {
    let world = World::start().await;
    let long = "a".repeat(200);
    let plain = |id: &str| {
        id.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b))
    };
    let mut generated = Vec::new();
    for sent in [
        Some("abc-123"),
        Some("A.b_9"),
        Some("bad id!"),
        Some(&*long),
        None,
    ] {
        let headers: Vec<_> = sent.map(|id| ("X-Request-Id", id)).into_iter().collect();
        let reply = send(world.gateway.addr, "GET /public/rid", &headers).await;
        let returned = reply.one("x-request-id").expect("answered").to_string();
        let seen = world.upstream.last();
        let forwarded = seen.one("x-request-id");
        assert_eq!(forwarded, Some(&*returned), "{sent:?}\n{}", seen.head);
        if sent.is_some_and(|id| id.len() <= 128 && plain(id)) {
            assert_eq!(Some(&*returned), sent);
        } else {
            let fresh = Some(&*returned) != sent && plain(&returned) && returned.len() <= 128;
            assert!(fresh, "{sent:?} became {returned}");
            generated.push(returned);
        }
    }
    generated.dedup();
    assert_eq!(generated.len(), 3, "generated ids repeat: {generated:?}");
    let reply = send(
        world.gateway.addr,
        "GET /nothing",
        &[("X-Request-Id", "e-1")],
    )
    .await;
    expect(&reply, 404, "no_route", "error answers carry the id too");
    assert_eq!(reply.one("x-request-id"), Some("e-1"));
}

#[tokio::test]
async fn hop_by_hop_headers_are_removed_in_both_directions() {
    let world = World::start().await;
    #[rustfmt::skip]
    let headers = [
        ("Connection", "keep-alive, X-Hop"), ("X-Hop", "1"), ("Keep-Alive", "timeout=9"),
        ("TE", "trailers"), ("Trailer", "X-Later"), ("Upgrade", "h2c"), ("Proxy-Connection", "close"),
        ("Proxy-Authorization", "Basic Zm9vOmJhcg=="), ("X-End-To-End", "kept"),
    ];
    let reply = send(world.gateway.addr, "GET /public/hop", &headers).await;
    expect(&reply, 200, "", "hop");
    let seen = world.upstream.last();
    #[rustfmt::skip]
    let hop = ["x-hop", "keep-alive", "te", "trailer", "upgrade", "proxy-authorization", "proxy-connection"];
    for name in hop {
        assert!(
            seen.all(name).is_empty(),
            "{name} went upstream\n{}",
            seen.head
        );
    }
    let connection = seen.all("connection").join(",").to_ascii_lowercase();
    let named = connection.contains("x-hop") || connection.contains("upgrade");
    assert!(!named, "{}", seen.head);
    assert_eq!(seen.all("x-end-to-end"), vec!["kept"]);
    // The upstream answers with `connection: keep-alive, x-upstream-private` and friends.
    assert_eq!(reply.one("x-upstream"), Some("recorded"), "{reply:?}");
    let junk = [reply.one("x-upstream-private"), reply.one("keep-alive")];
    assert_eq!(junk, [None, None], "{reply:?}");
    let connection = reply.one("connection").unwrap_or_default();
    assert!(!connection.contains("private"), "{reply:?}");
}

#[tokio::test]
async fn every_proxy_header_is_hop_by_hop() {
    let world = World::start().await;
    // The first spelling is what the header fuzz target found passing.
    #[rustfmt::skip]
    let headers = [
        ("Proxy-Auohrtization", "Basic x"), ("Proxy-Authentication-Info", "nextnonce=1"),
        ("PROXY-Anything", "1"), ("X-End-To-End", "kept"),
    ];
    let reply = send(world.gateway.addr, "GET /public/proxy", &headers).await;
    expect(&reply, 200, "", "proxy-*");
    let seen = world.upstream.last();
    let proxied: Vec<&(String, String)> = seen
        .headers
        .iter()
        .filter(|(n, _)| n.to_ascii_lowercase().starts_with("proxy-"))
        .collect();
    assert!(proxied.is_empty(), "{}", seen.head);
    assert_eq!(seen.all("x-end-to-end"), vec!["kept"]);
}

#[tokio::test]
async fn connection_names_count_past_a_non_ascii_byte_in_its_value() {
    let world = World::start().await;
    // As the header fuzz target found it: one obs-text run in the value hid `X-Custom`.
    let request = b"GET /public/conn HTTP/1.1\r\nHost: wxgate.test\r\n\
        Connection: k\xfa\xff\xff\xffalive, X-Custom\r\nX-Custom: 1\r\n\
        Connection: close\r\n\r\n";
    let text = support::raw::collect(world.gateway.addr, request, Duration::from_secs(10)).await;
    let replies = support::raw::replies(&text);
    assert_eq!(replies.len(), 1, "{text}");
    expect(&replies[0], 200, "", "obs-text in Connection");
    let seen = world.upstream.last();
    assert!(seen.all("x-custom").is_empty(), "{}", seen.head);
}

#[tokio::test]
async fn http2_cookie_fields_are_joined_into_one_cookie_line() {
    let world = World::start().await;
    let h2 = reqwest::Client::builder()
        .http2_prior_knowledge()
        .build()
        .expect("client");
    let response = h2
        .get(world.url("/public/cookies"))
        .header("cookie", "a=1")
        .header("cookie", "b=2")
        .header("cookie", "c=3")
        .send()
        .await
        .expect("h2 request");
    assert_eq!(response.version(), reqwest::Version::HTTP_2);
    assert_eq!(response.status(), 200);
    let seen = world.upstream.last();
    assert_eq!(seen.all("cookie"), vec!["a=1; b=2; c=3"], "{}", seen.head);
}
