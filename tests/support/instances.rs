//! Two gateway instances on one configuration (and so one shared store), with the calls a
//! test makes on either: login, refresh, logout, a proxied call, readiness, and the admin
//! endpoints.

use std::time::{Duration, Instant};

use serde_json::{json, Value};

use super::{client, ConfigBuilder, RunningGateway, Upstream, Wechat};

/// The longest a revocation may take to reach another instance.
pub const PROPAGATION: Duration = Duration::from_secs(1);

pub struct Instances {
    pub wechat: Wechat,
    pub upstream: Upstream,
    pub config: String,
    pub a: RunningGateway,
    pub b: RunningGateway,
    pub http: reqwest::Client,
}

impl Instances {
    /// Two instances on a config adjusted by `adjust`, with `store` as its `[store]` section.
    pub async fn start(store: &str, adjust: impl FnOnce(&mut ConfigBuilder)) -> Self {
        let wechat = Wechat::start().await;
        let upstream = Upstream::start().await;
        let mut config = ConfigBuilder::new(&wechat.base(), &upstream.base());
        adjust(&mut config);
        config.store = store.to_string();
        let config = config.text();
        let a = RunningGateway::start(&config).await;
        let b = RunningGateway::start(&config).await;
        Self {
            wechat,
            upstream,
            config,
            a,
            b,
            http: client(),
        }
    }

    pub async fn post(&self, gw: &RunningGateway, path: &str, body: Value) -> (u16, Value) {
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

    pub async fn login(&self, gw: &RunningGateway, code: &str) -> Value {
        let (status, body) = self.post(gw, "/auth/login", json!({ "code": code })).await;
        assert_eq!(status, 200, "login: {body}");
        body
    }

    pub async fn refresh(&self, gw: &RunningGateway, refresh_token: &Value) -> (u16, Value) {
        self.post(
            gw,
            "/auth/refresh",
            json!({ "refresh_token": refresh_token }),
        )
        .await
    }

    pub async fn logout(&self, gw: &RunningGateway, access: &Value) -> u16 {
        self.http
            .post(gw.url("/auth/logout"))
            .bearer_auth(access.as_str().expect("access token"))
            .send()
            .await
            .expect("logout")
            .status()
            .as_u16()
    }

    pub async fn call(&self, gw: &RunningGateway, access: &Value) -> u16 {
        self.http
            .get(gw.url("/api/orders"))
            .bearer_auth(access.as_str().expect("access token"))
            .send()
            .await
            .expect("call")
            .status()
            .as_u16()
    }

    pub async fn ready(&self, gw: &RunningGateway) -> u16 {
        self.http
            .get(format!("http://{}/readyz", gw.admin))
            .send()
            .await
            .expect("readyz")
            .status()
            .as_u16()
    }

    /// Polls until `gw`'s `/readyz` is 200; panics after `limit`.
    pub async fn until_ready(&self, gw: &RunningGateway, limit: Duration) {
        let deadline = Instant::now() + limit;
        while self.ready(gw).await != 200 {
            assert!(
                Instant::now() < deadline,
                "readiness did not come within {limit:?}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Polls until `gw` refuses `access`; returns how long that took (None: not within `limit`).
    pub async fn until_refused(
        &self,
        gw: &RunningGateway,
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
