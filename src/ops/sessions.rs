//! The operator's session and user endpoints, on the admin listener:
//!
//! - `GET /sessions?openid=…` (or `unionid=`, and `appid=` to narrow): a user's sessions;
//! - `POST /sessions/revoke` `{"openid"|"unionid"|"session_id", "appid"?}`: ends them on
//!   every instance;
//! - `POST /users/block` `{"openid", "appid"?, "until"}` and `POST /users/unblock`
//!   `{"openid", "appid"?}`: refuse (or allow again) that user's logins and refreshes.
//!
//! With `[admin] token_file` set, each needs `Authorization: Bearer <token>`; health and
//! metrics stay open either way. Answers never carry a `session_key`.

use http::header::AUTHORIZATION;
use http::{HeaderMap, Method, Request, Response, StatusCode};
use hyper::body::Incoming;
use serde_json::{json, Map, Value};

use crate::body::{GuardedBody, ResBody};
use crate::error::{json_response, GatewayError};
use crate::gateway::{Gateway, Runtime};
use crate::store::{Session, User, EVERY_APP};
use crate::tokens::{is_safe_id, now_unix};

const MAX_BODY: u64 = 16 * 1024;
/// The furthest a block may reach: a hundred years.
const MAX_BLOCK_SECS: i64 = 100 * 365 * 24 * 3600;

/// Whether `path` is one of these endpoints.
pub(crate) fn serves(path: &str) -> bool {
    matches!(
        path,
        "/sessions" | "/sessions/revoke" | "/users/block" | "/users/unblock"
    )
}

pub(crate) async fn handle(gateway: &Gateway, request: Request<Incoming>) -> Response<ResBody> {
    let runtime = gateway.runtime();
    match answer(&runtime, request).await {
        Ok(response) => response,
        Err(error) => error.into_response(),
    }
}

async fn answer(
    runtime: &Runtime,
    request: Request<Incoming>,
) -> Result<Response<ResBody>, GatewayError> {
    authorize(runtime, request.headers())?;
    let path = request.uri().path().to_string();
    let method = request.method().clone();
    match (path.as_str(), method) {
        ("/sessions", Method::GET | Method::HEAD) => list(runtime, request.uri().query()).await,
        ("/sessions", _) => Err(GatewayError::MethodNotAllowed(vec![Method::GET])),
        (_, Method::POST) => {
            let body = json_body(runtime, request).await?;
            match path.as_str() {
                "/sessions/revoke" => revoke(runtime, &body).await,
                "/users/block" => block(runtime, &body).await,
                _ => unblock(runtime, &body).await,
            }
        }
        _ => Err(GatewayError::MethodNotAllowed(vec![Method::POST])),
    }
}

/// With a configured token, the request must carry it as a bearer credential. Both sides
/// are hashed first, so the comparison takes the same time whatever the lengths.
fn authorize(runtime: &Runtime, headers: &HeaderMap) -> Result<(), GatewayError> {
    let Some(expected) = &runtime.settings.admin_token else {
        return Ok(());
    };
    let presented = headers
        .get(AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split_once(' '))
        .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
        .map(|(_, token)| token.trim())
        .ok_or(GatewayError::AdminUnauthorized)?;
    let digest = |text: &str| crate::store::digest(&[text.as_bytes()]);
    aws_lc_rs::constant_time::verify_slices_are_equal(
        &digest(presented),
        &digest(expected.expose()),
    )
    .map_err(|_| GatewayError::AdminUnauthorized)
}

async fn list(runtime: &Runtime, query: Option<&str>) -> Result<Response<ResBody>, GatewayError> {
    let mut fields = Map::new();
    for (name, value) in url::form_urlencoded::parse(query.unwrap_or("").as_bytes()) {
        if fields.insert(name.into_owned(), json!(value)).is_some() {
            return Err(GatewayError::InvalidRequest(
                "a query parameter is repeated",
            ));
        }
    }
    let user = user_of(&fields)?;
    let appid = app_filter(runtime, &fields)?;
    let sessions = runtime.store.sessions_of(user, appid).await?;
    let listed: Vec<Value> = sessions.iter().map(describe).collect();
    Ok(json_response(
        StatusCode::OK,
        &json!({ "sessions": listed }),
    ))
}

/// What the operator sees of a session: never the `session_key`, the claims or the phone.
fn describe(session: &Session) -> Value {
    let mut out = json!({
        "session_id": session.sid,
        "appid": session.appid,
        "openid": session.openid,
        "created_at": session.created_at,
        "refreshed_at": session.refreshed_at,
        "expires_at": session.expires_at,
    });
    if let Some(unionid) = &session.unionid {
        out["unionid"] = json!(unionid);
    }
    out
}

async fn revoke(
    runtime: &Runtime,
    body: &Map<String, Value>,
) -> Result<Response<ResBody>, GatewayError> {
    let until = runtime.revocation_horizon();
    let ended = match text(body, "session_id")? {
        Some(sid) => {
            if body.contains_key("openid") || body.contains_key("unionid") {
                return Err(GatewayError::InvalidRequest(
                    "name a session_id, an openid or a unionid, one of them",
                ));
            }
            runtime.store.revoke(sid, until).await?;
            vec![sid.to_string()]
        }
        None => {
            let user = user_of(body)?;
            let appid = app_filter(runtime, body)?;
            runtime.store.revoke_user(user, appid, until).await?
        }
    };
    tracing::info!(sessions = ended.len(), "operator revoked sessions");
    let answer = json!({ "revoked": ended.len(), "session_ids": ended });
    Ok(json_response(StatusCode::OK, &answer))
}

async fn block(
    runtime: &Runtime,
    body: &Map<String, Value>,
) -> Result<Response<ResBody>, GatewayError> {
    let openid = openid_of(body)?;
    let appid = app_filter(runtime, body)?;
    let now = now_unix();
    let until = match body.get("until") {
        Some(Value::Number(n)) => n
            .as_i64()
            .filter(|u| *u > now && *u - now <= MAX_BLOCK_SECS),
        _ => None,
    }
    .ok_or(GatewayError::InvalidRequest(
        "`until` must be a future Unix time in seconds (at most a hundred years away)",
    ))?;
    let scope = appid.unwrap_or(EVERY_APP);
    runtime.store.block(openid, scope, until).await?;
    tracing::info!(appid = scope, until, "operator blocked a user's logins");
    let answer = json!({ "openid": openid, "appid": appid, "until": until });
    Ok(json_response(StatusCode::OK, &answer))
}

async fn unblock(
    runtime: &Runtime,
    body: &Map<String, Value>,
) -> Result<Response<ResBody>, GatewayError> {
    let openid = openid_of(body)?;
    let scope = app_filter(runtime, body)?.unwrap_or(EVERY_APP);
    let lifted = runtime.store.unblock(openid, scope).await?;
    tracing::info!(appid = scope, lifted, "operator unblocked a user's logins");
    Ok(json_response(
        StatusCode::OK,
        &json!({ "unblocked": lifted }),
    ))
}

/// The user named by exactly one of `openid` and `unionid`.
fn user_of(fields: &Map<String, Value>) -> Result<User<'_>, GatewayError> {
    match (text(fields, "openid")?, text(fields, "unionid")?) {
        (Some(openid), None) => Ok(User::Openid(openid)),
        (None, Some(unionid)) => Ok(User::Unionid(unionid)),
        _ => Err(GatewayError::InvalidRequest(
            "name the user by `openid` or by `unionid`, one of them",
        )),
    }
}

fn openid_of(fields: &Map<String, Value>) -> Result<&str, GatewayError> {
    text(fields, "openid")?.ok_or(GatewayError::InvalidRequest("`openid` is required"))
}

/// The optional `appid`, which must be a configured mini-program.
fn app_filter<'a>(
    runtime: &Runtime,
    fields: &'a Map<String, Value>,
) -> Result<Option<&'a str>, GatewayError> {
    let appid = text(fields, "appid")?;
    match appid {
        Some(id) if runtime.settings.wechat.app(Some(id)).is_none() => {
            Err(GatewayError::InvalidRequest("unknown appid"))
        }
        _ => Ok(appid),
    }
}

/// An optional id field: absent, or `^[A-Za-z0-9_-]{1,64}$`.
fn text<'a>(fields: &'a Map<String, Value>, name: &str) -> Result<Option<&'a str>, GatewayError> {
    match fields.get(name) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(id)) if is_safe_id(id) => Ok(Some(id)),
        Some(_) => Err(GatewayError::InvalidRequest(
            "ids must be strings of 1 to 64 characters from [A-Za-z0-9_-]",
        )),
    }
}

async fn json_body(
    runtime: &Runtime,
    request: Request<Incoming>,
) -> Result<Map<String, Value>, GatewayError> {
    let deadline = tokio::time::Instant::now() + runtime.settings.server.request_timeout;
    GuardedBody::new(request.into_body(), MAX_BODY, deadline)
        .collect_json_object()
        .await
}
