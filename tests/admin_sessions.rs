//! The operator's session and user endpoints on the embedded store: a user's sessions
//! listed without secrets, revoked by openid, unionid or session id (access tokens 401,
//! refresh tokens `invalid_grant`), login blocks that refuse logins and refreshes with 403
//! `login_denied` until lifted, the requests they refuse, and `[admin] token_file`.
//! The same endpoints over Redis, across instances, are in `tests/redis_modes/`.
// Test code may panic on what it set up, and its helpers are `pub` for the test files.
#![allow(clippy::unwrap_used, clippy::expect_used, unreachable_pub)]

mod support;

use serde_json::{json, Value};
use support::admin::{self, session_ids};
use support::{World, APPID};
use wxgate::tokens::now_unix;

async fn refresh(w: &World, token: &Value) -> (u16, Value) {
    let response = w
        .post_json("/auth/refresh", json!({ "refresh_token": token }))
        .await;
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

async fn call(w: &World, access: &Value) -> u16 {
    let token = access.as_str().expect("access token");
    w.get_with_token("/api/x", token).await.status().as_u16()
}

#[tokio::test]
async fn a_users_sessions_are_listed_without_secrets_and_revoked_together() {
    let w = World::start().await;
    let first = w.login("same-ann-union1").await;
    let second = w.login("same-ann-union2").await;
    let other = w.login("same-bob-1").await;
    let openid = first["openid"].as_str().expect("openid");
    assert_eq!(second["openid"], openid, "one user, two logins");
    let (_, renewed) = refresh(&w, &second["refresh_token"]).await;

    let (status, listed) =
        admin::get(&w.http, &w.gateway, &format!("/sessions?openid={openid}")).await;
    assert_eq!(status, 200, "{listed}");
    let sessions = listed["sessions"].as_array().expect("list");
    assert_eq!(sessions.len(), 2, "{listed}");
    let by_id = |id: &Value| sessions.iter().find(|s| s["session_id"] == *id).cloned();
    let (one, two) = (by_id(&first["session_id"]), by_id(&second["session_id"]));
    let (one, two) = (one.expect("first listed"), two.expect("second listed"));
    assert_eq!(
        (one["appid"].as_str(), one["openid"].as_str()),
        (Some(APPID), Some(openid))
    );
    assert!(one["unionid"].as_str().is_some_and(|u| u.starts_with('u')));
    assert!(one["created_at"]
        .as_i64()
        .is_some_and(|t| (t - now_unix()).abs() < 60));
    assert_eq!(one["refreshed_at"], Value::Null, "never refreshed");
    assert!(two["refreshed_at"].as_i64().is_some(), "refreshed once");
    assert!(one["expires_at"].as_i64() > one["created_at"].as_i64());
    let text = listed.to_string();
    let key = w.wechat.mock.session_key(openid).expect("key");
    assert!(
        !text.contains("session_key") && !text.contains(&key),
        "{text}"
    );
    let unionid = one["unionid"].as_str().expect("unionid").to_string();
    assert_eq!(
        session_ids(&w.http, &w.gateway, &format!("unionid={unionid}"))
            .await
            .len(),
        2
    );

    let answer = admin::revoke(&w.http, &w.gateway, json!({ "openid": openid })).await;
    assert_eq!(answer["revoked"].as_u64(), Some(2), "{answer}");
    for access in [
        &first["access_token"],
        &second["access_token"],
        &renewed["access_token"],
    ] {
        assert_eq!(call(&w, access).await, 401, "a revoked user's access token");
    }
    for token in [&first["refresh_token"], &renewed["refresh_token"]] {
        let (status, body) = refresh(&w, token).await;
        assert_eq!(
            (status, body["error"].as_str()),
            (400, Some("invalid_grant"))
        );
    }
    assert_eq!(
        call(&w, &other["access_token"]).await,
        200,
        "another user is untouched"
    );
    assert!(
        session_ids(&w.http, &w.gateway, &format!("openid={openid}"))
            .await
            .is_empty()
    );
}

#[tokio::test]
async fn sessions_are_revoked_by_unionid_or_one_by_one() {
    let w = World::start().await;
    let a = w.login("same-cy-union1").await;
    let b = w.login("same-cy-union2").await;
    let (_, listed) = admin::get(
        &w.http,
        &w.gateway,
        &format!("/sessions?openid={}", a["openid"].as_str().expect("openid")),
    )
    .await;
    let unionid = listed["sessions"][0]["unionid"]
        .as_str()
        .expect("unionid")
        .to_string();

    let body = json!({ "session_id": a["session_id"] });
    let answer = admin::revoke(&w.http, &w.gateway, body).await;
    assert_eq!(answer["session_ids"], json!([a["session_id"]]));
    assert_eq!(call(&w, &a["access_token"]).await, 401);
    assert_eq!(call(&w, &b["access_token"]).await, 200, "only that session");

    let body = json!({ "unionid": unionid, "appid": APPID });
    let answer = admin::revoke(&w.http, &w.gateway, body).await;
    assert_eq!(answer["session_ids"], json!([b["session_id"]]));
    assert_eq!(call(&w, &b["access_token"]).await, 401);
}

#[tokio::test]
async fn a_blocked_user_is_refused_login_and_refresh_until_unblocked() {
    let w = World::start().await;
    let before = w.login("same-dee-1").await;
    let openid = before["openid"].as_str().expect("openid");
    let until = now_unix() + 3600;
    let body = json!({ "openid": openid, "until": until });
    let (status, answer) = admin::post(&w.http, &w.gateway, "/users/block", body).await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(
        (answer["until"].as_i64(), &answer["appid"]),
        (Some(until), &Value::Null)
    );

    let (status, body, _) = w.try_login("same-dee-2").await;
    assert_eq!(
        (status, body["error"].as_str()),
        (403, Some("login_denied")),
        "{body}"
    );
    assert!(body["error_description"]
        .as_str()
        .is_some_and(|d| !d.is_empty()));
    let (status, body) = refresh(&w, &before["refresh_token"]).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (403, Some("login_denied")),
        "a refresh re-checks the block, with an answer that does not send the SDK to login"
    );
    assert_eq!(
        call(&w, &before["access_token"]).await,
        200,
        "a block alone ends no token"
    );
    assert_eq!(w.try_login("same-erin-1").await.0, 200, "others log in");

    let body = json!({ "openid": openid });
    let (status, answer) = admin::post(&w.http, &w.gateway, "/users/unblock", body.clone()).await;
    assert_eq!((status, answer["unblocked"].as_bool()), (200, Some(true)));
    let (_, answer) = admin::post(&w.http, &w.gateway, "/users/unblock", body).await;
    assert_eq!(
        answer["unblocked"].as_bool(),
        Some(false),
        "nothing left to lift"
    );
    assert_eq!(w.try_login("same-dee-3").await.0, 200);
    let (status, _) = refresh(&w, &before["refresh_token"]).await;
    assert_eq!(status, 200, "the refused refresh had not spent the token");
}

#[tokio::test]
async fn malformed_operator_requests_are_refused_with_their_reason() {
    let w = World::start().await;
    let now = now_unix();
    let cases = [
        ("/sessions/revoke", json!({})),
        ("/sessions/revoke", json!({"openid": "o1", "unionid": "u1"})),
        (
            "/sessions/revoke",
            json!({"session_id": "s1", "openid": "o1"}),
        ),
        ("/sessions/revoke", json!({"openid": "o1\r\nX: y"})),
        (
            "/sessions/revoke",
            json!({"openid": "o1", "appid": "wxnotconfigured"}),
        ),
        ("/users/block", json!({"openid": "o1"})),
        ("/users/block", json!({"openid": "o1", "until": now - 10})),
        ("/users/block", json!({"openid": "o1", "until": "tomorrow"})),
        (
            "/users/block",
            json!({"openid": "o1", "until": now + 200 * 365 * 86400}),
        ),
        ("/users/block", json!({"until": now + 60})),
        ("/users/unblock", json!({"openid": 5})),
    ];
    for (path, body) in cases {
        let (status, answer) = admin::post(&w.http, &w.gateway, path, body.clone()).await;
        assert_eq!(
            (status, answer["error"].as_str()),
            (400, Some("invalid_request")),
            "{path} {body}: {answer}"
        );
    }
    for query in ["", "openid=", "openid=a&openid=b", "openid=o1&unionid=u1"] {
        let (status, _) = admin::get(&w.http, &w.gateway, &format!("/sessions?{query}")).await;
        assert_eq!(status, 400, "?{query}");
    }
    let (status, _) = admin::post(&w.http, &w.gateway, "/sessions", json!({"openid": "o1"})).await;
    assert_eq!(status, 405);
    let (status, _) = admin::get(&w.http, &w.gateway, "/users/block").await;
    assert_eq!(status, 405);
    let response = w
        .http
        .post(format!("http://{}/users/block", w.gateway.admin))
        .body("not json")
        .send()
        .await
        .expect("post");
    assert_eq!(response.status(), 400);
    let (status, answer) = admin::get(&w.http, &w.gateway, "/sessions?openid=nobody").await;
    assert_eq!((status, answer), (200, json!({"sessions": []})));
}

#[tokio::test]
async fn with_a_token_file_the_operator_endpoints_need_the_bearer_token() {
    let dir = support::certs::TempDir::new("admin-token");
    let token = "an-admin-secret-of-some-length";
    let file = dir.path().join("admin-token");
    std::fs::write(&file, format!("{token}\n")).expect("token file");
    let w = World::start_with(|c| {
        c.admin_extra = format!("token_file = \"{}\"\n", file.display());
    })
    .await;
    let list = "/sessions?openid=o1";
    for presented in [None, Some("wrong"), Some(&token[..token.len() - 1])] {
        let (status, body) = admin::call(&w.http, &w.gateway, list, None, presented).await;
        assert_eq!(
            (status, body["error"].as_str()),
            (401, Some("unauthorized")),
            "{presented:?}"
        );
    }
    let response = w
        .http
        .post(format!("http://{}/users/block", w.gateway.admin))
        .header("authorization", format!("Basic {token}"))
        .json(&json!({"openid": "o1", "until": now_unix() + 60}))
        .send()
        .await
        .expect("post");
    assert_eq!(response.status(), 401, "only a bearer credential");
    assert_eq!(
        response
            .headers()
            .get("www-authenticate")
            .and_then(|v| v.to_str().ok()),
        Some("Bearer realm=\"wxgate-admin\"")
    );
    let (status, _) = admin::call(&w.http, &w.gateway, list, None, Some(token)).await;
    assert_eq!(status, 200);
    let body = json!({"openid": "o1", "until": now_unix() + 60});
    let (status, _) =
        admin::call(&w.http, &w.gateway, "/users/block", Some(body), Some(token)).await;
    assert_eq!(status, 200);
    for open in ["/healthz", "/readyz", "/metrics"] {
        let status = w
            .http
            .get(format!("http://{}{open}", w.gateway.admin))
            .send()
            .await
            .expect("get")
            .status();
        assert_eq!(status, 200, "{open} needs no token");
    }
}
