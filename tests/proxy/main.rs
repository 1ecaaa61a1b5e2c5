//! Proxying, in three files by subject: `identity` (what a request carries to the upstream
//! as identity and provenance), `routing` (which upstream gets it, if any) and `limits`
//! (bodies, head sizes and kept-alive connections). Here: raw requests and the checks on
//! what they produced, shared by all three.
// Test code may panic on what it set up, and its helpers are `pub` for the test files.
#![allow(clippy::unwrap_used, clippy::expect_used, unreachable_pub)]

#[path = "../support/mod.rs"]
mod support;

mod identity;
mod limits;
mod routing;

use std::net::SocketAddr;
use std::time::Duration;

use support::raw::{self, head_of, replies, Reply};
use support::{Recorded, Upstream, APPID};

type Headers<'a> = &'a [(&'a str, &'a str)];

/// Every identity header wxgate owns, in either header style.
#[rustfmt::skip]
const IDENTITY: [&str; 7] =
    ["X-OpenId", "X-UnionId", "X-AppId", "X-WX-OPENID", "X-WX-APPID", "X-WX-UNIONID", "X-WX-SOURCE"];

/// Sends raw requests on one connection, the last with `Connection: close`; every response.
async fn exchange(gw: SocketAddr, requests: &[(&str, Headers<'_>)]) -> Vec<Reply> {
    let mut text = String::new();
    for (i, (line, headers)) in requests.iter().enumerate() {
        let close: Headers = if i + 1 == requests.len() {
            &[("Connection", "close")]
        } else {
            &[]
        };
        text.push_str(&head_of(line, &[*headers, close].concat()));
    }
    replies(&raw::collect(gw, text.as_bytes(), Duration::from_secs(10)).await)
}

/// One request on its own connection, written exactly as given.
async fn send(gw: SocketAddr, line: &str, headers: Headers<'_>) -> Reply {
    let mut all = exchange(gw, &[(line, headers)]).await;
    assert_eq!(all.len(), 1, "{line} {headers:?}: {all:?}");
    all.remove(0)
}

/// Asserts a reply's status and JSON `error` code ("" when there is none).
fn expect(reply: &Reply, status: u16, error: &str, case: &str) {
    let got = (reply.status, reply.error());
    assert_eq!(
        (got.0, got.1.as_str()),
        (status, error),
        "{case}: {reply:?}"
    );
}

fn bearer(token: &str) -> String {
    format!("Bearer {token}")
}

fn verified(sub: &str) -> Vec<(&str, &str)> {
    vec![("X-OpenId", sub), ("X-AppId", APPID)]
}

/// The upstream saw exactly `expected` of the identity headers, once each, and nothing forged.
fn assert_identity(seen: &Recorded, expected: Headers, case: &str) {
    for name in IDENTITY {
        let want: Vec<&str> = expected
            .iter()
            .filter(|(n, _)| *n == name)
            .map(|p| p.1)
            .collect();
        let spelled = seen.spellings(name).len();
        assert_eq!(spelled, want.len(), "{case}: {name}\n{}", seen.head);
        assert_eq!(seen.all(name), want, "{case}: {name}\n{}", seen.head);
    }
    assert!(!seen.head.contains("evil"), "{case}: forged\n{}", seen.head);
}

fn targets(upstream: &Upstream) -> Vec<String> {
    upstream.requests().into_iter().map(|r| r.target).collect()
}

/// A `[[routes]]` entry with extra `key = value` lines.
fn route(upstream: &str, prefix: &str, extra: &str) -> String {
    format!("[[routes]]\nprefix = \"{prefix}\"\nupstream = \"{upstream}\"\n{extra}\n")
}
