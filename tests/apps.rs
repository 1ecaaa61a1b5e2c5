//! Several mini-programs behind one gateway: `appid` in the login body picks the app, tokens
//! carry it, routes can be limited to some apps, and codes and access_tokens are per app.
// Test code may panic on what it set up, and its helpers are `pub` for the test files.
#![allow(clippy::unwrap_used, clippy::expect_used, unreachable_pub)]

mod support;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use serde_json::{json, Value};
use support::{client, ConfigBuilder, RunningGateway, Upstream, Wechat, APPID, APP_SECRET};
use wxgate::devtools::mock_wechat::{MockOptions, MockWechat};

const OTHER: &str = "wx00000000000000b2";
const OTHER_SECRET: &str = "second-app-secret";

struct Two {
    wechat: Wechat,
    upstream: Upstream,
    gateway: RunningGateway,
    http: reqwest::Client,
}

impl Two {
    async fn start() -> Self {
        let wechat = Wechat::start_with(MockOptions {
            apps: vec![
                (APPID.into(), APP_SECRET.into()),
                (OTHER.into(), OTHER_SECRET.into()),
            ],
            slow_delay: std::time::Duration::from_secs(3),
        })
        .await;
        let upstream = Upstream::start().await;
        let mut config = ConfigBuilder::new(&wechat.base(), &upstream.base());
        config.wechat_extra =
            "[wechat.relay]\nenabled = true\nallow = [\"/cgi-bin/message/subscribe/send\"]\n"
                .into();
        config.routes += &format!(
            "[[routes]]\nprefix = \"/first-only\"\nupstream = \"{}\"\napps = [\"{APPID}\"]\n",
            upstream.base()
        );
        let text = config.text().replacen(
            "[auth]\n",
            &format!("[[wechat.apps]]\nappid = \"{OTHER}\"\nsecret = \"{OTHER_SECRET}\"\n[auth]\n"),
            1,
        );
        let gateway = RunningGateway::start(&text).await;
        Self {
            wechat,
            upstream,
            gateway,
            http: client(),
        }
    }

    async fn login(&self, body: Value) -> (u16, Value) {
        let response = self
            .http
            .post(self.gateway.url("/auth/login"))
            .json(&body)
            .send()
            .await
            .expect("login");
        let status = response.status().as_u16();
        (status, response.json().await.unwrap_or(Value::Null))
    }

    async fn get(&self, path: &str, token: &Value) -> u16 {
        self.http
            .get(self.gateway.url(path))
            .bearer_auth(token.as_str().expect("token"))
            .send()
            .await
            .expect("get")
            .status()
            .as_u16()
    }
}

fn claims(token: &Value) -> Value {
    let payload = token
        .as_str()
        .and_then(|t| t.split('.').nth(1))
        .expect("payload");
    serde_json::from_slice(&URL_SAFE_NO_PAD.decode(payload).expect("b64")).expect("json")
}

#[tokio::test]
async fn the_login_body_picks_the_app_and_the_token_carries_it_upstream() {
    let two = Two::start().await;
    let (status, first) = two.login(json!({"code": "shared1"})).await;
    assert_eq!(status, 200, "no appid: the first app");
    assert_eq!(claims(&first["access_token"])["appid"], APPID);

    let (status, second) = two.login(json!({"code": "shared1", "appid": OTHER})).await;
    assert_eq!(status, 200, "codes are per app: {second}");
    assert_eq!(claims(&second["access_token"])["appid"], OTHER);
    assert_eq!(
        second["openid"].as_str(),
        Some(MockWechat::openid_for(OTHER, "shared1").as_str())
    );
    let (status, again) = two.login(json!({"code": "shared1", "appid": OTHER})).await;
    assert_eq!((status, again["error"].as_str()), (400, Some("code_used")));

    assert_eq!(two.get("/api/x", &second["access_token"]).await, 200);
    let seen = two.upstream.last();
    assert_eq!(seen.one("x-appid"), Some(OTHER));
    assert_eq!(seen.one("x-openid"), second["openid"].as_str());
}

#[tokio::test]
async fn a_route_limited_to_one_app_refuses_the_others_tokens() {
    let two = Two::start().await;
    let (_, first) = two.login(json!({"code": "lim1", "appid": APPID})).await;
    let (_, second) = two.login(json!({"code": "lim1", "appid": OTHER})).await;
    assert_eq!(two.get("/first-only/x", &first["access_token"]).await, 200);
    assert_eq!(two.get("/first-only/x", &second["access_token"]).await, 403);
    assert_eq!(two.upstream.count(), 1);
}

#[tokio::test]
async fn each_app_has_its_own_access_token() {
    let two = Two::start().await;
    let relay = |appid: &str| {
        two.http
            .post(format!(
                "http://{}/wechat/cgi-bin/message/subscribe/send?appid={appid}",
                two.gateway.admin
            ))
            .json(&json!({}))
            .send()
    };
    for appid in [APPID, OTHER, APPID, OTHER] {
        let answer: Value = relay(appid)
            .await
            .expect("relay")
            .json()
            .await
            .expect("json");
        assert_eq!(answer["errcode"], 0, "{appid}: {answer}");
    }
    assert_eq!(
        two.wechat.mock.calls("/cgi-bin/stable_token"),
        2,
        "one token per app, each fetched once"
    );
}
