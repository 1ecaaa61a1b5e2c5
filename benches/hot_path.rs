//! The per-request pieces of the proxy path: route lookup, header sanitising and identity
//! injection, and the whole login path against an in-process mock WeChat.
//!
//! `cargo bench --bench hot_path`
// Test code may panic on what it set up, and its helpers are `pub` for the test files.
#![allow(clippy::unwrap_used, clippy::expect_used, unreachable_pub)]

use std::net::{IpAddr, Ipv4Addr};
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};
use http::{HeaderValue, Method, Request};
use wxgate::devtools::mock_wechat::{MockOptions, MockWechat};
use wxgate::ClientAddr;
use wxgate::Identity;
use wxgate::{outgoing, Hop};

const SECRET: &str = "bench-secret-0123456789abcdef-0123456789";

fn config(routes: usize, wechat: &str) -> String {
    let mut text = format!(
        "[server]\nlisten = \"127.0.0.1:0\"\n[admin]\nlisten = \"127.0.0.1:0\"\n\
         [wechat]\napi_base = \"{wechat}\"\n[[wechat.apps]]\nappid = \"wx0123456789abcdef\"\nsecret = \"s\"\n\
         [auth]\naudience = \"bench\"\n[auth.login_rate_limit]\nper_minute = 1000000\nburst = 1000000\n\
         [[auth.keys]]\nkid = \"k1\"\nalg = \"HS256\"\nsecret = \"{SECRET}\"\n"
    );
    for i in 0..routes {
        text.push_str(&format!(
            "[[routes]]\nprefix = \"/svc{i}/api\"\nupstream = \"http://127.0.0.1:9000\"\n"
        ));
    }
    text
}

fn settings(routes: usize) -> wxgate::settings::Settings {
    wxgate::config::from_str(&config(routes, "http://127.0.0.1:9"), Path::new("."))
        .expect("bench config")
}

fn route_lookup(c: &mut Criterion) {
    let mut group = c.benchmark_group("route_lookup");
    for n in [1usize, 200] {
        let settings = settings(n);
        let path = format!("/svc{}/api/orders/42", n - 1);
        group.bench_with_input(BenchmarkId::from_parameter(n), &path, |b, path| {
            b.iter(|| {
                settings
                    .routes
                    .find(path, Some("api.example.com"), &Method::GET)
                    .is_ok()
            })
        });
    }
    group.finish();
}

fn headers(c: &mut Criterion) {
    let settings = settings(1);
    let identity = Identity {
        openid: "oBench0123456789abcdefghijkl".into(),
        unionid: None,
        appid: Some("wx0123456789abcdef".into()),
        sid: Some("sid0123456789abcdef".into()),
        exp: i64::MAX,
        ext: Default::default(),
        phone: None,
    };
    let request_id = HeaderValue::from_static("req-0123456789");
    let peer_value = HeaderValue::from_static("127.0.0.1");
    let hop = Hop {
        client: ClientAddr {
            ip: IpAddr::V4(Ipv4Addr::LOCALHOST),
            peer_trusted: false,
        },
        peer: IpAddr::V4(Ipv4Addr::LOCALHOST),
        peer_value: &peer_value,
        proto: "http",
        host: Some("api.example.com"),
        request_id: &request_id,
    };
    // What a mini-program sends, plus a spoofing attempt.
    let template = Request::builder()
        .uri("/svc0/api/orders")
        .header("host", "api.example.com")
        .header(
            "user-agent",
            "Mozilla/5.0 (iPhone) MicroMessenger/8.0.50 miniProgram",
        )
        .header("accept", "*/*")
        .header("content-type", "application/json")
        .header(
            "referer",
            "https://servicewechat.com/wx0123456789abcdef/12/page-frame.html",
        )
        .header("authorization", "Bearer x.y.z")
        .header("x-openid", "spoofed")
        .body(())
        .expect("request");
    let parts = template.into_parts().0;
    c.bench_function("outgoing_headers", |b| {
        b.iter(|| outgoing(&parts, &settings.auth, Some(&identity), &hop, false).expect("ok"))
    });
}

fn login(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .expect("runtime");
    let (gateway_url, client) = rt.block_on(async {
        let mock_listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let mock_addr = mock_listener.local_addr().expect("addr");
        let mock = MockWechat::new(MockOptions::default());
        tokio::spawn(mock.serve(mock_listener, std::future::pending()));
        let settings =
            wxgate::config::from_str(&config(1, &format!("http://{mock_addr}")), Path::new("."))
                .expect("config");
        let public = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = public.local_addr().expect("addr");
        let gateway = wxgate::Gateway::new(settings).expect("gateway");
        tokio::spawn(wxgate::run(
            wxgate::Listeners {
                public,
                tls: None,
                admin: None,
            },
            Arc::clone(&gateway),
            std::future::pending(),
        ));
        (format!("http://{addr}/auth/login"), reqwest::Client::new())
    });
    let next = AtomicU64::new(0);
    c.bench_function("login_via_mock_wechat", |b| {
        b.iter(|| {
            let code = format!("bench{}", next.fetch_add(1, Ordering::Relaxed));
            rt.block_on(async {
                let response = client
                    .post(&gateway_url)
                    .header("content-type", "application/json")
                    .body(format!("{{\"code\":\"{code}\"}}"))
                    .send()
                    .await
                    .expect("login");
                assert_eq!(response.status(), 200);
                response.bytes().await.expect("body")
            })
        })
    });
}

criterion_group!(benches, route_lookup, headers, login);
criterion_main!(benches);
