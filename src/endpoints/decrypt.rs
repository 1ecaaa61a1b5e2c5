//! `POST {prefix}/decrypt`: the session's `session_key` opens the user data WeChat encrypted.

use http::{Request, Response, StatusCode};
use hyper::body::Incoming;
use serde_json::Value;

use super::{bearer_session, json_body, Call};
use crate::body::ResBody;
use crate::error::{json_response, GatewayError};
use crate::store::Session;
use crate::userdata::{self, Expect};

pub async fn decrypt(
    call: Call<'_>,
    request: Request<Incoming>,
) -> Result<Response<ResBody>, GatewayError> {
    let session = bearer_session(&call, &request).await?;
    let body = json_body(&call, request).await?;
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
/// answer reveals nothing about why the data did not open.
async fn explain_failure(call: &Call<'_>, session: &Session) -> GatewayError {
    let wechat = &call.runtime.settings.wechat;
    let Some(app) = wechat
        .app(Some(&session.appid))
        .filter(|_| wechat.check_session_key)
    else {
        return GatewayError::DecryptFailed;
    };
    let valid = call
        .runtime
        .wechat
        .session_key_valid(
            app,
            &call.gateway.store,
            &session.openid,
            &session.session_key,
        )
        .await;
    match valid {
        Ok(false) => GatewayError::SessionKeyExpired,
        Ok(true) => GatewayError::DecryptFailed,
        Err(e) => {
            tracing::info!(error = %e, "checksession failed; answering decrypt_failed");
            GatewayError::DecryptFailed
        }
    }
}
