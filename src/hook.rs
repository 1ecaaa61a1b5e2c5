//! The login hook client: after a successful code exchange, wxgate asks the operator's
//! service whether this user may log in, and which claims the session should carry.
//!
//! Request: `POST {url}` with `{"openid", "unionid"?, "appid"}` — never the code or the
//! `session_key`. Answer: 200 with `{"claims": {...}}` (or `{}`) of at most 4 KiB lets the
//! login through; 403 denies it; anything else (no answer in time, a refused connection,
//! another status, a redirect, a body too large or not matching the rules of
//! [`crate::claims`]) fails it closed with 502. The hook URL is never shown to clients.

use std::time::Duration;

use serde_json::{json, Value};

use crate::claims::{self, Ext};
use crate::error::GatewayError;
use crate::settings::LoginHook;

/// The largest hook answer read; the rest is never read.
pub(crate) const MAX_ANSWER_BYTES: usize = 4096;

pub struct HookClient {
    http: reqwest::Client,
    url: reqwest::Url,
}

/// Who just logged in, as the hook is told.
pub struct LoginFacts<'a> {
    pub openid: &'a str,
    pub unionid: Option<&'a str>,
    pub appid: &'a str,
}

impl HookClient {
    pub fn new(hook: &LoginHook) -> anyhow::Result<Self> {
        let url = reqwest::Url::parse(&hook.url)
            .map_err(|_| anyhow::anyhow!("auth.on_login.url is not a URL"))?;
        let http = reqwest::Client::builder()
            // The hook is one configured service; a redirect is an answer we do not expect.
            .redirect(reqwest::redirect::Policy::none())
            // One bound on the whole call: connecting, sending, and reading the answer.
            .timeout(hook.timeout)
            .pool_idle_timeout(Duration::from_secs(60))
            .build()?;
        Ok(Self { http, url })
    }

    /// Calls the hook; returns the session's claims, possibly none.
    pub async fn call(&self, facts: &LoginFacts<'_>) -> Result<Ext, GatewayError> {
        let mut body = json!({ "openid": facts.openid, "appid": facts.appid });
        if let Some(unionid) = facts.unionid {
            body["unionid"] = json!(unionid);
        }
        let response = self
            .http
            .post(self.url.clone())
            .header(http::header::CONTENT_TYPE, "application/json")
            .body(body.to_string())
            .send()
            .await
            .map_err(|e| failed(transport_reason(&e)))?;
        match response.status().as_u16() {
            200 => {}
            403 => {
                tracing::info!(appid = facts.appid, "the login hook denied a login");
                return Err(GatewayError::LoginDenied);
            }
            status => {
                tracing::warn!(status, "the login hook answered an unexpected status");
                return Err(GatewayError::LoginHookFailed("unexpected status"));
            }
        }
        let bytes = read_capped(response).await?;
        interpret(&bytes).map_err(|reason| {
            tracing::warn!(reason = %reason, "the login hook's answer was refused");
            GatewayError::LoginHookFailed("unusable answer")
        })
    }
}

/// Logs a failure of the call itself and turns it into the client's 502.
fn failed(reason: &'static str) -> GatewayError {
    tracing::warn!(reason, "the login hook call failed");
    GatewayError::LoginHookFailed(reason)
}

/// A reqwest error, classified without its text: that text would carry the hook's URL.
fn transport_reason(e: &reqwest::Error) -> &'static str {
    if e.is_timeout() {
        "timed out"
    } else if e.is_connect() {
        "connection failed"
    } else {
        "request failed"
    }
}

/// Reads at most [`MAX_ANSWER_BYTES`]; a longer answer is refused without reading the rest.
async fn read_capped(mut response: reqwest::Response) -> Result<Vec<u8>, GatewayError> {
    let too_large = || {
        tracing::warn!("the login hook's answer is larger than 4 KiB");
        GatewayError::LoginHookFailed("answer too large")
    };
    if response
        .content_length()
        .is_some_and(|n| n > MAX_ANSWER_BYTES as u64)
    {
        return Err(too_large());
    }
    let mut body = Vec::new();
    while let Some(chunk) = response
        .chunk()
        .await
        .map_err(|e| failed(transport_reason(&e)))?
    {
        if body.len() + chunk.len() > MAX_ANSWER_BYTES {
            return Err(too_large());
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

/// Why an answer body was refused (for the log only).
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
enum AnswerProblem {
    #[error("not a JSON object")]
    NotObject,
    #[error("`claims` is not an object")]
    ClaimsNotObject,
    #[error(transparent)]
    Claim(#[from] claims::ClaimProblem),
}

/// `{"claims": {...}}` or `{}`; other members are ignored, so a hook may say more.
fn interpret(bytes: &[u8]) -> Result<Ext, AnswerProblem> {
    let Ok(Value::Object(mut answer)) = serde_json::from_slice::<Value>(bytes) else {
        return Err(AnswerProblem::NotObject);
    };
    let ext = match answer.remove("claims") {
        None => Ext::new(),
        Some(Value::Object(ext)) => ext,
        Some(_) => return Err(AnswerProblem::ClaimsNotObject),
    };
    claims::check(&ext)?;
    Ok(ext)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn claims_or_nothing_is_a_success() {
        let ext = interpret(br#"{"claims": {"uid": 42, "role": "admin"}, "note": "x"}"#);
        assert_eq!(ext.map(|e| e.len()), Ok(2));
        assert_eq!(interpret(br#"{"claims": {}}"#), Ok(Ext::new()));
        assert_eq!(interpret(b"{}"), Ok(Ext::new()));
    }

    #[test]
    fn anything_else_is_refused() {
        for body in [
            &b"not json"[..],
            b"[]",
            b"null",
            b"\"claims\"",
            br#"{"claims": null}"#,
            br#"{"claims": [1]}"#,
            br#"{"claims": {"uid": {"id": 1}}}"#,
            br#"{"claims": {"uid": [1]}}"#,
            br#"{"claims": {"uid": null}}"#,
            br#"{"claims": {"sub": "admin"}}"#,
            br#"{"claims": {"phone": "13800138000"}}"#,
            br#"{"claims": {"bad-name": 1}}"#,
            br#"{"claims": {"uid": "a\r\nX-OpenId: evil"}}"#,
        ] {
            assert!(
                interpret(body).is_err(),
                "{}",
                String::from_utf8_lossy(body)
            );
        }
    }
}
