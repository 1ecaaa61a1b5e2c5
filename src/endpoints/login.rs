//! `POST {prefix}/login`: a `wx.login` code in, wxgate's tokens out.

use http::{Request, Response};
use hyper::body::Incoming;
use serde_json::Value;

use super::{json_body, new_refresh_token, rate_limit, token_response, Call, SID_BYTES};
use crate::body::ResBody;
use crate::claims::Ext;
use crate::error::GatewayError;
use crate::hook::LoginFacts;
use crate::store::{Admission, Session};
use crate::tokens;

/// Longest code accepted; WeChat documents no format, this is local hygiene.
const MAX_CODE_LEN: usize = 128;

pub(super) async fn login(
    call: Call<'_>,
    request: Request<Incoming>,
) -> Result<Response<ResBody>, GatewayError> {
    // The limit comes first: garbage floods count too.
    rate_limit(&call)?;
    let body = json_body(&call, request).await?;
    let code = match body.get("code") {
        Some(Value::String(code)) if valid_code(code) => code.as_str(),
        _ => {
            return Err(GatewayError::InvalidRequest(
                "`code` must be the string from wx.login",
            ))
        }
    };
    let appid = match body.get("appid") {
        None | Some(Value::Null) => None,
        Some(Value::String(appid)) => Some(appid.as_str()),
        Some(_) => return Err(GatewayError::InvalidRequest("`appid` must be a string")),
    };
    let settings = &call.runtime.settings;
    let app = settings
        .wechat
        .app(appid)
        .ok_or(GatewayError::InvalidRequest("unknown appid"))?;
    // First request wins: a code in flight or already exchanged is never sent again.
    if !call.runtime.store.claim_code(&app.appid, code).await? {
        return Err(GatewayError::CodeUsed);
    }
    let wx = call.runtime.wechat.jscode2session(app, code).await?;
    // The hook decides before any session exists: a denied or failed login leaves nothing.
    let claims = match &call.runtime.hook {
        Some(hook) => {
            let facts = LoginFacts {
                openid: &wx.openid,
                unionid: wx.unionid.as_deref(),
                appid: &app.appid,
            };
            hook.call(&facts).await?
        }
        None => Ext::new(),
    };
    let now = tokens::now_unix();
    let session = Session {
        sid: tokens::random_id(SID_BYTES),
        openid: wx.openid,
        unionid: wx.unionid,
        appid: app.appid.clone(),
        session_key: wx.session_key,
        expires_at: now + settings.auth.refresh_ttl.as_secs() as i64,
        claims,
        phone: None,
        created_at: now,
        refreshed_at: None,
    };
    let (refresh_token, refresh_key) = new_refresh_token(&session.sid);
    // The store checks the operator's block in the same step as it indexes the session.
    if let Admission::Blocked { .. } = call.runtime.store.create(&session, &refresh_key).await? {
        tracing::info!(appid = %session.appid, "login refused: the user is blocked");
        return Err(GatewayError::LoginDenied);
    }
    tracing::info!(appid = %session.appid, "login succeeded");
    token_response(call.runtime, &session, &refresh_token)
}

/// `^[A-Za-z0-9_-]{1,128}$`: anything else is refused without calling WeChat.
pub(super) fn valid_code(code: &str) -> bool {
    (1..=MAX_CODE_LEN).contains(&code.len())
        && code
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_are_short_plain_tokens() {
        assert!(valid_code("001WtX6211LeoR1End921HDW621WtX6w"));
        assert!(valid_code(&"a".repeat(128)));
        assert!(!valid_code(&"a".repeat(129)));
        assert!(!valid_code(""));
        assert!(!valid_code("abc&appid=x"));
        assert!(!valid_code("abc def"));
        assert!(!valid_code("中文"));
    }
}
