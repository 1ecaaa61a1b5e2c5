//! WeChat calls made with the managed `access_token`: the phone number behind a
//! getPhoneNumber button code, and whether a stored `session_key` is still valid (asked at
//! most once a minute per session: a client decides when a decrypt fails).

use std::time::Duration;

use moka::future::Cache;
use serde_json::{json, Value};

use super::token::{token_refused, Used};
use super::{errcode, json_errcode, login_error, trace_id, Api, WechatClient};
use crate::error::GatewayError;
use crate::secret::Secret;
use crate::settings::App;
use crate::store::{Session, Store};

/// How long `checksession`'s verdict on a session is remembered.
pub(super) const VERDICT_TTL: Duration = Duration::from_secs(60);
/// Sessions whose verdict is remembered at once; beyond it the least used are forgotten.
const MAX_VERDICTS: u64 = 100_000;

/// What `checksession` said about a session's `session_key`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyVerdict {
    Valid,
    /// WeChat no longer accepts it (87009): the user must log in again.
    Expired,
    /// WeChat could not be asked, or gave no usable answer.
    Unknown,
}

/// Verdicts by session id. Every verdict is kept for [`VERDICT_TTL`], failures included:
/// a WeChat that fails `checksession` must not be asked again on every bad decrypt.
pub(super) struct KeyVerdicts(Cache<String, KeyVerdict>);

impl Default for KeyVerdicts {
    fn default() -> Self {
        Self(
            Cache::builder()
                .max_capacity(MAX_VERDICTS)
                .time_to_live(VERDICT_TTL)
                .build(),
        )
    }
}

/// What `getuserphonenumber` answered, checked.
#[derive(Debug, Clone)]
pub struct PhoneInfo {
    /// `phone_info` as WeChat sent it (watermark included), for the client.
    pub raw: Value,
    /// `phoneNumber`: with the country code for numbers outside China.
    pub phone_number: String,
}

/// Longest phone number accepted, and its alphabet: it may become a header value.
const MAX_PHONE_CHARS: usize = 32;

pub(super) fn is_phone_number(text: &str) -> bool {
    !text.is_empty()
        && text.len() <= MAX_PHONE_CHARS
        && text.bytes().any(|b| b.is_ascii_digit())
        && text
            .bytes()
            .all(|b| b.is_ascii_digit() || matches!(b, b'+' | b' ' | b'-'))
}

/// What an errcode from a call made with the token means; `None` for "the token was refused".
fn call_error(code: i64) -> Option<GatewayError> {
    if token_refused(code) {
        return None;
    }
    Some(match code {
        45009 => GatewayError::WechatQuota,
        48001 => GatewayError::ServerMisconfigured(code),
        _ => login_error(code),
    })
}

impl WechatClient {
    /// `POST wxa/business/getuserphonenumber` for a button `code`, bound to the session's
    /// openid so a code obtained by another user is refused by WeChat.
    pub async fn phone_number(
        &self,
        app: &App,
        store: &Store,
        code: &str,
        openid: &str,
    ) -> Result<PhoneInfo, GatewayError> {
        let body = json!({ "code": code, "openid": openid });
        self.with_token(app, store, |token| {
            let body = &body;
            async move {
                let mut url = self.url("/wxa/business/getuserphonenumber")?;
                url.query_pairs_mut()
                    .append_pair("access_token", token.expose());
                let request = self.send(self.post_json(url, body));
                let answer = self
                    .bounded(Api::PhoneNumber, request, json_errcode)
                    .await?;
                let code = errcode(&answer)?;
                if code != 0 {
                    crate::ops::metrics::wechat_errcode("getuserphonenumber", code);
                    tracing::info!(
                        errcode = code,
                        rid = trace_id(&answer),
                        "WeChat refused the phone code"
                    );
                    return call_error(code).map_or(Ok(Used::TokenRefused), Err);
                }
                interpret_phone(&answer, &app.appid).map(Used::Done)
            }
        })
        .await
    }

    /// Whether WeChat still accepts `session`'s `session_key`, remembered per session for
    /// [`VERDICT_TTL`]. Concurrent questions about one session share one call.
    pub async fn session_key_verdict(
        &self,
        app: &App,
        store: &Store,
        session: &Session,
    ) -> KeyVerdict {
        let ask = async {
            match self
                .session_key_valid(app, store, &session.openid, &session.session_key)
                .await
            {
                Ok(true) => KeyVerdict::Valid,
                Ok(false) => KeyVerdict::Expired,
                Err(e) => {
                    tracing::info!(error = %e, "checksession failed; the key's state is unknown");
                    KeyVerdict::Unknown
                }
            }
        };
        self.verdicts.0.get_with(session.sid.clone(), ask).await
    }

    /// `GET wxa/checksession`: whether WeChat still accepts the session's `session_key`.
    pub async fn session_key_valid(
        &self,
        app: &App,
        store: &Store,
        openid: &str,
        session_key: &Secret,
    ) -> Result<bool, GatewayError> {
        let signature = checksession_signature(session_key);
        self.with_token(app, store, |token| {
            let signature = &signature;
            async move {
                let mut url = self.url("/wxa/checksession")?;
                url.query_pairs_mut()
                    .append_pair("access_token", token.expose())
                    .append_pair("signature", signature)
                    .append_pair("openid", openid)
                    .append_pair("sig_method", "hmac_sha256");
                let answer = self
                    .bounded(Api::CheckSession, self.get(url), json_errcode)
                    .await?;
                let code = errcode(&answer)?;
                if code != 0 {
                    crate::ops::metrics::wechat_errcode("checksession", code);
                }
                match code {
                    0 => Ok(Used::Done(true)),
                    87009 => Ok(Used::Done(false)),
                    code => call_error(code).map_or(Ok(Used::TokenRefused), Err),
                }
            }
        })
        .await
    }
}

/// `hex(hmac_sha256(key = the session_key's base64 text, message = ""))`, as WeChat's
/// worked example shows (the key is the text, not the decoded bytes).
pub(super) fn checksession_signature(session_key: &Secret) -> String {
    use aws_lc_rs::hmac;
    let key = hmac::Key::new(hmac::HMAC_SHA256, session_key.expose().as_bytes());
    let tag = hmac::sign(&key, b"");
    tag.as_ref().iter().map(|b| format!("{b:02x}")).collect()
}

fn interpret_phone(answer: &Value, appid: &str) -> Result<PhoneInfo, GatewayError> {
    let info = answer.get("phone_info").filter(|v| v.is_object());
    let phone = info
        .and_then(|i| i.get("phoneNumber"))
        .and_then(Value::as_str)
        .filter(|p| is_phone_number(p));
    let watermark_ok = info
        .and_then(|i| i.pointer("/watermark/appid"))
        .and_then(Value::as_str)
        == Some(appid);
    match (info, phone) {
        (Some(info), Some(phone)) if watermark_ok => Ok(PhoneInfo {
            raw: info.clone(),
            phone_number: phone.to_string(),
        }),
        _ => {
            tracing::warn!("WeChat's phone answer is unusable or for another app");
            Err(GatewayError::WechatUnavailable("unusable phone answer"))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_checksession_signature_matches_the_documented_vector() {
        let key = Secret::new("o0q0otL8aEzpcZL/FT9WsQ==");
        assert_eq!(
            checksession_signature(&key),
            "46e043c5525c2d817c44be603d30837a808a1d930d038f6fdc3e62a201fed128"
        );
    }

    #[test]
    fn phone_answers_must_be_for_this_app_and_well_formed() {
        let ok = json!({"errcode": 0, "phone_info": {
            "phoneNumber": "+86 13800000000", "purePhoneNumber": "13800000000",
            "countryCode": 86, "watermark": {"appid": "wx1", "timestamp": 1}}});
        assert_eq!(
            interpret_phone(&ok, "wx1").map(|p| p.phone_number).ok(),
            Some("+86 13800000000".to_string())
        );
        assert!(
            interpret_phone(&ok, "wx2").is_err(),
            "another app's watermark"
        );
        let injected = json!({"phone_info": {"phoneNumber": "1\r\nX-OpenId: o",
            "watermark": {"appid": "wx1"}}});
        assert!(interpret_phone(&injected, "wx1").is_err());
        assert!(interpret_phone(&json!({"errcode": 0}), "wx1").is_err());
    }

    #[test]
    fn call_errors_map_like_login_errors() {
        assert!(call_error(40001).is_none() && call_error(42001).is_none());
        let code = |c| call_error(c).map(|e| e.code());
        assert_eq!(code(40029), Some("invalid_code"));
        assert_eq!(code(45011), Some("rate_limited"));
        assert_eq!(code(45009), Some("wechat_quota_exceeded"));
        assert_eq!(code(-1), Some("wechat_busy"));
    }
}
