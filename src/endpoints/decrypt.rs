//! `POST {prefix}/decrypt`: the session's `session_key` opens the user data WeChat encrypted.

use http::{Request, Response, StatusCode};
use hyper::body::Incoming;
use serde_json::Value;

use super::{rate_limited_session, Call};
use crate::body::ResBody;
use crate::error::{json_response, GatewayError};
use crate::store::Session;
use crate::userdata::{self, Expect};
use crate::wechat::KeyVerdict;

pub(super) async fn decrypt(
    call: Call<'_>,
    request: Request<Incoming>,
) -> Result<Response<ResBody>, GatewayError> {
    // A failed decrypt may ask WeChat: the per-client limit applies as for logins.
    let (session, body) = rate_limited_session(&call, request).await?;
    let text = |name: &str| match body.get(name) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.as_str())),
        Some(_) => Err(GatewayError::InvalidRequest(
            "decrypt fields must be strings",
        )),
    };
    let (Some(encrypted), Some(iv)) = (text("encryptedData")?, text("iv")?) else {
        return Err(GatewayError::InvalidRequest(
            "`encryptedData` and `iv` are required",
        ));
    };
    let key = session.session_key.expose();
    let signed = match (text("rawData")?, text("signature")?) {
        (None, None) => true,
        (Some(raw), Some(signature)) => userdata::signature_matches(raw, key, signature),
        _ => false,
    };
    let expect = Expect {
        appid: &session.appid,
        openid: &session.openid,
    };
    let opened = userdata::decrypt(key, encrypted, iv, &expect)
        .ok()
        .filter(|_| signed);
    match opened {
        Some(object) => Ok(json_response(StatusCode::OK, &Value::Object(object))),
        None => Err(explain_failure(&call, &session).await),
    }
}

/// Every failure is the same `decrypt_failed`, unless WeChat says the session's key is no
/// longer valid (the user logged in elsewhere, or it expired): then the client must log in
/// again. What WeChat is asked depends on the session only, never on the data sent, so the
/// answer reveals nothing about why the data did not open. The verdict is remembered for a
/// minute, so garbage sent in a loop costs one WeChat call per session and minute at most.
async fn explain_failure(call: &Call<'_>, session: &Session) -> GatewayError {
    let wechat = &call.runtime.settings.wechat;
    let Some(app) = wechat
        .app(Some(&session.appid))
        .filter(|_| wechat.check_session_key)
    else {
        return GatewayError::DecryptFailed;
    };
    let verdict = call
        .runtime
        .wechat
        .session_key_verdict(app, &call.runtime.store, session)
        .await;
    match verdict {
        KeyVerdict::Expired => GatewayError::SessionKeyExpired,
        KeyVerdict::Valid | KeyVerdict::Unknown => GatewayError::DecryptFailed,
    }
}
