//! Gateway endpoints under `[auth] endpoint_prefix` and `/.well-known/jwks.json`; they take
//! precedence over routes.

mod decrypt;
mod jwks;
mod login;
mod phone;
mod session;

use std::sync::Arc;

use http::header::{HeaderValue, CACHE_CONTROL, PRAGMA};
use http::{Method, Request, Response, StatusCode};
use hyper::body::Incoming;
use serde_json::{json, Value};

use crate::body::{GuardedBody, ResBody};
use crate::error::{json_response, GatewayError};
use crate::gateway::Runtime;
use crate::proxy::clientip::ClientAddr;
use crate::store::{digest, RefreshKey, Session};
use crate::tokens::{self, Claims};

/// Gateway endpoint bodies are small JSON documents.
const MAX_ENDPOINT_BODY: u64 = 64 * 1024;
pub(crate) const JWKS_PATH: &str = "/.well-known/jwks.json";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Endpoint {
    Login,
    Refresh,
    Logout,
    Session,
    Decrypt,
    Phone,
    Jwks,
}

impl Endpoint {
    /// Every endpoint, in declaration order: `ALL[e as usize] == e`.
    pub(crate) const ALL: [Endpoint; 7] = [
        Self::Login,
        Self::Refresh,
        Self::Logout,
        Self::Session,
        Self::Decrypt,
        Self::Phone,
        Self::Jwks,
    ];

    /// The endpoint a canonical path names, if any.
    pub(crate) fn find(path: &str, prefix: &str) -> Option<Self> {
        if path == JWKS_PATH {
            return Some(Self::Jwks);
        }
        match path.strip_prefix(prefix)? {
            "/login" => Some(Self::Login),
            "/refresh" => Some(Self::Refresh),
            "/logout" => Some(Self::Logout),
            "/session" => Some(Self::Session),
            "/decrypt" => Some(Self::Decrypt),
            "/phone" => Some(Self::Phone),
            _ => None,
        }
    }

    fn method(self) -> Method {
        match self {
            Self::Session | Self::Jwks => Method::GET,
            _ => Method::POST,
        }
    }

    pub(crate) fn name(self) -> &'static str {
        match self {
            Self::Login => "login",
            Self::Refresh => "refresh",
            Self::Logout => "logout",
            Self::Session => "session",
            Self::Decrypt => "decrypt",
            Self::Phone => "phone",
            Self::Jwks => "jwks",
        }
    }
}

/// Everything an endpoint needs about the request besides its body.
pub(crate) struct Call<'a> {
    pub runtime: &'a Runtime,
    pub client: ClientAddr,
    pub deadline: tokio::time::Instant,
}

pub(crate) async fn handle(
    endpoint: Endpoint,
    call: Call<'_>,
    request: Request<Incoming>,
) -> Result<Response<ResBody>, GatewayError> {
    let allowed = endpoint.method();
    let method = request.method();
    if method != allowed && !(allowed == Method::GET && method == Method::HEAD) {
        return Err(GatewayError::MethodNotAllowed(vec![allowed]));
    }
    match endpoint {
        Endpoint::Login => {
            let result = login::login(call, request).await;
            crate::ops::metrics::login(result.as_ref().map_or_else(|e| e.code(), |_| "ok"));
            result
        }
        Endpoint::Refresh => session::refresh(call, request).await,
        Endpoint::Logout => session::logout(call, request).await,
        Endpoint::Session => session::describe(call, request).await,
        Endpoint::Decrypt => decrypt::decrypt(call, request).await,
        Endpoint::Phone => phone::phone(call, request).await,
        Endpoint::Jwks => Ok(jwks::jwks(call.runtime)),
    }
}

/// The per-client limit for endpoints that can make wxgate call WeChat (login, phone,
/// decrypt): one bucket per client address or network, shared by the three.
fn rate_limit(call: &Call<'_>) -> Result<(), GatewayError> {
    call.runtime
        .limiter
        .check(call.client.ip)
        .map_err(|retry_after_secs| GatewayError::RateLimited { retry_after_secs })
}

/// Reads a small JSON object body; anything else is `invalid_request`.
async fn json_body(
    call: &Call<'_>,
    request: Request<Incoming>,
) -> Result<serde_json::Map<String, Value>, GatewayError> {
    let limit = MAX_ENDPOINT_BODY.min(call.runtime.settings.server.max_body_bytes);
    GuardedBody::new(request.into_body(), limit, call.deadline)
        .collect_json_object()
        .await
}

/// The verified caller of an endpoint that needs a bearer token.
fn bearer_identity(
    call: &Call<'_>,
    request: &Request<Incoming>,
) -> Result<Arc<crate::identity::Identity>, GatewayError> {
    let auth = &call.runtime.settings.auth;
    let credential = crate::proxy::authn::credential(request.headers(), &auth.token_headers)?
        .ok_or(GatewayError::MissingToken)?;
    crate::proxy::authn::verify(call.runtime, credential.token, None)
}

/// The caller's server-side session: it holds what tokens never carry (the `session_key`).
async fn bearer_session(
    call: &Call<'_>,
    request: &Request<Incoming>,
) -> Result<Session, GatewayError> {
    let identity = bearer_identity(call, request)?;
    let sid = identity.sid.as_deref().ok_or(GatewayError::NoSession)?;
    call.runtime
        .store
        .session(sid)
        .await?
        .ok_or(GatewayError::NoSession)
}

/// The session and JSON body of a call that acts for a session and may reach WeChat
/// (decrypt, phone). The per-client limit comes first, so a client over it costs neither a
/// token check nor a store round trip.
async fn rate_limited_session(
    call: &Call<'_>,
    request: Request<Incoming>,
) -> Result<(Session, serde_json::Map<String, Value>), GatewayError> {
    rate_limit(call)?;
    let session = bearer_session(call, &request).await?;
    let body = json_body(call, request).await?;
    Ok((session, body))
}

/// Mints an access token for `session` and answers the login/refresh shape, `no-store`.
fn token_response(
    runtime: &Runtime,
    session: &Session,
    refresh_token: &str,
) -> Result<Response<ResBody>, GatewayError> {
    let (access_token, access_ttl) = mint_access(runtime, session)?;
    let mut body = json!({
        "access_token": access_token,
        "token_type": "Bearer",
        "expires_in": access_ttl,
        "refresh_token": refresh_token,
        "refresh_expires_in": (session.expires_at - tokens::now_unix()).max(0),
        "openid": session.openid,
        "session_id": session.sid,
    });
    if let Some(unionid) = &session.unionid {
        body["unionid"] = json!(unionid);
    }
    Ok(no_store(json_response(StatusCode::OK, &body)))
}

/// An access token for `session` (its hook claims and phone included) and its lifetime.
fn mint_access(runtime: &Runtime, session: &Session) -> Result<(String, i64), GatewayError> {
    let auth = &runtime.settings.auth;
    let now = tokens::now_unix();
    let access_ttl = auth.access_ttl.as_secs() as i64;
    let claims = Claims {
        iss: auth.issuer.clone(),
        aud: auth.audience.clone(),
        sub: session.openid.clone(),
        iat: now,
        nbf: Some(now),
        exp: now + access_ttl,
        jti: Some(tokens::random_id(16)),
        sid: Some(session.sid.clone()),
        appid: Some(session.appid.clone()),
        unionid: session.unionid.clone(),
        ext: Some(session.claims.clone()).filter(|ext| !ext.is_empty()),
        phone: session.phone.clone(),
    };
    let access_token = tokens::mint(&auth.keys, &claims)
        .map_err(|_| GatewayError::Internal("token signing failed"))?;
    // Claims are bounded so this cannot happen with sane settings; a token that every
    // route would refuse must not be handed out as a success.
    if access_token.len() > tokens::MAX_TOKEN_BYTES {
        return Err(GatewayError::Internal(
            "the access token would be too large",
        ));
    }
    Ok((access_token, access_ttl))
}

/// Token-bearing answers must never be cached (RFC 6749 5.1).
fn no_store(mut response: Response<ResBody>) -> Response<ResBody> {
    let headers = response.headers_mut();
    headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    headers.insert(PRAGMA, HeaderValue::from_static("no-cache"));
    response
}

/// Session ids are [`SID_BYTES`] random bytes: this many base64url characters.
const SID_LEN: usize = 22;
pub(crate) const SID_BYTES: usize = 16;
/// A refresh token is its session's id and then 32 random bytes, all base64url: still one
/// opaque string to clients, while the store finds the session's keys from the token alone.
const REFRESH_LEN: usize = SID_LEN + 43;

/// A new refresh token of session `sid`, and what the store keeps of it.
fn new_refresh_token(sid: &str) -> (String, RefreshKey) {
    let token = format!("{sid}{}", tokens::random_id(32));
    let key = RefreshKey {
        sid: sid.to_string(),
        digest: digest(&[token.as_bytes()]),
    };
    (token, key)
}

/// What the store knows a presented refresh token by; `None` when it has not the shape
/// of one of ours (then it is refused without a store round trip).
fn refresh_key(presented: &str) -> Option<RefreshKey> {
    let well_formed = presented.len() == REFRESH_LEN
        && presented
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    well_formed.then(|| RefreshKey {
        sid: presented[..SID_LEN].to_string(),
        digest: digest(&[presented.as_bytes()]),
    })
}

/// When access tokens of a revoked session have all expired, so the revocation can lapse.
fn revocation_horizon(call: &Call<'_>) -> i64 {
    call.runtime.revocation_horizon()
}

impl From<crate::store::StoreUnavailable> for GatewayError {
    fn from(_: crate::store::StoreUnavailable) -> Self {
        GatewayError::StoreUnavailable
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_refresh_token_carries_its_session_id_and_only_its_own_shape_is_read() {
        let sid = tokens::random_id(SID_BYTES);
        let (token, key) = new_refresh_token(&sid);
        assert!(token.starts_with(&sid) && token.len() == REFRESH_LEN);
        let read = refresh_key(&token).expect("our own token");
        assert_eq!((read.sid.as_str(), read.digest), (sid.as_str(), key.digest));
        assert_ne!(
            new_refresh_token(&sid).0,
            token,
            "random after the session id"
        );
        for bad in [
            &token[1..],
            &format!("{token}x"),
            &token.replace(&token[30..31], "{"),
        ] {
            assert!(refresh_key(bad).is_none(), "{bad}");
        }
        let access_like = format!("{}.{}", &token[..32], &token[33..]);
        assert!(refresh_key(&access_like).is_none());
    }
}
