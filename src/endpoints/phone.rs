//! `POST {prefix}/phone`: the phone number behind a getPhoneNumber button's `code`, fetched
//! with the managed access_token and bound to the session's openid. The number is stored in
//! the session, so `auth = "phone"` routes admit the caller and `[auth.claim_headers]
//! phone = "…"` injects it; the answer carries a new access token that holds it.

use http::{Request, Response, StatusCode};
use hyper::body::Incoming;
use serde_json::{json, Value};

use super::login::valid_code;
use super::{mint_access, no_store, rate_limited_session, Call};
use crate::body::ResBody;
use crate::error::{json_response, GatewayError};
use crate::store::Session;

pub(super) async fn phone(
    call: Call<'_>,
    request: Request<Incoming>,
) -> Result<Response<ResBody>, GatewayError> {
    // Each call spends WeChat quota: the per-client limit applies as for logins.
    let (session, body) = rate_limited_session(&call, request).await?;
    let code = match body.get("code") {
        Some(Value::String(code)) if valid_code(code) => code.as_str(),
        _ => {
            return Err(GatewayError::InvalidRequest(
                "`code` must be the string from the getPhoneNumber button",
            ))
        }
    };
    let app = call
        .runtime
        .settings
        .wechat
        .app(Some(&session.appid))
        .ok_or(GatewayError::InvalidRequest(
            "the session's mini-program is no longer configured",
        ))?;
    let store = &call.runtime.store;
    let info = call
        .runtime
        .wechat
        .phone_number(app, store, code, &session.openid)
        .await?;
    if !store.set_phone(&session.sid, &info.phone_number).await? {
        return Err(GatewayError::NoSession);
    }
    let session = Session {
        phone: Some(info.phone_number),
        ..session
    };
    let (access_token, expires_in) = mint_access(call.runtime, &session)?;
    tracing::info!(appid = %session.appid, "phone number stored in the session");
    let answer = json!({
        "phone_info": info.raw,
        "access_token": access_token,
        "token_type": "Bearer",
        "expires_in": expires_in,
    });
    Ok(no_store(json_response(StatusCode::OK, &answer)))
}
