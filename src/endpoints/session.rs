//! `refresh`, `logout` and `session`: the life of a session after login.

use http::{Request, Response, StatusCode};
use hyper::body::Incoming;
use serde_json::{json, Value};

use super::{
    bearer_identity, bearer_session, json_body, new_refresh_token, refresh_key, revocation_horizon,
    token_response, Call,
};
use crate::body::{self, ResBody};
use crate::error::{json_response, GatewayError};
use crate::store::{Renewal, Rotation};
use crate::tokens;

pub(super) async fn refresh(
    call: Call<'_>,
    request: Request<Incoming>,
) -> Result<Response<ResBody>, GatewayError> {
    let body = json_body(&call, request).await?;
    // RFC 6749 5.2: a request that is not well-formed is `invalid_request`; a well-formed
    // request whose grant is not a live refresh token (another length or alphabet, an
    // access token, unknown, spent, expired) is `invalid_grant`, which tells a client to
    // log in again. Clients branch on this split.
    let presented = match body.get("refresh_token") {
        Some(Value::String(t)) if !t.is_empty() => t.as_str(),
        _ => {
            return Err(GatewayError::InvalidRequest(
                "`refresh_token` must be a non-empty string",
            ))
        }
    };
    let Some(presented) = refresh_key(presented) else {
        return Err(GatewayError::InvalidGrant);
    };
    let runtime = call.runtime;
    let (refresh_token, next) = new_refresh_token(&presented.sid);
    let expires_at = tokens::now_unix() + runtime.settings.auth.refresh_ttl.as_secs() as i64;
    let renewal = Renewal {
        old: &presented,
        new: &next,
        expires_at,
        revoke_until: revocation_horizon(&call),
    };
    let rotation = runtime.store.rotate(renewal).await?;
    match rotation {
        Rotation::Rotated(session) => token_response(runtime, &session, &refresh_token),
        Rotation::Reused { .. } => {
            tracing::warn!("a spent refresh token was presented again; its session is revoked");
            Err(GatewayError::InvalidGrant)
        }
        Rotation::Invalid => Err(GatewayError::InvalidGrant),
        // 403 rather than `invalid_grant`: a client told to log in again would be refused
        // at login too, and loop; `login_denied` is where an SDK stops.
        Rotation::Blocked { .. } => {
            tracing::info!("refresh refused: the user is blocked");
            Err(GatewayError::LoginDenied)
        }
    }
}

pub(super) async fn logout(
    call: Call<'_>,
    request: Request<Incoming>,
) -> Result<Response<ResBody>, GatewayError> {
    let identity = bearer_identity(&call, &request)?;
    // A token minted without a session (by other tooling) has nothing to revoke: saying
    // 204 would claim it is refused from now on, and it stays valid until `exp`.
    let sid = identity.sid.as_deref().ok_or(GatewayError::InvalidRequest(
        "this access token has no session (`sid`) to end; it stays valid until it expires",
    ))?;
    call.runtime
        .store
        .revoke(sid, revocation_horizon(&call))
        .await?;
    let mut response = Response::new(body::empty());
    *response.status_mut() = StatusCode::NO_CONTENT;
    Ok(response)
}

pub(super) async fn describe(
    call: Call<'_>,
    request: Request<Incoming>,
) -> Result<Response<ResBody>, GatewayError> {
    let session = bearer_session(&call, &request).await?;
    let mut body = json!({
        "openid": session.openid,
        "appid": session.appid,
        "session_id": session.sid,
        "expires_at": session.expires_at,
    });
    if let Some(unionid) = &session.unionid {
        body["unionid"] = json!(unionid);
    }
    if !session.claims.is_empty() {
        body["claims"] = json!(session.claims);
    }
    if let Some(phone) = &session.phone {
        body["phone"] = json!(phone);
    }
    Ok(json_response(StatusCode::OK, &body))
}
