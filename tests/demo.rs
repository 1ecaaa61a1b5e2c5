//! `wxgate demo` as a new user meets it: it starts, prints where the gateway is, and the
//! walkthrough's steps behave as printed.
// Test code may panic on what it set up, and its helpers are `pub` for the test files.
#![allow(clippy::unwrap_used, clippy::expect_used, unreachable_pub)]

mod support;

use std::time::Duration;

use serde_json::json;
use support::binary::{Binary, Output};

#[tokio::test]
async fn the_demo_walkthrough_works() {
    let mut demo = Binary::spawn(&["demo"], &[], Output::Stdout);
    // The walkthrough's `gateway  http://...` line says where the gateway is.
    let gateway = demo.find("gateway address", Duration::from_secs(30), |line| {
        let rest = line.trim().strip_prefix("gateway")?;
        rest.split_whitespace().next().map(str::to_string)
    });
    let http = support::client();
    let login = support::json_of(
        http.post(format!("{gateway}/auth/login"))
            .json(&json!({ "code": "demo-test-code" })),
    )
    .await;
    let token = login["access_token"].as_str().expect("access token");
    let echoed =
        support::json_of(http.get(format!("{gateway}/api/hello")).bearer_auth(token)).await;
    assert_eq!(echoed["headers"]["x-openid"], login["openid"], "{echoed}");
    let spoofed = support::json_of(
        http.get(format!("{gateway}/api/public/hello"))
            .header("X-OpenId", "admin"),
    )
    .await;
    assert!(spoofed["headers"].get("x-openid").is_none(), "{spoofed}");
    let denied = http
        .get(format!("{gateway}/api/hello"))
        .send()
        .await
        .expect("api");
    assert_eq!(denied.status(), 401);
}
