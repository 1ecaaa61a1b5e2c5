//! `wxgate demo` as a new user meets it: it starts, prints where the gateway is, and the
//! walkthrough's steps behave as printed.

mod support;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};

use serde_json::{json, Value};

#[tokio::test]
async fn the_demo_walkthrough_works() {
    let mut child = support::ChildGuard(
        Command::new(env!("CARGO_BIN_EXE_wxgate"))
            .arg("demo")
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn demo"),
    );
    let stdout = child.0.stdout.take().expect("stdout");
    // Read until the gateway line, then keep draining stdout so the demo never writes into
    // a closed pipe.
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut sent = false;
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            let address = line
                .trim()
                .strip_prefix("gateway")
                .and_then(|rest| rest.split_whitespace().next());
            if let (false, Some(address)) = (sent, address) {
                sent = tx.send(address.to_string()).is_ok();
            }
        }
    });
    let gateway =
        tokio::task::spawn_blocking(move || rx.recv_timeout(std::time::Duration::from_secs(30)))
            .await
            .expect("join")
            .expect("the demo printed its gateway address");
    let http = support::client();
    let login: Value = http
        .post(format!("{gateway}/auth/login"))
        .json(&json!({ "code": "demo-test-code" }))
        .send()
        .await
        .expect("login")
        .json()
        .await
        .expect("json");
    let token = login["access_token"].as_str().expect("access token");
    let echoed: Value = http
        .get(format!("{gateway}/api/hello"))
        .bearer_auth(token)
        .send()
        .await
        .expect("api")
        .json()
        .await
        .expect("json");
    assert_eq!(echoed["headers"]["x-openid"], login["openid"], "{echoed}");
    let spoofed: Value = http
        .get(format!("{gateway}/api/public/hello"))
        .header("X-OpenId", "admin")
        .send()
        .await
        .expect("public")
        .json()
        .await
        .expect("json");
    assert!(spoofed["headers"].get("x-openid").is_none(), "{spoofed}");
    let denied = http
        .get(format!("{gateway}/api/hello"))
        .send()
        .await
        .expect("api");
    assert_eq!(denied.status(), 401);
}
