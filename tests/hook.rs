//! The login hook over real HTTP: its claims in tokens, sessions and claim headers; every way
//! it can deny or fail a login; what it is told and never told; `auth = "phone"` routes.
// Test code may panic on what it set up, and its helpers are `pub` for the test files.
#![allow(clippy::unwrap_used, clippy::expect_used, unreachable_pub)]

mod support;

use std::time::{Duration, Instant};

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use serde_json::{json, Value};
use support::binary::{Binary, ConfigFile};
use support::hook::{Answer, Hook};
use support::{mint_with, World, APPID};
use wxgate::devtools::mock_wechat::MockWechat;

const CLAIM_HEADERS: &str = r#"
[auth.claim_headers]
uid = "X-User-Id"
role = "X-Role"
vip = "X-Vip"
phone = "X-Phone"
"#;

/// A world whose gateway calls `hook` (within `timeout`) and has an `auth = "phone"` route.
async fn world_with(on_login: String) -> World {
    World::start_with(|c| {
        c.auth_tables = format!("{on_login}{CLAIM_HEADERS}");
        c.routes.push_str(&format!(
            "[[routes]]\nprefix = \"/pay\"\nupstream = \"{}\"\nauth = \"phone\"\n",
            c.upstream
        ));
    })
    .await
}

async fn world_with_hook(hook: &Hook) -> World {
    world_with(hook.config("500ms")).await
}

/// The payload of a JWT, unverified.
fn payload(token: &str) -> Value {
    let part = token.split('.').nth(1).expect("payload");
    serde_json::from_slice(&URL_SAFE_NO_PAD.decode(part).expect("b64")).expect("json")
}

async fn try_login(world: &World, code: &str) -> (u16, Value) {
    let response = world
        .post_json("/auth/login", json!({ "code": code }))
        .await;
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

async fn get(world: &World, path: &str, token: Option<&str>, headers: &[(&str, &str)]) -> u16 {
    let mut request = world.http.get(world.url(path));
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    request.send().await.expect("request").status().as_u16()
}

/// A client's attempt at every claim header, in the spellings WSGI and PHP fold together.
const SPOOFS: [(&str, &str); 6] = [
    ("X-User-Id", "1"),
    ("X_User_Id", "2"),
    ("x-user-id", "3"),
    ("X-Role", "root"),
    ("X_Vip", "true"),
    ("X_Phone", "+1 555 0100"),
];

#[tokio::test]
async fn hook_claims_reach_the_token_the_session_and_the_upstream() {
    let hook = Hook::start(Answer::claims(
        json!({"uid": 42, "role": "admin", "vip": true}),
    ))
    .await;
    let world = world_with_hook(&hook).await;
    let login = world.login("hookclaims1").await;
    assert!(
        login.get("claims").is_none() && login.get("ext").is_none(),
        "{login}"
    );
    let access = login["access_token"].as_str().expect("access_token");
    let claims = payload(access);
    assert_eq!(
        claims["ext"],
        json!({"uid": 42, "role": "admin", "vip": true})
    );
    assert!(claims.get("phone").is_none(), "{claims}");

    assert_eq!(get(&world, "/api/orders", Some(access), &SPOOFS).await, 200);
    let seen = world.upstream.last();
    assert_eq!(seen.spellings("x-user-id"), ["x-user-id"], "{}", seen.head);
    assert_eq!(seen.one("x-user-id"), Some("42"));
    assert_eq!(seen.one("x-role"), Some("admin"));
    assert_eq!(seen.one("x-vip"), Some("true"));
    assert!(seen.spellings("x-phone").is_empty(), "no phone, no header");

    // Claim headers are identity headers: stripped on every route, token or not.
    for path in ["/public/x", "/optional/x"] {
        assert_eq!(get(&world, path, None, &SPOOFS).await, 200, "{path}");
        let seen = world.upstream.last();
        for header in ["x-user-id", "x-role", "x-vip", "x-phone"] {
            assert!(seen.spellings(header).is_empty(), "{path}: {}", seen.head);
        }
    }

    let session = world.get_with_token("/auth/session", access).await;
    assert_eq!(session.status(), 200);
    let session: Value = session.json().await.expect("json");
    assert_eq!(
        session["claims"],
        json!({"uid": 42, "role": "admin", "vip": true})
    );
    assert!(session.get("phone").is_none(), "{session}");

    let response = world
        .post_json(
            "/auth/refresh",
            json!({ "refresh_token": login["refresh_token"] }),
        )
        .await;
    assert_eq!(response.status(), 200);
    let renewed: Value = response.json().await.expect("json");
    let access = renewed["access_token"].as_str().expect("access_token");
    assert_eq!(
        payload(access)["ext"]["uid"],
        42,
        "claims survive a refresh"
    );
    assert_eq!(get(&world, "/api/orders", Some(access), &SPOOFS).await, 200);
    assert_eq!(world.upstream.last().one("x-user-id"), Some("42"));
    assert_eq!(hook.requests().len(), 1, "a refresh does not call the hook");
}

#[tokio::test]
async fn the_hook_is_told_who_logged_in_and_nothing_secret() {
    let hook = Hook::start(Answer::status(200, "{}")).await;
    let world = world_with_hook(&hook).await;
    for code in ["unionhook1", "plainhook1"] {
        let login = world.login(code).await;
        let openid = MockWechat::openid_for(APPID, code);
        let request = hook.requests().pop().expect("the hook was called");
        assert_eq!(
            (request.method.as_str(), request.target.as_str()),
            ("POST", "/internal/wx-login")
        );
        assert_eq!(request.one("content-type"), Some("application/json"));
        let body: Value = serde_json::from_slice(&request.body).expect("json");
        let mut expected = json!({ "openid": openid, "appid": APPID });
        if code.contains("union") {
            expected["unionid"] = login["unionid"].clone();
            assert!(login["unionid"].is_string(), "{login}");
        }
        assert_eq!(body, expected, "{code}");
        let session_key = world.wechat.mock.session_key(&openid).expect("issued");
        let raw = format!("{}{}", request.head, String::from_utf8_lossy(&request.body));
        for secret in [code, session_key.as_str(), support::APP_SECRET] {
            assert!(!raw.contains(secret), "the hook saw {secret}: {raw}");
        }
        // `{}` is a login without claims.
        assert!(payload(login["access_token"].as_str().expect("token"))
            .get("ext")
            .is_none());
    }
}

#[tokio::test]
async fn a_403_from_the_hook_denies_the_login_and_spends_the_code() {
    let hook = Hook::start(Answer::status(403, r#"{"reason": "banned"}"#)).await;
    let world = world_with_hook(&hook).await;
    let (status, body) = try_login(&world, "denied1").await;
    assert_eq!(
        (status, body["error"].as_str()),
        (403, Some("login_denied")),
        "{body}"
    );
    let keys: Vec<&String> = body.as_object().expect("object").keys().collect();
    assert_eq!(
        keys,
        ["error", "error_description"],
        "no tokens, nothing from the hook"
    );
    assert_eq!(hook.requests().len(), 1);
    // WeChat spent the code; presenting it again is refused without another exchange.
    let (status, body) = try_login(&world, "denied1").await;
    assert_eq!((status, body["error"].as_str()), (400, Some("code_used")));
    assert_eq!((world.wechat.logins(), hook.requests().len()), (1, 1));

    hook.answer(Answer::claims(json!({"uid": 7})));
    let login = world.login("denied2").await;
    assert_eq!(
        payload(login["access_token"].as_str().expect("token"))["ext"]["uid"],
        7
    );
}

#[tokio::test]
async fn every_hook_failure_is_a_502_login_hook_failed() {
    let hook = Hook::start(Answer::status(500, "")).await;
    let world = world_with(hook.config("300ms")).await;
    let big = json!({ "claims": { "uid": "x".repeat(5000) } }).to_string();
    let cases = [
        ("500", Answer::status(500, r#"{"claims": {"uid": 1}}"#)),
        ("401", Answer::status(401, "{}")),
        ("redirect", Answer::status(302, "")),
        ("204", Answer::status(204, "")),
        ("not json", Answer::status(200, "<html>ok</html>")),
        ("not an object", Answer::status(200, "[]")),
        (
            "claims not an object",
            Answer::status(200, r#"{"claims": [1]}"#),
        ),
        ("null claims", Answer::status(200, r#"{"claims": null}"#)),
        ("oversized", Answer::status(200, &big)),
        (
            "oversized, no length",
            Answer::status(200, &big).without_length(),
        ),
        ("nested", Answer::claims(json!({"uid": {"id": 1}}))),
        ("array", Answer::claims(json!({"uid": [1, 2]}))),
        ("null", Answer::claims(json!({"uid": null}))),
        ("registered", Answer::claims(json!({"sub": "oAdmin"}))),
        ("phone", Answer::claims(json!({"phone": "13800138000"}))),
        ("bad name", Answer::claims(json!({"user-id": 1}))),
        (
            "header injection",
            Answer::claims(json!({"uid": "1\r\nX-OpenId: oAdmin"})),
        ),
        (
            "long string",
            Answer::claims(json!({"uid": "x".repeat(257)})),
        ),
        (
            "slow",
            Answer::claims(json!({"uid": 1})).after(Duration::from_secs(3)),
        ),
    ];
    for (i, (case, answer)) in cases.into_iter().enumerate() {
        hook.answer(answer);
        let started = Instant::now();
        let (status, body) = try_login(&world, &format!("hookfail{i}")).await;
        assert_eq!(
            (status, body["error"].as_str()),
            (502, Some("login_hook_failed")),
            "{case}: {body}"
        );
        assert!(body.get("access_token").is_none(), "{case}");
        let text = body.to_string();
        assert!(
            !text.contains(&hook.addr.to_string()) && !text.contains("wx-login"),
            "{text}"
        );
        assert!(
            started.elapsed() < Duration::from_secs(2),
            "{case}: {:?}",
            started.elapsed()
        );
    }
    assert_eq!(hook.requests().len(), 19, "every case reached the hook");
    assert_eq!(world.upstream.count(), 0);
}

#[tokio::test]
async fn an_unreachable_hook_fails_the_login() {
    let closed = support::closed_port().await;
    let on_login = format!("[auth.on_login]\nurl = \"http://{closed}/hook\"\ntimeout = \"1s\"\n");
    let world = world_with(on_login).await;
    let (status, body) = try_login(&world, "unreachable1").await;
    assert_eq!(
        (status, body["error"].as_str()),
        (502, Some("login_hook_failed")),
        "{body}"
    );
    assert!(
        !body.to_string().contains(&closed.port().to_string()),
        "{body}"
    );
}

#[tokio::test]
async fn phone_routes_pass_only_tokens_with_a_phone() {
    // No hook: `phone` is the one claim header that works without one.
    let world = World::start_with(|c| {
        c.auth_tables = "[auth.claim_headers]\nphone = \"X-Phone\"\n".into();
        c.routes.push_str(&format!(
            "[[routes]]\nprefix = \"/pay\"\nupstream = \"{}\"\nauth = \"phone\"\n",
            c.upstream
        ));
    })
    .await;
    let spoof = [("X-Phone", "+1 555 0100"), ("x_phone", "+1 555 0101")];
    let with_phone = mint_with("oPhone1", 300, |c| {
        c.phone = Some("+86 138-0013-8000".into())
    });
    assert_eq!(
        get(&world, "/pay/orders", Some(&with_phone), &spoof).await,
        200
    );
    let seen = world.upstream.last();
    assert_eq!(seen.spellings("x-phone"), ["x-phone"], "{}", seen.head);
    assert_eq!(seen.one("x-phone"), Some("+86 138-0013-8000"));
    assert_eq!(seen.one("x-openid"), Some("oPhone1"));

    let without = mint_with("oPhone2", 300, |_| {});
    let response = world
        .http
        .get(world.url("/pay/orders"))
        .bearer_auth(&without)
        .header("X-Phone", "+1 555 0100")
        .send()
        .await
        .expect("request");
    assert_eq!(response.status(), 403);
    let body: Value = response.json().await.expect("json");
    assert_eq!(body["error"], "phone_required");
    assert_eq!(world.upstream.count(), 1, "nothing reached the upstream");

    // A login gives no phone yet: `/auth/phone` is what adds it.
    let login = world.login("nophone1").await;
    let access = login["access_token"].as_str().expect("token");
    assert_eq!(get(&world, "/pay/orders", Some(access), &[]).await, 403);
    assert_eq!(get(&world, "/api/orders", Some(access), &spoof).await, 200);
    assert!(world.upstream.last().spellings("x-phone").is_empty());
}

#[tokio::test]
async fn tokens_with_malformed_phone_or_ext_claims_are_refused() {
    let hook = Hook::start(Answer::status(200, "{}")).await;
    let world = world_with_hook(&hook).await;
    let cases = [
        mint_with("oBad1", 300, |c| c.phone = Some("tel:13800138000".into())),
        mint_with("oBad2", 300, |c| {
            c.phone = Some("1\r\nX-OpenId: oAdmin".into())
        }),
        mint_with("oBad3", 300, |c| {
            c.ext = Some(object(json!({"uid": {"id": 1}})))
        }),
        mint_with("oBad4", 300, |c| c.ext = Some(object(json!({"uid": [1]})))),
        mint_with("oBad5", 300, |c| {
            c.ext = Some(object(json!({"sub": "oAdmin"})))
        }),
        mint_with("oBad6", 300, |c| {
            c.ext = Some(object(json!({"uid": "a\nb"})))
        }),
    ];
    for token in &cases {
        assert_eq!(
            get(&world, "/api/x", Some(token), &[]).await,
            401,
            "{}",
            payload(token)
        );
    }
    let good = mint_with("oGood", 300, |c| {
        c.ext = Some(object(json!({"uid": "u-1"})))
    });
    assert_eq!(get(&world, "/api/x", Some(&good), &[]).await, 200);
    assert_eq!(world.upstream.last().one("x-user-id"), Some("u-1"));
}

fn object(value: Value) -> serde_json::Map<String, Value> {
    match value {
        Value::Object(map) => map,
        other => panic!("not an object: {other}"),
    }
}

/// The real binary with a hook, at debug level: every outcome is logged with its reason, and
/// nothing secret — nor the hook's address — ever reaches the log.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_binary_logs_hook_outcomes_without_secrets_or_the_hook_address() {
    let hook = Hook::start(Answer::claims(json!({"uid": 42}))).await;
    let wechat = support::Wechat::start().await;
    let upstream = support::Upstream::start().await;
    let mut config = support::ConfigBuilder::new(&wechat.base(), &upstream.base());
    config.auth_tables = format!("{}{CLAIM_HEADERS}", hook.config("300ms"));
    let path = ConfigFile::new(&config.text());
    let mut wxgate = Binary::run(&path, &[("RUST_LOG", "debug")]);
    let addr = wxgate.listening().public;
    let http = support::client();
    let login = |code: &'static str| {
        let http = http.clone();
        let url = format!("http://{addr}/auth/login");
        async move {
            let response = http
                .post(url)
                .json(&json!({ "code": code }))
                .send()
                .await
                .expect("login");
            let status = response.status().as_u16();
            (status, response.json::<Value>().await.expect("json"))
        }
    };
    let (status, ok) = login("hooklogcode1").await;
    assert_eq!(status, 200);
    hook.answer(Answer::status(500, ""));
    assert_eq!(login("hooklogcode2").await.0, 502);
    hook.answer(Answer::claims(json!({"uid": 1})).after(Duration::from_secs(3)));
    assert_eq!(login("hooklogcode3").await.0, 502);
    hook.answer(Answer::claims(json!({"uid": {"nested": true}})));
    assert_eq!(login("hooklogcode4").await.0, 502);
    hook.answer(Answer::status(403, ""));
    assert_eq!(login("hooklogcode5").await.0, 403);

    let (exit, logs) = wxgate.stop().await;
    assert_eq!(exit.code(), Some(0));

    let openid = ok["openid"].as_str().expect("openid");
    let session_key = wechat.mock.session_key(openid).expect("issued");
    let access = ok["access_token"].as_str().expect("access").to_string();
    let secrets = [
        session_key.as_str(),
        access.as_str(),
        ok["refresh_token"].as_str().expect("refresh"),
        "hooklogcode",
        "/internal/wx-login",
        support::APP_SECRET,
    ];
    for secret in secrets {
        assert!(
            !logs.contains(secret),
            "`{secret}` appeared in the logs:\n{logs}"
        );
    }
    // hyper's own debug lines name the peers it connects to; wxgate's hook lines never do.
    let hook_addr = hook.addr.to_string();
    for line in logs.lines().filter(|l| l.contains("hook")) {
        assert!(!line.contains(&hook_addr), "{line}");
    }
    for reason in [
        "unexpected status",
        "timed out",
        "is not a string, number or boolean",
        "denied a login",
    ] {
        assert!(logs.contains(reason), "no `{reason}` in the logs:\n{logs}");
    }
}
