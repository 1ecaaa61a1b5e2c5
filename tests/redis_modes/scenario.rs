//! What two instances on a shared Redis must do alike in every mode: a session made on one
//! used and refreshed on the other, a logout refused by the other within a second, login
//! codes exchanged once across both, one winner when both refresh one token at once, and
//! the operator's user revocation and blocks reaching both.

use serde_json::json;
use wxgate::tokens::now_unix;

use crate::support::admin;
use crate::support::instances::{Instances, PROPAGATION};

/// Every check of the shared-session contract, on `p`; `tag` keeps codes unique per mode.
pub async fn sessions_are_shared(p: &Instances, tag: &str) {
    let login = p.login(&p.a, &format!("{tag}-share1")).await;
    assert_eq!(
        p.call(&p.b, &login["access_token"]).await,
        200,
        "A's token on B"
    );
    let (status, renewed) = p.refresh(&p.b, &login["refresh_token"]).await;
    assert_eq!(
        status, 200,
        "refresh on B of a session made on A: {renewed}"
    );
    assert_eq!(renewed["session_id"], login["session_id"]);
    assert_eq!(
        p.call(&p.a, &renewed["access_token"]).await,
        200,
        "B's token on A"
    );
    let (status, _) = p.refresh(&p.a, &login["refresh_token"]).await;
    assert_eq!(status, 400, "the refresh token B spent is spent on A too");

    let login = p.login(&p.b, &format!("{tag}-share2")).await;
    assert_eq!(p.logout(&p.a, &login["access_token"]).await, 204);
    let delay = p
        .until_refused(&p.b, &login["access_token"], PROPAGATION)
        .await;
    eprintln!("{tag}: a logout on A reached B after {delay:?}");
    assert!(delay.is_some(), "{tag}: B accepts a token logged out on A");
    let (status, _) = p.refresh(&p.b, &login["refresh_token"]).await;
    assert_eq!(
        status, 400,
        "the logged-out session's refresh token is dead on B"
    );

    codes_are_exchanged_once(p, tag).await;
    one_refresh_wins(p, tag).await;
}

async fn codes_are_exchanged_once(p: &Instances, tag: &str) {
    let before = p.wechat.logins();
    for round in 0..5 {
        let body = json!({ "code": format!("{tag}-once{round}") });
        let ((sa, _), (sb, _)) = tokio::join!(
            p.post(&p.a, "/auth/login", body.clone()),
            p.post(&p.b, "/auth/login", body.clone())
        );
        let mut statuses = [sa, sb];
        statuses.sort_unstable();
        assert_eq!(
            statuses,
            [200, 400],
            "{tag} round {round}: the code worked once"
        );
    }
    assert_eq!(p.wechat.logins() - before, 5, "WeChat saw each code once");
}

async fn one_refresh_wins(p: &Instances, tag: &str) {
    for round in 0..10 {
        let login = p.login(&p.a, &format!("{tag}-race{round}")).await;
        let token = &login["refresh_token"];
        let ((sa, _), (sb, _)) = tokio::join!(p.refresh(&p.a, token), p.refresh(&p.b, token));
        let mut statuses = [sa, sb];
        statuses.sort_unstable();
        assert_eq!(
            statuses,
            [200, 400],
            "{tag} round {round}: exactly one winner"
        );
    }
}

/// An operator on one instance ends a user's sessions made on both, within a second on
/// both, and a block set on one refuses logins and refreshes on the other. `tag` has no `-`.
pub async fn users_are_revoked_and_blocked_everywhere(p: &Instances, tag: &str) {
    let on_a = p.login(&p.a, &format!("same-{tag}ann-1")).await;
    let on_b = p.login(&p.b, &format!("same-{tag}ann-2")).await;
    let openid = on_a["openid"].as_str().expect("openid").to_string();
    let listed = admin::session_ids(&p.http, &p.b, &format!("openid={openid}")).await;
    let mut expected = vec![
        on_a["session_id"].as_str().expect("sid").to_string(),
        on_b["session_id"].as_str().expect("sid").to_string(),
    ];
    expected.sort();
    assert_eq!(
        listed, expected,
        "{tag}: B lists the sessions made on A and B"
    );

    let answer = admin::revoke(&p.http, &p.a, json!({ "openid": openid })).await;
    assert_eq!(answer["revoked"].as_u64(), Some(2), "{answer}");
    for (gw, name) in [(&p.a, "A"), (&p.b, "B")] {
        for login in [&on_a, &on_b] {
            let delay = p
                .until_refused(gw, &login["access_token"], PROPAGATION)
                .await;
            assert!(
                delay.is_some(),
                "{tag}: {name} accepts a revoked user's token"
            );
        }
    }
    for login in [&on_a, &on_b] {
        let (status, body) = p.refresh(&p.b, &login["refresh_token"]).await;
        assert_eq!(
            (status, body["error"].as_str()),
            (400, Some("invalid_grant"))
        );
    }

    let before = p.login(&p.a, &format!("same-{tag}bea-1")).await;
    let body = json!({ "openid": before["openid"], "until": now_unix() + 600 });
    assert_eq!(
        admin::post(&p.http, &p.b, "/users/block", body).await.0,
        200
    );
    let (status, body) = p
        .post(
            &p.a,
            "/auth/login",
            json!({"code": format!("same-{tag}bea-2")}),
        )
        .await;
    assert_eq!(
        (status, body["error"].as_str()),
        (403, Some("login_denied")),
        "{tag}"
    );
    let (status, body) = p.refresh(&p.a, &before["refresh_token"]).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (403, Some("login_denied")),
        "{tag}"
    );
    let body = json!({ "openid": before["openid"] });
    let (status, answer) = admin::post(&p.http, &p.a, "/users/unblock", body.clone()).await;
    assert_eq!(
        (status, answer["unblocked"].as_bool()),
        (200, Some(true)),
        "{tag}"
    );
    let (_, answer) = admin::post(&p.http, &p.b, "/users/unblock", body).await;
    assert_eq!(
        answer["unblocked"].as_bool(),
        Some(false),
        "{tag}: lifted already"
    );
    let (status, _) = p.refresh(&p.b, &before["refresh_token"]).await;
    assert_eq!(
        status, 200,
        "{tag}: unblocked, the unspent refresh token works"
    );
}
