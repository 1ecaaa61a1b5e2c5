//! Path confusion on raw sockets: every ambiguous form SPEC refuses is 400 `invalid_path`
//! before routing, clean paths pass untouched, escapes of unreserved characters route and
//! forward in one canonical form, fragments never travel, and the query is never path-checked.
// Test code may panic on what it set up, and its helpers are `pub` for the test files.
#![allow(clippy::unwrap_used, clippy::expect_used, unreachable_pub)]

mod support;

use std::time::Duration;

use support::{mint, Recorded, World};

/// What one request produced: status, raw response text, and what the upstream got from it.
struct Outcome {
    status: u16,
    text: String,
    forwarded: Option<Recorded>,
}

/// Sends `target` byte for byte (with a valid token when given) and reports the outcome.
async fn get(world: &World, target: &[u8], token: Option<&str>) -> Outcome {
    let before = world.upstream.count();
    let mut request = b"GET ".to_vec();
    request.extend_from_slice(target);
    request.extend_from_slice(b" HTTP/1.1\r\nHost: wxgate.test\r\nConnection: close\r\n");
    if let Some(token) = token {
        request.extend_from_slice(format!("Authorization: Bearer {token}\r\n").as_bytes());
    }
    request.extend_from_slice(b"\r\n");
    let text = support::raw::collect(world.gateway.addr, &request, Duration::from_secs(5)).await;
    // The upstream records a request before it answers, so by now it is there or never was.
    let seen = world.upstream.requests();
    Outcome {
        status: support::status_of(&text),
        text,
        forwarded: seen.get(before..).and_then(|new| new.first().cloned()),
    }
}

fn report(failures: Vec<String>) {
    assert!(
        failures.is_empty(),
        "{} rows failed:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

#[tokio::test]
async fn ambiguous_paths_are_refused_before_routing() {
    let world = World::start().await;
    let token = mint("paths_1", 600);
    let rows: &[&[u8]] = &[
        // dot segments, raw and encoded
        b"/api/../admin",
        b"/api/./x",
        b"/api/x/..",
        b"/api/%2e%2e/x",
        b"/api/%2E./x",
        b"/api/.%2e/x",
        b"/api/%2e",
        b"/public/%2e%2e/api/x",
        // empty segments
        b"/api//x",
        b"//api/x",
        b"/api/x//",
        // matrix parameters
        b"/public/..;/api/x",
        b"/api;x",
        b"/api/x;jsessionid=1",
        // encoded separators and backslashes
        b"/api/a%2fb",
        b"/api/a%2Fb",
        b"/api/a%5cb",
        b"/api/a\\b",
        b"/public\\..\\api/x",
        // double encoding
        b"/api/%252e%252e/",
        b"/api/%252f",
        b"/api/%25%32%65",
        // NUL and control bytes
        b"/api/%00",
        b"/api/a%00.json",
        b"/api/%0d%0aX-OpenId:%20evil",
        b"/api/%7f",
        // invalid percent-encoding
        b"/api/%zz",
        b"/api/%",
        b"/api/a%2",
        // invalid or overlong UTF-8
        b"/api/%C0%AE%C0%AE/",
        b"/api/%E0%80%AE",
        b"/api/%ED%A0%80",
        b"/api/%E4%B8",
        b"/api/%80",
    ];
    let mut failures = Vec::new();
    for &target in rows {
        let out = get(&world, target, Some(&token)).await;
        let coded = out.text.contains("\"error\":\"invalid_path\"");
        if out.status != 400 || !coded || out.forwarded.is_some() {
            let body = out
                .text
                .rsplit("\r\n\r\n")
                .next()
                .unwrap_or_default()
                .to_string();
            let upstream = out.forwarded.map(|r| r.target);
            failures.push(format!(
                "{:?} -> {} {body:?}, upstream got {upstream:?}",
                String::from_utf8_lossy(target),
                out.status
            ));
        }
    }
    report(failures);
    assert_eq!(world.upstream.count(), 0);
}

#[tokio::test]
async fn clean_paths_are_forwarded_byte_for_byte() {
    let world = World::start().await;
    let token = mint("paths_2", 600);
    let rows = [
        "/api/x",
        "/api/",
        "/api",
        "/api/v1/users/42",
        "/api/...",
        "/api/..x/.x",
        "/api/.well-known",
        "/api/a%25",
        "/api/%E4%B8%AD",
        "/api/a:b@c!$&'()*+,=",
    ];
    let mut failures = Vec::new();
    for target in rows {
        let out = get(&world, target.as_bytes(), Some(&token)).await;
        let forwarded = out.forwarded.map(|r| r.target);
        if out.status != 200 || forwarded.as_deref() != Some(target) {
            failures.push(format!(
                "{target:?} -> {}, upstream got {forwarded:?}",
                out.status
            ));
        }
    }
    report(failures);
}

#[tokio::test]
async fn escaped_unreserved_characters_route_and_forward_in_canonical_form() {
    let world = World::start().await;
    let token = mint("paths_3", 600);
    // (sent, token, status, forwarded as)
    let rows = [
        ("/ap%69/x", true, 200, Some("/api/x")),
        ("/%61pi/x%2Dy%7E", true, 200, Some("/api/x-y~")),
        ("/ap%69/x", false, 401, None),
        ("/publi%63/x", false, 200, Some("/public/x")),
        ("/publi%63/x?q=%69", false, 200, Some("/public/x?q=%69")),
    ];
    let mut failures = Vec::new();
    for (sent, with_token, status, want) in rows {
        let out = get(
            &world,
            sent.as_bytes(),
            with_token.then_some(token.as_str()),
        )
        .await;
        let forwarded = out.forwarded.as_ref().map(|r| r.target.as_str());
        if out.status != status || forwarded != want {
            failures.push(format!(
                "{sent:?} token {with_token} -> {}, upstream got {forwarded:?}",
                out.status
            ));
        }
        if let Some(seen) = out.forwarded.filter(|_| with_token) {
            assert_eq!(seen.all("x-openid"), vec!["paths_3"], "{sent}");
        }
    }
    report(failures);
}

#[tokio::test]
async fn matching_is_case_sensitive_on_the_path() {
    let world = World::start().await;
    let token = mint("paths_4", 600);
    for target in ["/API/x", "/Api", "/PUBLIC/x", "/%41PI/x"] {
        let out = get(&world, target.as_bytes(), Some(&token)).await;
        assert_eq!(out.status, 404, "{target}: {}", out.text);
        assert!(
            out.text.contains("\"error\":\"no_route\""),
            "{target}: {}",
            out.text
        );
    }
    assert_eq!(world.upstream.count(), 0);
}

#[tokio::test]
async fn nothing_after_a_fragment_ever_reaches_the_upstream() {
    let world = World::start().await;
    let token = mint("paths_5", 600);
    for target in [
        "/api/x#frag",
        "/api/x?q=1#frag",
        "/public/#/../api/x",
        "/public/x#/../../api/y",
    ] {
        let out = get(&world, target.as_bytes(), Some(&token)).await;
        match out.forwarded {
            None => {
                assert_eq!(out.status, 400, "{target}: {}", out.text);
                assert!(
                    out.text.contains("\"error\":\"invalid_path\""),
                    "{target}: {}",
                    out.text
                );
            }
            Some(seen) => {
                assert_eq!(out.status, 200, "{target}");
                let cut = target.split('#').next().unwrap_or_default();
                assert_eq!(seen.target, cut, "{target}: the fragment was not cut off");
            }
        }
    }
}

#[tokio::test]
async fn the_query_is_never_path_checked_and_is_forwarded_unchanged() {
    let world = World::start().await;
    let token = mint("paths_6", 600);
    for target in [
        "/api/x?next=../../admin",
        "/api/x?p=%2e%2e%2f%5c&q=;a&r=%00&s=%252e",
        "/api/x?redirect=//evil.example/%2F..&&=",
        "/api/x?",
    ] {
        let out = get(&world, target.as_bytes(), Some(&token)).await;
        assert_eq!(out.status, 200, "{target}: {}", out.text);
        assert_eq!(out.forwarded.map(|r| r.target).as_deref(), Some(target));
    }
}
