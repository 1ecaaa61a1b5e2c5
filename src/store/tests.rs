//! The store's contract on the embedded backend: single-use codes, rotation with reuse
//! detection, revocation watches, phones and claims kept, and per user: the session
//! index, user revocation and login blocks. The Redis backend is held to the same
//! contract over HTTP in `tests/redis_store.rs` and `tests/redis_modes/`.

use super::*;
use crate::secret::Secret;

fn session(sid: &str) -> Session {
    session_of(sid, "o1", "wx1")
}

fn session_of(sid: &str, openid: &str, appid: &str) -> Session {
    Session {
        sid: sid.into(),
        openid: openid.into(),
        unionid: None,
        appid: appid.into(),
        session_key: Secret::new("k"),
        expires_at: now_unix() + 3600,
        claims: Ext::new(),
        phone: None,
        created_at: now_unix(),
        refreshed_at: None,
    }
}

/// The refresh token named `name` of session `sid`.
fn token(sid: &str, name: &str) -> RefreshKey {
    RefreshKey {
        sid: sid.into(),
        digest: digest(&[sid.as_bytes(), name.as_bytes()]),
    }
}

/// Spends `old` for `new`; both times are `exp`.
fn renewal<'a>(old: &'a RefreshKey, new: &'a RefreshKey, exp: i64) -> Renewal<'a> {
    Renewal {
        old,
        new,
        expires_at: exp,
        revoke_until: exp,
    }
}

#[tokio::test]
async fn a_code_is_claimed_once() {
    let store = Store::memory();
    assert!(store.claim_code("wx1", "c1").await.unwrap_or(false));
    assert!(!store.claim_code("wx1", "c1").await.unwrap_or(true));
    assert!(
        store.claim_code("wx2", "c1").await.unwrap_or(false),
        "codes are per app"
    );
}

#[tokio::test]
async fn rotation_spends_the_old_token_and_replay_revokes_the_session() {
    let store = Store::memory();
    let (r1, r2, r3) = (token("s1", "r1"), token("s1", "r2"), token("s1", "r3"));
    store.create(&session("s1"), &r1).await.ok();
    let exp = now_unix() + 7200;
    assert!(
        matches!(store.rotate(renewal(&r1, &r2, exp)).await, Ok(Rotation::Rotated(s)) if s.sid == "s1" && s.refreshed_at.is_some())
    );
    assert!(matches!(
        store.rotate(renewal(&r1, &r3, exp)).await,
        Ok(Rotation::Reused { .. })
    ));
    assert!(store.is_revoked("s1"));
    assert!(matches!(
        store.rotate(renewal(&r2, &r3, exp)).await,
        Ok(Rotation::Invalid)
    ));
}

/// Whether `watch` has been told its session is revoked, without waiting for it.
async fn fired(watch: &RevocationWatch) -> bool {
    tokio::time::timeout(Duration::ZERO, watch.revoked())
        .await
        .is_ok()
}

#[tokio::test]
async fn a_watch_hears_its_sessions_revocation_whenever_it_comes() {
    let store = Store::memory();
    let (before, other) = (store.watch_revocation("s1"), store.watch_revocation("s2"));
    assert!(!fired(&before).await);
    store.revoke("s1", now_unix() + 60).await.ok();
    assert!(fired(&before).await, "a revocation after the watch began");
    assert!(!fired(&other).await, "another session's watch");
    let after = store.watch_revocation("s1");
    assert!(fired(&after).await, "a watch begun after the revocation");
    let replayed = store.watch_revocation("s2");
    let (w1, w2, w3) = (token("s2", "w1"), token("s2", "w2"), token("s2", "w3"));
    store.create(&session("s2"), &w1).await.ok();
    let exp = now_unix() + 60;
    store.rotate(renewal(&w1, &w2, exp)).await.ok();
    store.rotate(renewal(&w1, &w3, exp)).await.ok();
    assert!(
        fired(&replayed).await,
        "a replayed refresh token revokes too"
    );
}

#[tokio::test]
async fn unknown_refresh_tokens_are_invalid() {
    let store = Store::memory();
    let r = store
        .rotate(renewal(&token("s", "x"), &token("s", "y"), 0))
        .await;
    assert!(matches!(r, Ok(Rotation::Invalid)));
}

#[tokio::test]
async fn a_phone_is_set_on_a_live_session_only() {
    let store = Store::memory();
    let mut with_claims = session("s1");
    with_claims
        .claims
        .insert("uid".into(), serde_json::json!(42));
    store.create(&with_claims, &token("s1", "r1")).await.ok();
    assert!(matches!(
        store.set_phone("s1", "+86 13800138000").await,
        Ok(true)
    ));
    let stored = store.session("s1").await.ok().flatten();
    assert_eq!(
        stored.as_ref().and_then(|s| s.phone.as_deref()),
        Some("+86 13800138000")
    );
    assert_eq!(
        stored.map(|s| s.claims),
        Some(with_claims.claims.clone()),
        "the claims are kept"
    );
    assert!(matches!(store.set_phone("gone", "1").await, Ok(false)));
    assert!(
        matches!(store.session("gone").await, Ok(None)),
        "setting a phone never creates a session"
    );
    store.revoke("s1", now_unix() + 60).await.ok();
    assert!(matches!(store.set_phone("s1", "2").await, Ok(false)));
}

#[tokio::test]
async fn rotation_keeps_claims_and_phone() {
    let store = Store::memory();
    let mut s = session("s2");
    s.claims.insert("role".into(), serde_json::json!("admin"));
    let (r1, r2) = (token("s2", "p1"), token("s2", "p2"));
    store.create(&s, &r1).await.ok();
    assert!(matches!(
        store.set_phone("s2", "13800138000").await,
        Ok(true)
    ));
    let exp = now_unix() + 7200;
    let Ok(Rotation::Rotated(renewed)) = store.rotate(renewal(&r1, &r2, exp)).await else {
        panic!("rotation failed");
    };
    assert_eq!(renewed.expires_at, exp);
    assert_eq!(renewed.claims, s.claims);
    assert_eq!(renewed.phone.as_deref(), Some("13800138000"));
}

fn sids(sessions: &[Session]) -> Vec<&str> {
    sessions.iter().map(|s| s.sid.as_str()).collect()
}

#[tokio::test]
async fn a_users_sessions_are_listed_and_revoked_together_per_app_or_in_all() {
    let store = Store::memory();
    let mut with_union = session_of("a1", "o1", "wx1");
    with_union.unionid = Some("u1".into());
    for (s, name) in [
        (with_union, "a1"),
        (session_of("a2", "o1", "wx1"), "a2"),
        (session_of("b1", "o1", "wx2"), "b1"),
        (session_of("x1", "o2", "wx1"), "x1"),
    ] {
        let sid = s.sid.clone();
        assert_eq!(
            store.create(&s, &token(&sid, name)).await.ok(),
            Some(Admission::Created)
        );
    }
    let all = store
        .sessions_of(User::Openid("o1"), None)
        .await
        .unwrap_or_default();
    assert_eq!(sids(&all), ["a1", "a2", "b1"]);
    let wx2 = store
        .sessions_of(User::Openid("o1"), Some("wx2"))
        .await
        .unwrap_or_default();
    assert_eq!(sids(&wx2), ["b1"]);
    let by_union = store
        .sessions_of(User::Unionid("u1"), None)
        .await
        .unwrap_or_default();
    assert_eq!(sids(&by_union), ["a1"]);

    let until = now_unix() + 60;
    let ended = store
        .revoke_user(User::Openid("o1"), Some("wx1"), until)
        .await
        .unwrap_or_default();
    assert_eq!(ended, ["a1", "a2"]);
    assert!(store.is_revoked("a1") && store.is_revoked("a2") && !store.is_revoked("b1"));
    let exp = now_unix() + 60;
    assert!(
        matches!(
            store
                .rotate(renewal(&token("a2", "a2"), &token("a2", "next"), exp))
                .await,
            Ok(Rotation::Invalid)
        ),
        "a revoked user's refresh token is dead"
    );
    let left = store
        .sessions_of(User::Openid("o1"), None)
        .await
        .unwrap_or_default();
    assert_eq!(sids(&left), ["b1"]);
    let ended = store
        .revoke_user(User::Openid("o1"), None, until)
        .await
        .unwrap_or_default();
    assert_eq!(
        ended,
        ["b1"],
        "already revoked sessions are not counted again"
    );
    assert_eq!(
        sids(
            &store
                .sessions_of(User::Openid("o2"), None)
                .await
                .unwrap_or_default()
        ),
        ["x1"],
        "another user is untouched"
    );
}

#[tokio::test]
async fn a_block_refuses_logins_and_refreshes_until_it_ends_or_is_lifted() {
    let store = Store::memory();
    let live = session_of("s1", "o1", "wx1");
    store.create(&live, &token("s1", "r1")).await.ok();
    let until = now_unix() + 600;
    store.block("o1", "wx1", until).await.ok();
    assert_eq!(
        store
            .create(&session_of("s2", "o1", "wx1"), &token("s2", "r"))
            .await
            .ok(),
        Some(Admission::Blocked { until })
    );
    assert!(
        matches!(store.session("s2").await, Ok(None)),
        "no session was made"
    );
    assert_eq!(
        store
            .create(&session_of("s3", "o1", "wx2"), &token("s3", "r"))
            .await
            .ok(),
        Some(Admission::Created),
        "a block in one app leaves the others"
    );
    let exp = now_unix() + 60;
    assert!(matches!(
        store.rotate(renewal(&token("s1", "r1"), &token("s1", "r2"), exp)).await,
        Ok(Rotation::Blocked { until: u }) if u == until
    ));
    assert_eq!(store.unblock("o1", "wx1").await.ok(), Some(true));
    assert_eq!(store.unblock("o1", "wx1").await.ok(), Some(false));
    assert!(
        matches!(
            store
                .rotate(renewal(&token("s1", "r1"), &token("s1", "r2"), exp))
                .await,
            Ok(Rotation::Rotated(_))
        ),
        "a refused refresh left its token unspent"
    );

    store.block("o1", EVERY_APP, now_unix() + 600).await.ok();
    assert!(matches!(
        store
            .create(&session_of("s4", "o1", "wx2"), &token("s4", "r"))
            .await,
        Ok(Admission::Blocked { .. })
    ));
    store.block("o1", EVERY_APP, now_unix() - 1).await.ok();
    assert_eq!(
        store
            .create(&session_of("s5", "o1", "wx2"), &token("s5", "r"))
            .await
            .ok(),
        Some(Admission::Created),
        "a block in the past has ended"
    );
}
