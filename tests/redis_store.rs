//! Several instances sharing one real `redis-server`: sessions, single-use codes, atomic
//! refresh rotation, revocation reaching every instance, and Redis failing and returning.

mod support;

use std::time::{Duration, Instant};

use serde_json::{json, Value};
use support::redis::Redis;
use support::{client, ConfigBuilder, Gateway, Upstream, Wechat};

/// The longest a revocation may take to reach another instance.
const PROPAGATION: Duration = Duration::from_secs(1);

struct Cluster {
    wechat: Wechat,
    upstream: Upstream,
    redis: Redis,
    config: String,
    a: Gateway,
    b: Gateway,
    http: reqwest::Client,
}

impl Cluster {
    async fn start(test: &str) -> Option<Self> {
        let redis = Redis::start(test)?;
        let wechat = Wechat::start().await;
        let upstream = Upstream::start().await;
        let mut config = ConfigBuilder::new(&wechat.base(), &upstream.base());
        config.store = format!(
            "[store]\nbackend = \"redis\"\nurl = \"{}\"\nkey_prefix = \"t{}:\"\ntimeout = \"300ms\"\nconnect_timeout = \"300ms\"\n",
            redis.url(),
            support::unique()
        );
        let config = config.text();
        let a = Gateway::start(&config).await;
        let b = Gateway::start(&config).await;
        Some(Self {
            wechat,
            upstream,
            redis,
            config,
            a,
            b,
            http: client(),
        })
    }

    async fn post(&self, gw: &Gateway, path: &str, body: Value) -> (u16, Value) {
        let response = self
            .http
            .post(gw.url(path))
            .json(&body)
            .send()
            .await
            .expect("request");
        let status = response.status().as_u16();
        (status, response.json().await.unwrap_or(Value::Null))
    }

    async fn login(&self, gw: &Gateway, code: &str) -> Value {
        let (status, body) = self.post(gw, "/auth/login", json!({ "code": code })).await;
        assert_eq!(status, 200, "login: {body}");
        body
    }

    async fn refresh(&self, gw: &Gateway, refresh_token: &Value) -> (u16, Value) {
        self.post(
            gw,
            "/auth/refresh",
            json!({ "refresh_token": refresh_token }),
        )
        .await
    }

    async fn logout(&self, gw: &Gateway, access: &Value) -> u16 {
        self.http
            .post(gw.url("/auth/logout"))
            .bearer_auth(access.as_str().expect("access token"))
            .send()
            .await
            .expect("logout")
            .status()
            .as_u16()
    }

    async fn call(&self, gw: &Gateway, access: &Value) -> u16 {
        self.http
            .get(gw.url("/api/orders"))
            .bearer_auth(access.as_str().expect("access token"))
            .send()
            .await
            .expect("call")
            .status()
            .as_u16()
    }

    async fn ready(&self, gw: &Gateway) -> u16 {
        self.http
            .get(format!("http://{}/readyz", gw.admin))
            .send()
            .await
            .expect("readyz")
            .status()
            .as_u16()
    }

    /// Polls until `gw` refuses `access`; returns how long that took (None: not within `limit`).
    async fn until_refused(
        &self,
        gw: &Gateway,
        access: &Value,
        limit: Duration,
    ) -> Option<Duration> {
        let start = Instant::now();
        while start.elapsed() < limit {
            if self.call(gw, access).await == 401 {
                return Some(start.elapsed());
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        None
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
    let late = Gateway::start(&c.config).await;
    assert!(
        c.until_refused(&late, &login["access_token"], PROPAGATION)
            .await
            .is_some(),
        "an instance started after the logout refuses the token"
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
    let (status, renewed) = c.refresh(&c.a, &login["refresh_token"]).await;
    assert_eq!(status, 200);
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
    let late = Gateway::start(&c.config).await;
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
