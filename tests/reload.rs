//! Reload under load: while clients keep calling, the configuration is swapped again and
//! again (routes, upstreams, limits); no request fails, and sessions survive.
// Test code may panic on what it set up, and its helpers are `pub` for the test files.
#![allow(clippy::unwrap_used, clippy::expect_used, unreachable_pub)]

mod support;

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use serde_json::json;
use support::{client, mint, ConfigBuilder, RunningGateway, Upstream, Wechat};

fn config(wechat: &Wechat, a: &Upstream, b: &Upstream, variant: usize) -> String {
    let mut config = ConfigBuilder::new(&wechat.base(), &a.base());
    // Each variant routes /api differently and changes a limit; all serve the same paths.
    config.routes = match variant % 2 {
        0 => format!("[[routes]]\nprefix = \"/api\"\nupstream = \"{}\"\n", a.base()),
        _ => format!(
            "[[routes]]\nprefix = \"/api\"\nupstreams = [\"{}\", \"{}\"]\nmax_body_bytes = {}\n[[routes]]\nprefix = \"/api/v{variant}\"\nupstream = \"{}\"\n",
            a.base(),
            b.base(),
            1024 * (variant + 1),
            b.base()
        ),
    };
    config.text()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reloads_under_load_fail_no_request_and_keep_sessions() {
    let wechat = Wechat::start().await;
    let (a, b) = (Upstream::start().await, Upstream::start().await);
    let dir = std::env::temp_dir().join(format!("wxgate-reload-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("dir");
    let path = dir.join("gateway.toml");
    std::fs::write(&path, config(&wechat, &a, &b, 0)).expect("write");
    let gw =
        Arc::new(RunningGateway::start_settings(wxgate::config::load(&path).expect("valid")).await);
    let http = client();
    let login = support::json_of(
        http.post(gw.url("/auth/login"))
            .json(&json!({"code": "reload-user"})),
    )
    .await;

    let stop = Arc::new(AtomicBool::new(false));
    let (ok, failed) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let mut load = tokio::task::JoinSet::new();
    for worker in 0..8 {
        let (gw, http, stop) = (gw.clone(), http.clone(), stop.clone());
        let (ok, failed) = (ok.clone(), failed.clone());
        let token = mint(&format!("o_load_{worker}"), 300);
        load.spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                let response = http
                    .get(gw.url("/api/orders"))
                    .bearer_auth(&token)
                    .send()
                    .await;
                match response {
                    Ok(r) if r.status() == 200 => ok.fetch_add(1, Ordering::Relaxed),
                    _ => failed.fetch_add(1, Ordering::Relaxed),
                };
            }
        });
    }
    for variant in 1..=30 {
        std::fs::write(&path, config(&wechat, &a, &b, variant)).expect("write");
        gw.state.reload().expect("reload");
        let before = ok.load(Ordering::Relaxed);
        // Let some requests run on this configuration before the next swap.
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while ok.load(Ordering::Relaxed) < before + 20 && std::time::Instant::now() < deadline {
            tokio::task::yield_now().await;
        }
    }
    stop.store(true, Ordering::Relaxed);
    while load.join_next().await.is_some() {}
    let (ok, failed) = (ok.load(Ordering::Relaxed), failed.load(Ordering::Relaxed));
    eprintln!("{ok} requests succeeded across 30 reloads, {failed} failed");
    assert_eq!(failed, 0, "{failed} of {} requests failed", ok + failed);
    assert!(ok >= 600);
    assert!(b.count() > 0, "the new routes were used");

    let renewed = http
        .post(gw.url("/auth/refresh"))
        .json(&json!({"refresh_token": login["refresh_token"]}))
        .send()
        .await
        .expect("refresh");
    assert_eq!(renewed.status(), 200, "the session survived the reloads");
    let _ = std::fs::remove_dir_all(&dir);
    tokio::time::timeout(Duration::from_secs(5), gw.begin_shutdown())
        .await
        .ok();
}
