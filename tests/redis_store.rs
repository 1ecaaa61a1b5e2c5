//! Several instances sharing one real `redis-server`: sessions, single-use codes, atomic
//! refresh rotation, revocation reaching every instance (and its WebSocket tunnels), Redis
//! failing and returning, and the login hook's claims and the phone number kept in the
//! shared session.
// Test code may panic on what it set up, and its helpers are `pub` for the test files.
#![allow(clippy::unwrap_used, clippy::expect_used, unreachable_pub)]

mod support;

use std::time::{Duration, Instant};

use redis::AsyncCommands;
use serde_json::{json, Value};
use support::hook::{Answer, Hook};
use support::instances::{Instances, PROPAGATION};
use support::redis::Redis;
use support::websocket::{echoes, upgrade, WsUpstream};
use support::{ConfigBuilder, RunningGateway};

/// Two instances sharing one `redis-server`, and the key prefix of their keys.
struct Cluster {
    redis: Redis,
    prefix: String,
    pair: Instances,
}

impl std::ops::Deref for Cluster {
    type Target = Instances;
    fn deref(&self) -> &Instances {
        &self.pair
    }
}

impl Cluster {
    async fn start(test: &str) -> Option<Self> {
        Self::start_with(test, |_| {}).await
    }

    /// Two instances on one config, adjusted by `adjust` before the Redis store is set.
    async fn start_with(test: &str, adjust: impl FnOnce(&mut ConfigBuilder)) -> Option<Self> {
        let redis = Redis::start(test)?;
        let prefix = format!("t{}:", support::unique());
        let store = format!(
            "[store]\nbackend = \"redis\"\nurl = \"{}\"\nkey_prefix = \"{prefix}\"\ntimeout = \"300ms\"\nconnect_timeout = \"300ms\"\n",
            redis.url(),
        );
        let pair = Instances::start(&store, adjust).await;
        Some(Self {
            redis,
            prefix,
            pair,
        })
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_made_on_one_instance_works_on_the_other_and_logout_reaches_both() {
    let Some(c) = Cluster::start("a_session_made_on_one_instance_works_on_the_other").await else {
        return;
    };
    let login = c.login(&c.a, "two1").await;
    assert_eq!(c.call(&c.b, &login["access_token"]).await, 200);
    assert_eq!(
        c.upstream.last().one("x-openid"),
        login["openid"].as_str(),
        "B injects the identity of a token minted by A"
    );

    let (status, renewed) = c.refresh(&c.b, &login["refresh_token"]).await;
    assert_eq!(
        status, 200,
        "refresh on B of a session made on A: {renewed}"
    );
    assert_eq!(renewed["session_id"], login["session_id"]);
    let (status, _) = c.refresh(&c.a, &login["refresh_token"]).await;
    assert_eq!(status, 400, "the spent refresh token is spent on A too");

    // That replay revoked the session everywhere; start a fresh one for the logout.
    let login = c.login(&c.b, "two2").await;
    let (status, renewed) = c.refresh(&c.a, &login["refresh_token"]).await;
    assert_eq!(status, 200);
    assert_eq!(c.call(&c.b, &renewed["access_token"]).await, 200);
    assert_eq!(c.logout(&c.a, &renewed["access_token"]).await, 204);
    let delay = c
        .until_refused(&c.b, &renewed["access_token"], PROPAGATION)
        .await;
    eprintln!("revocation reached the other instance after {delay:?}");
    assert!(delay.is_some(), "B still accepts a token logged out on A");
    assert_eq!(
        c.call(&c.b, &login["access_token"]).await,
        401,
        "every access token of the session is refused"
    );
    let (status, _) = c.refresh(&c.b, &renewed["refresh_token"]).await;
    assert_eq!(status, 400, "the session's refresh token died with it");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refresh_replayed_on_another_instance_revokes_the_session_there_too() {
    let Some(c) = Cluster::start("a_refresh_replayed_on_another_instance").await else {
        return;
    };
    let login = c.login(&c.a, "replay1").await;
    let (status, renewed) = c.refresh(&c.a, &login["refresh_token"]).await;
    assert_eq!(status, 200);
    assert_eq!(c.call(&c.a, &renewed["access_token"]).await, 200);
    let (status, _) = c.refresh(&c.b, &login["refresh_token"]).await;
    assert_eq!(status, 400, "replay on B");
    assert!(
        c.until_refused(&c.a, &renewed["access_token"], PROPAGATION)
            .await
            .is_some(),
        "A learns that B revoked the session"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_logout_on_one_instance_closes_the_sessions_tunnel_on_the_other() {
    let upstream = WsUpstream::echo().await;
    let route = format!(
        "[[routes]]\nprefix = \"/ws\"\nupstream = \"http://{}\"\n",
        upstream.addr
    );
    let Some(c) = Cluster::start_with("a_logout_closes_a_tunnel_on_the_other", |config| {
        config.routes.push_str(&route)
    })
    .await
    else {
        return;
    };
    let login = c.login(&c.a, "tunnel1").await;
    let auth = format!(
        "Authorization: Bearer {}",
        login["access_token"].as_str().expect("at")
    );
    let (mut tunnel, reply) = upgrade(c.b.addr, "/ws/chat", &[&auth]).await;
    assert_eq!(reply.map(|r| r.status), Some(101));
    assert!(echoes(&mut tunnel, b"hello").await);
    assert_eq!(c.logout(&c.a, &login["access_token"]).await, 204);
    // The feed's propagation, then at most a second for the tunnel to hear it.
    let closed = tunnel
        .closes_within(PROPAGATION + Duration::from_secs(1))
        .await;
    assert!(closed, "B kept a tunnel open for a session logged out on A");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_refreshes_of_one_token_on_two_instances_have_one_winner() {
    let Some(c) = Cluster::start("concurrent_refreshes").await else {
        return;
    };
    for round in 0..20 {
        let login = c.login(&c.a, &format!("race{round}")).await;
        let token = &login["refresh_token"];
        let ((sa, _), (sb, _)) = tokio::join!(c.refresh(&c.a, token), c.refresh(&c.b, token));
        let mut statuses = [sa, sb];
        statuses.sort_unstable();
        assert_eq!(statuses, [200, 400], "round {round}: exactly one winner");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_login_code_is_exchanged_once_across_instances() {
    let Some(c) = Cluster::start("a_login_code_is_exchanged_once").await else {
        return;
    };
    for round in 0..10 {
        let body = json!({ "code": format!("once{round}") });
        let ((sa, _), (sb, _)) = tokio::join!(
            c.post(&c.a, "/auth/login", body.clone()),
            c.post(&c.b, "/auth/login", body.clone())
        );
        let mut statuses = [sa, sb];
        statuses.sort_unstable();
        assert_eq!(statuses[0], 200, "round {round}");
        assert_ne!(statuses[1], 200, "round {round}: the code worked twice");
    }
    assert_eq!(c.wechat.logins(), 10, "WeChat saw each code once");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_instance_learns_earlier_revocations() {
    let Some(c) = Cluster::start("a_new_instance_learns_earlier_revocations").await else {
        return;
    };
    let login = c.login(&c.a, "late1").await;
    assert_eq!(c.logout(&c.a, &login["access_token"]).await, 204);
    let late = RunningGateway::start(&c.config).await;
    assert!(
        c.until_refused(&late, &login["access_token"], PROPAGATION)
            .await
            .is_some(),
        "an instance started after the logout refuses the token"
    );
}

/// The ids of the connections subscribed to a channel, and the last command of each.
async fn subscribers(conn: &mut redis::aio::MultiplexedConnection) -> Vec<(String, String)> {
    let list: String = redis::cmd("CLIENT")
        .arg("LIST")
        .arg("TYPE")
        .arg("pubsub")
        .query_async(conn)
        .await
        .expect("client list");
    let field = |line: &str, key: &str| {
        line.split_whitespace()
            .find_map(|w| w.strip_prefix(key))
            .unwrap_or_default()
            .to_owned()
    };
    list.lines()
        .map(|line| (field(line, "id="), field(line, "cmd=")))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_revocation_feed_survives_its_own_keepalive_ping() {
    let Some(c) = Cluster::start("the_revocation_feed_survives_its_own_keepalive_ping").await
    else {
        return;
    };
    let mut conn = inspect(&c).await;
    let first = subscribers(&mut conn).await;
    assert_eq!(first.len(), 2, "one subscription per instance: {first:?}");
    // Each instance pings its subscription every 5 s. Wait until both first connections
    // have sent their ping, or one of them is gone: Redis answers a subscribed PING with
    // ["pong", ""], and a feed that refuses that answer drops its connection for a new one.
    let deadline = Instant::now() + Duration::from_secs(15);
    let after = loop {
        let now = subscribers(&mut conn).await;
        let still: Vec<_> = first
            .iter()
            .filter_map(|(id, _)| now.iter().find(|(other, _)| other == id))
            .collect();
        if still.len() < first.len() || still.iter().all(|(_, cmd)| cmd == "ping") {
            break now;
        }
        assert!(Instant::now() < deadline, "no ping within 15 s: {now:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    // A revocation still crosses within the bound, and afterwards the same connections
    // are still the ones subscribed.
    let login = c.login(&c.a, "pinged1").await;
    assert_eq!(c.logout(&c.a, &login["access_token"]).await, 204);
    assert!(c
        .until_refused(&c.b, &login["access_token"], PROPAGATION)
        .await
        .is_some());
    let ids = |list: &[(String, String)]| list.iter().map(|(id, _)| id.clone()).collect::<Vec<_>>();
    let mut last = ids(&subscribers(&mut conn).await);
    let mut expected = ids(&first);
    last.sort();
    expected.sort();
    assert_eq!(
        last, expected,
        "the subscriptions were replaced after a ping ({after:?})"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_redis_down_tokens_still_work_and_session_calls_fail_fast_then_recover() {
    let Some(mut c) = Cluster::start("with_redis_down").await else {
        return;
    };
    let login = c.login(&c.a, "down1").await;
    assert_eq!(c.ready(&c.a).await, 200);
    c.redis.kill();

    for gw in [&c.a, &c.b] {
        assert_eq!(
            c.call(gw, &login["access_token"]).await,
            200,
            "proxying needs no Redis"
        );
    }
    let started = Instant::now();
    let (status, body) = c
        .post(&c.a, "/auth/login", json!({ "code": "down2" }))
        .await;
    assert_eq!(status, 503, "{body}");
    assert_eq!(body["error"], "store_unavailable");
    let (status, body) = c.refresh(&c.b, &login["refresh_token"]).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (503, Some("store_unavailable"))
    );
    assert_eq!(c.logout(&c.a, &login["access_token"]).await, 503);
    assert_eq!(c.ready(&c.b).await, 503);
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "store failures answer within the store timeout, took {:?}",
        started.elapsed()
    );

    c.redis.restart();
    let deadline = Instant::now() + Duration::from_secs(10);
    while c.ready(&c.a).await != 200 || c.ready(&c.b).await != 200 {
        assert!(Instant::now() < deadline, "readiness did not recover");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // Redis restarted empty: sessions from before are gone, new ones work everywhere.
    let login = c.login(&c.b, "down3").await;
    assert_eq!(c.call(&c.a, &login["access_token"]).await, 200);
    // Ready means every pooled connection works again (each fails once after a restart
    // until it reconnects): the calls that follow readiness all succeed, on both.
    let mut renewed = login.clone();
    for gw in [&c.a, &c.a, &c.a, &c.b, &c.b, &c.b] {
        let (status, body) = c.refresh(gw, &renewed["refresh_token"]).await;
        assert_eq!(status, 200, "a refresh right after readiness: {body}");
        renewed = body;
    }
    // The revocation feed reconnects in the background; give it the same bound.
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut delay = None;
    assert_eq!(c.logout(&c.b, &renewed["access_token"]).await, 204);
    while delay.is_none() && Instant::now() < deadline {
        delay = c
            .until_refused(&c.a, &renewed["access_token"], PROPAGATION)
            .await;
    }
    assert!(
        delay.is_some(),
        "revocation reaches A again after Redis came back"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_instance_starts_while_redis_is_down_and_connects_when_it_comes_up() {
    let Some(mut c) = Cluster::start("an_instance_starts_while_redis_is_down").await else {
        return;
    };
    c.redis.kill();
    let late = RunningGateway::start(&c.config).await;
    assert_eq!(c.ready(&late).await, 503);
    let token = support::mint("o-early", 300);
    let status = c
        .http
        .get(late.url("/api/x"))
        .bearer_auth(&token)
        .send()
        .await
        .expect("call")
        .status();
    assert_eq!(status, 200, "valid tokens are served without Redis");
    c.redis.restart();
    let deadline = Instant::now() + Duration::from_secs(10);
    while c.ready(&late).await != 200 {
        assert!(Instant::now() < deadline, "readiness did not recover");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let login = c.login(&late, "up1").await;
    assert_eq!(c.call(&c.a, &login["access_token"]).await, 200);
}

/// A direct connection to the cluster's Redis, to look at what the gateways stored.
async fn inspect(c: &Cluster) -> redis::aio::MultiplexedConnection {
    redis::Client::open(c.redis.url())
        .expect("url")
        .get_multiplexed_async_connection()
        .await
        .expect("connect")
}

fn payload(token: &Value) -> Value {
    use base64::Engine;
    let part = token
        .as_str()
        .and_then(|t| t.split('.').nth(1))
        .expect("payload");
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(part)
        .expect("b64");
    serde_json::from_slice(&bytes).expect("json")
}

fn with_hook(hook: &Hook) -> impl FnOnce(&mut ConfigBuilder) + '_ {
    |config| {
        config.auth_tables = format!(
            "{}[auth.claim_headers]\nuid = \"X-User-Id\"\nphone = \"X-Phone\"\n",
            hook.config("1s")
        );
        config.routes.push_str(&format!(
            "[[routes]]\nprefix = \"/pay\"\nupstream = \"{}\"\nauth = \"phone\"\n",
            config.upstream
        ));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hook_claims_and_a_phone_set_on_one_instance_reach_tokens_minted_by_the_other() {
    let hook = Hook::start(Answer::claims(json!({"uid": 42, "tier": "gold"}))).await;
    let Some(c) = Cluster::start_with("hook_claims_and_a_phone", with_hook(&hook)).await else {
        return;
    };
    let login = c.login(&c.a, "hookredis1").await;
    let sid = login["session_id"].as_str().expect("sid").to_string();
    let mut redis = inspect(&c).await;
    // `{sid}` is the key's cluster hash tag.
    let session_key = format!("{}session:{{{sid}}}", c.prefix);
    let stored: Option<String> = redis.hget(&session_key, "claims").await.expect("hget");
    let stored: Value = serde_json::from_str(&stored.expect("claims field")).expect("json");
    assert_eq!(stored, json!({"uid": 42, "tier": "gold"}));

    let (status, renewed) = c.refresh(&c.b, &login["refresh_token"]).await;
    assert_eq!(status, 200, "{renewed}");
    assert_eq!(
        payload(&renewed["access_token"])["ext"],
        stored,
        "B mints A's claims"
    );
    assert!(payload(&renewed["access_token"]).get("phone").is_none());

    // What `/auth/phone` will do: record the phone on the shared session.
    let phone = "+86 138-0013-8000";
    assert!(c.a.state.store.set_phone(&sid, phone).await.expect("store"));
    assert!(!c
        .a
        .state
        .store
        .set_phone("no-such-session", phone)
        .await
        .expect("store"));
    let created: bool = redis
        .exists(format!("{}session:{{no-such-session}}", c.prefix))
        .await
        .expect("exists");
    assert!(!created, "set_phone never creates a session");
    let from_b =
        c.b.state
            .store
            .session(&sid)
            .await
            .expect("store")
            .expect("session");
    assert_eq!(from_b.phone.as_deref(), Some(phone));
    assert_eq!(from_b.claims, stored.as_object().cloned().expect("object"));

    let (status, renewed) = c.refresh(&c.b, &renewed["refresh_token"]).await;
    assert_eq!(status, 200, "{renewed}");
    let claims = payload(&renewed["access_token"]);
    assert_eq!(
        (claims["phone"].as_str(), &claims["ext"]),
        (Some(phone), &stored)
    );
    let status = c
        .http
        .get(c.a.url("/pay/orders"))
        .bearer_auth(renewed["access_token"].as_str().expect("token"))
        .send()
        .await
        .expect("call")
        .status();
    assert_eq!(status, 200, "a token with the phone passes a phone route");
    let seen = c.upstream.last();
    assert_eq!(
        (seen.one("x-phone"), seen.one("x-user-id")),
        (Some(phone), Some("42"))
    );
    assert_eq!(hook.requests().len(), 1, "only the login called the hook");

    // A revoked session takes no phone.
    assert_eq!(c.logout(&c.a, &renewed["access_token"]).await, 204);
    assert!(!c.b.state.store.set_phone(&sid, phone).await.expect("store"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_login_the_hook_denies_or_fails_leaves_no_session_in_redis() {
    let hook = Hook::start(Answer::status(403, "{}")).await;
    let Some(c) = Cluster::start_with("a_login_the_hook_denies", with_hook(&hook)).await else {
        return;
    };
    let mut redis = inspect(&c).await;
    let pattern = format!("{}session:*", c.prefix);
    let (status, body) = c
        .post(&c.a, "/auth/login", json!({ "code": "deny1" }))
        .await;
    assert_eq!(
        (status, body["error"].as_str()),
        (403, Some("login_denied"))
    );
    hook.answer(Answer::status(503, "{}"));
    let (status, body) = c
        .post(&c.b, "/auth/login", json!({ "code": "deny2" }))
        .await;
    assert_eq!(
        (status, body["error"].as_str()),
        (502, Some("login_hook_failed"))
    );
    let sessions: Vec<String> = redis.keys(&pattern).await.expect("keys");
    assert!(sessions.is_empty(), "{sessions:?}");

    hook.answer(Answer::status(200, "{}"));
    c.login(&c.a, "deny3").await;
    let sessions: Vec<String> = redis.keys(&pattern).await.expect("keys");
    assert_eq!(sessions.len(), 1);
    let claims: Option<String> = redis.hget(&sessions[0], "claims").await.expect("hget");
    assert_eq!(claims, None, "no claims, no field");
}
