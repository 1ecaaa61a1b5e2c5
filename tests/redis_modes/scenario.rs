//! What two instances on a shared Redis must do alike in every mode: a session made on one
//! used and refreshed on the other, a logout refused by the other within a second, login
//! codes exchanged once across both, and one winner when both refresh one token at once.

use serde_json::json;

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
