//! `refresh`, `logout` and `session`: the life of a session after login.

use http::{Request, Response, StatusCode};
use hyper::body::Incoming;
use serde_json::{json, Value};

use super::{
    bearer_identity, bearer_session, json_body, new_refresh_token, revocation_horizon,
    token_response, Call,
};
use crate::body::{self, ResBody};
use crate::error::{json_response, GatewayError};
use crate::store::{digest, Rotation};
use crate::tokens;

/// Refresh tokens are 43 characters; anything much longer is not one of ours.
const MAX_REFRESH_TOKEN_LEN: usize = 256;

/// Whether `presented` has the shape of a refresh token (base64url, bounded), so that
/// anything else is refused without a store round trip.
fn could_be_refresh_token(presented: &str) -> bool {
    presented.len() <= MAX_REFRESH_TOKEN_LEN
        && presented
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

pub(super) async fn refresh(
    call: Call<'_>,
    request: Request<Incoming>,
) -> Result<Response<ResBody>, GatewayError> {
    let body = json_body(&call, request).await?;
    // RFC 6749 5.2: a request that is not well-formed is `invalid_request`; a well-formed
    // request whose grant is not a live refresh token (too long, another alphabet, an
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
    if !could_be_refresh_token(presented) {
        return Err(GatewayError::InvalidGrant);
    }
    let runtime = call.runtime;
    let (refresh_token, refresh_hash) = new_refresh_token();
    let expires_at = tokens::now_unix() + runtime.settings.auth.refresh_ttl.as_secs() as i64;
    let rotation = call
        .runtime
        .store
        .rotate(
            digest(&[presented.as_bytes()]),
            refresh_hash,
            expires_at,
            revocation_horizon(&call),
        )
        .await?;
    match rotation {
        Rotation::Rotated(session) => token_response(runtime, &session, &refresh_token),
        Rotation::Reused { .. } => {
            tracing::warn!("a spent refresh token was presented again; its session is revoked");
            Err(GatewayError::InvalidGrant)
        }
        Rotation::Invalid => Err(GatewayError::InvalidGrant),
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
