//! The WeChat API client: `jscode2session`, the managed `access_token` ([`token`]) and the
//! calls made with it ([`calls`]), with defensive parsing of whatever comes back.
//!
//! WeChat reports errors inside HTTP 200 bodies, sometimes as `text/plain`, with `errcode`
//! as a number or a string. The request URL carries the app secret, so no error built here
//! ever contains it: reqwest errors are stripped of their URL before anything sees them.

use std::time::Duration;

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use serde_json::Value;

use crate::error::GatewayError;
use crate::secret::Secret;
use crate::settings::{App, WechatSettings};
use crate::tokens::is_safe_id;
use gate::Outcome;

mod breaker;
mod calls;
mod gate;
mod relayed;
mod token;

pub(crate) use calls::KeyVerdict;
pub(crate) use gate::Api;
pub(crate) use relayed::{RelayAnswer, RelayCall};
pub use token::AccessTokens;

/// WeChat answers are small; anything bigger is not a real answer.
const MAX_ANSWER_BYTES: usize = 64 * 1024;

/// What a successful code exchange yields.
#[derive(Debug)]
pub struct WxSession {
    pub openid: String,
    pub unionid: Option<String>,
    pub session_key: Secret,
}

pub struct WechatClient {
    http: reqwest::Client,
    api_base: String,
    timeout: Duration,
    /// One managed `access_token` per app.
    pub tokens: AccessTokens,
    /// The cap on calls in flight and the circuit breaker, per WeChat API.
    gates: gate::Gates,
    /// What `checksession` last said about each session's `session_key`.
    verdicts: calls::KeyVerdicts,
}

impl WechatClient {
    pub fn new(settings: &WechatSettings) -> Result<Self, reqwest::Error> {
        let timeout = settings.timeout;
        let http = reqwest::Client::builder()
            // A redirect would send the secret-bearing query somewhere else.
            .redirect(reqwest::redirect::Policy::none())
            .connect_timeout(timeout)
            .pool_idle_timeout(Duration::from_secs(60))
            .build()?;
        Ok(Self {
            http,
            api_base: settings.api_base.clone(),
            timeout,
            tokens: AccessTokens::default(),
            gates: gate::Gates::new(settings.gate, timeout),
            verdicts: calls::KeyVerdicts::default(),
        })
    }

    /// Exchanges a login code. Called at most once per code (the caller's gate ensures it)
    /// and never retried: WeChat may have spent the code even when the answer was lost.
    pub async fn jscode2session(&self, app: &App, code: &str) -> Result<WxSession, GatewayError> {
        let mut url = self.url("/sns/jscode2session")?;
        url.query_pairs_mut()
            .append_pair("appid", &app.appid)
            .append_pair("secret", app.secret.expose())
            .append_pair("js_code", code)
            .append_pair("grant_type", "authorization_code");
        let answer = self
            .bounded(Api::Jscode2session, self.get(url), json_errcode)
            .await?;
        interpret_session(&answer, &app.appid)
    }

    async fn get(&self, url: url::Url) -> Result<Value, GatewayError> {
        self.send(self.http.get(url)).await
    }

    /// Sends a request and reads its JSON answer. The URL may carry a secret or a token, so
    /// it is dropped from every error before anything can log it.
    async fn send(&self, request: reqwest::RequestBuilder) -> Result<Value, GatewayError> {
        let response = request.send().await.map_err(|e| {
            let e = e.without_url();
            tracing::warn!(error = %e, "WeChat request failed");
            if e.is_timeout() {
                GatewayError::WechatTimeout
            } else {
                GatewayError::WechatUnavailable("unreachable")
            }
        })?;
        read_json(response).await
    }

    /// A JSON POST (WeChat refuses form bodies on these APIs with 47001).
    fn post_json(&self, url: url::Url, body: &Value) -> reqwest::RequestBuilder {
        self.http
            .post(url)
            .header(http::header::CONTENT_TYPE, "application/json")
            .body(body.to_string())
    }

    /// A WeChat API URL under `api_base`.
    fn url(&self, path: &str) -> Result<url::Url, GatewayError> {
        url::Url::parse(&format!("{}{path}", self.api_base))
            .map_err(|_| GatewayError::Internal("bad WeChat base URL"))
    }

    /// Runs `call` through `api`'s gate, bounded by the WeChat timeout, and tells the gate
    /// how it ended: no answer, or the errcode `errcode_of` finds in the answer (`None`: an
    /// answer that cannot be read).
    async fn bounded<T>(
        &self,
        api: Api,
        call: impl std::future::Future<Output = Result<T, GatewayError>>,
        errcode_of: impl FnOnce(&T) -> Option<i64>,
    ) -> Result<T, GatewayError> {
        let admitted = self.gates.admit(api)?;
        let api = api.name();
        let started = std::time::Instant::now();
        let result = match tokio::time::timeout(self.timeout, call).await {
            Ok(result) => result,
            Err(_) => {
                let elapsed_ms = started.elapsed().as_millis() as u64;
                tracing::warn!(api, elapsed_ms, "WeChat did not answer in time");
                Err(GatewayError::WechatTimeout)
            }
        };
        let outcome = match &result {
            Ok(_) => "ok",
            Err(GatewayError::WechatTimeout) => "timeout",
            Err(_) => "error",
        };
        // No answer at all counts toward the circuit breaker; a malformed answer does not
        // (WeChat is up, and retrying would not change it).
        admitted.finish(match &result {
            Ok(answer) => errcode_of(answer).map_or(Outcome::Unusable, Outcome::Answered),
            Err(
                GatewayError::WechatTimeout
                | GatewayError::WechatUnavailable("unreachable" | "http error"),
            ) => Outcome::NoAnswer,
            Err(_) => Outcome::Unusable,
        });
        crate::ops::metrics::wechat_call(api, outcome, started.elapsed());
        result
    }
}

/// Reads at most [`MAX_ANSWER_BYTES`] and parses JSON whatever `Content-Type` says.
async fn read_json(mut response: reqwest::Response) -> Result<Value, GatewayError> {
    let status = response.status();
    if !status.is_success() {
        tracing::warn!(
            status = status.as_u16(),
            "WeChat answered with an HTTP error"
        );
        return Err(GatewayError::WechatUnavailable("http error"));
    }
    if response
        .content_length()
        .is_some_and(|n| n > MAX_ANSWER_BYTES as u64)
    {
        tracing::warn!("WeChat answer is too large");
        return Err(GatewayError::WechatUnavailable("oversized"));
    }
    let mut body = Vec::new();
    loop {
        match response.chunk().await {
            Ok(Some(chunk)) => {
                if body.len() + chunk.len() > MAX_ANSWER_BYTES {
                    tracing::warn!("WeChat answer is too large");
                    return Err(GatewayError::WechatUnavailable("oversized"));
                }
                body.extend_from_slice(&chunk);
            }
            Ok(None) => break,
            Err(e) => {
                let e = e.without_url();
                tracing::warn!(error = %e, "WeChat answer could not be read");
                return Err(if e.is_timeout() {
                    GatewayError::WechatTimeout
                } else {
                    GatewayError::WechatUnavailable("truncated")
                });
            }
        }
    }
    serde_json::from_slice::<Value>(&body)
        .ok()
        .filter(Value::is_object)
        .ok_or_else(|| {
            tracing::warn!("WeChat answer is not a JSON object");
            GatewayError::WechatUnavailable("not json")
        })
}

/// [`errcode`] for [`WechatClient::bounded`]: `None` when it is unreadable.
fn json_errcode(answer: &Value) -> Option<i64> {
    errcode(answer).ok()
}

/// `errcode` as WeChat sends it: absent, a number, or a numeric string.
pub(crate) fn errcode(answer: &Value) -> Result<i64, GatewayError> {
    match answer.get("errcode") {
        None | Some(Value::Null) => Ok(0),
        Some(Value::Number(n)) => n
            .as_i64()
            .ok_or(GatewayError::WechatUnavailable("bad errcode")),
        Some(Value::String(s)) => s
            .trim()
            .parse()
            .map_err(|_| GatewayError::WechatUnavailable("bad errcode")),
        Some(_) => Err(GatewayError::WechatUnavailable("bad errcode")),
    }
}

/// The trace id WeChat puts in `errmsg` (`rid: ...`), which is safe and useful to log.
pub(crate) fn trace_id(answer: &Value) -> &str {
    answer
        .get("errmsg")
        .and_then(Value::as_str)
        .and_then(|m| m.split("rid:").nth(1))
        .map(str::trim)
        .unwrap_or("")
}

fn interpret_session(answer: &Value, appid: &str) -> Result<WxSession, GatewayError> {
    let code = errcode(answer)?;
    if code != 0 {
        crate::ops::metrics::wechat_errcode("jscode2session", code);
        let error = login_error(code);
        let rid = trace_id(answer);
        match error {
            GatewayError::ServerMisconfigured(_) => {
                tracing::error!(
                    errcode = code,
                    rid,
                    appid,
                    "WeChat rejected the app's credentials"
                );
            }
            GatewayError::WechatUnavailable(_) => {
                tracing::warn!(errcode = code, rid, "WeChat answered an unknown errcode");
            }
            _ => tracing::info!(errcode = code, rid, "WeChat refused the login code"),
        }
        return Err(error);
    }
    let openid = answer
        .get("openid")
        .and_then(Value::as_str)
        .filter(|s| is_safe_id(s));
    let session_key = answer
        .get("session_key")
        .and_then(Value::as_str)
        .filter(|k| STANDARD.decode(k).is_ok_and(|bytes| bytes.len() == 16));
    let unionid = match answer.get("unionid") {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(u)) if is_safe_id(u) => Ok(Some(u.clone())),
        Some(_) => Err(()),
    };
    match (openid, session_key, unionid) {
        (Some(openid), Some(key), Ok(unionid)) => Ok(WxSession {
            openid: openid.to_string(),
            unionid,
            session_key: Secret::new(key),
        }),
        _ => {
            tracing::warn!("WeChat success answer lacks a usable openid or session_key");
            Err(GatewayError::WechatUnavailable("unusable success"))
        }
    }
}

/// Maps a `jscode2session` errcode to what the client is told (SPEC's login error table).
pub(crate) fn login_error(code: i64) -> GatewayError {
    match code {
        40029 | 42003 => GatewayError::InvalidCode,
        40163 => GatewayError::CodeUsed,
        40226 => GatewayError::CodeBlocked,
        45011 => GatewayError::RateLimited {
            retry_after_secs: 60,
        },
        -1 => GatewayError::WechatBusy,
        40013 | 40125 | 41002 | 41004 => GatewayError::ServerMisconfigured(code),
        _ => GatewayError::WechatUnavailable("unknown errcode"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn errcode_may_be_a_number_a_string_or_absent() {
        assert_eq!(errcode(&json!({})).ok(), Some(0));
        assert_eq!(errcode(&json!({"errcode": 40029})).ok(), Some(40029));
        assert_eq!(errcode(&json!({"errcode": "40163"})).ok(), Some(40163));
        assert_eq!(errcode(&json!({"errcode": "-1"})).ok(), Some(-1));
        assert!(errcode(&json!({"errcode": "abc"})).is_err());
        assert!(errcode(&json!({"errcode": 1.5})).is_err());
    }

    #[test]
    fn success_needs_an_openid_and_a_sixteen_byte_session_key() {
        let ok = json!({"openid": "oAbc_-1", "session_key": "AAAAAAAAAAAAAAAAAAAAAA=="});
        assert!(interpret_session(&ok, "wx").is_ok());
        for bad in [
            json!({"session_key": "AAAAAAAAAAAAAAAAAAAAAA=="}),
            json!({"openid": "oAbc", "session_key": "AAAAAAAAAAA="}),
            json!({"openid": "o\r\nX: y", "session_key": "AAAAAAAAAAAAAAAAAAAAAA=="}),
            json!({"openid": "oAbc", "session_key": "AAAAAAAAAAAAAAAAAAAAAA==", "unionid": 5}),
            json!({"openid": "", "session_key": "AAAAAAAAAAAAAAAAAAAAAA=="}),
        ] {
            assert!(
                matches!(
                    interpret_session(&bad, "wx"),
                    Err(GatewayError::WechatUnavailable(_))
                ),
                "{bad}"
            );
        }
    }

    #[test]
    fn login_errcodes_map_to_the_documented_errors() {
        let code = |c| login_error(c).code();
        assert_eq!(code(40029), "invalid_code");
        assert_eq!(code(40163), "code_used");
        assert_eq!(code(40226), "code_blocked");
        assert_eq!(code(45011), "rate_limited");
        assert_eq!(code(-1), "wechat_busy");
        for c in [40013, 40125, 41002, 41004] {
            assert_eq!(code(c), "server_misconfigured");
        }
        assert_eq!(code(99999), "wechat_unavailable");
    }

    #[test]
    fn the_trace_id_is_taken_from_errmsg() {
        assert_eq!(
            trace_id(&json!({"errmsg": "invalid code, rid: 6543-21"})),
            "6543-21"
        );
        assert_eq!(trace_id(&json!({})), "");
    }
}
