//! The WeChat API relay for legacy services, on the admin listener only:
//! `GET|POST /wechat/{path}` is sent to `{api_base}/{path}` with the managed `access_token`,
//! so backends call WeChat's server APIs without holding a token or the app secret.
//!
//! Only paths in `[wechat.relay] allow` are relayed (others are 404). `?appid=` picks the
//! app; every other query parameter is passed on except `access_token`, which wxgate sets.
//! WeChat's answer comes back as it was (status, `Content-Type`, body: QR codes are images),
//! except that a refused token (40001, 40014, 42001) is fetched again and the call retried
//! once; bodies are buffered both ways, within limits, so the retry can resend them. The
//! call itself, token and retry included, is the WeChat client's
//! ([`WechatClient::relay`](crate::wechat::WechatClient::relay)).

use http::header::CONTENT_TYPE;
use http::{Method, Request, Response};
use hyper::body::Incoming;

use crate::body::{self, GuardedBody, ResBody};
use crate::error::{respond, GatewayError};
use crate::gateway::Gateway;
use crate::wechat::{RelayAnswer, RelayCall};

/// Where the relay lives on the admin listener.
pub(crate) const PREFIX: &str = "/wechat";
/// Request bodies (message payloads, content-security text) are small.
const MAX_REQUEST_BYTES: u64 = 1024 * 1024;

pub(crate) async fn handle(gateway: &Gateway, request: Request<Incoming>) -> Response<ResBody> {
    match relay(gateway, request).await {
        Ok(answer) => {
            let mut response = Response::new(body::full(answer.body));
            *response.status_mut() = answer.status;
            if let Some(content_type) = answer.content_type {
                response.headers_mut().insert(CONTENT_TYPE, content_type);
            }
            response
        }
        Err(error) => respond(error),
    }
}

async fn relay(gateway: &Gateway, request: Request<Incoming>) -> Result<RelayAnswer, GatewayError> {
    let runtime = gateway.runtime();
    let settings = &runtime.settings;
    let relay = &settings.wechat.relay;
    let path = request
        .uri()
        .path()
        .strip_prefix(PREFIX)
        .filter(|p| relay.enabled && relay.allow.iter().any(|a| a == p))
        .ok_or(GatewayError::NoRoute)?
        .to_string();
    if !matches!(*request.method(), Method::GET | Method::POST) {
        return Err(GatewayError::MethodNotAllowed(vec![
            Method::GET,
            Method::POST,
        ]));
    }
    let mut appid = None;
    let mut query = Vec::new();
    for (name, value) in url::form_urlencoded::parse(request.uri().query().unwrap_or("").as_bytes())
    {
        match name.as_ref() {
            "appid" => appid = Some(value.into_owned()),
            "access_token" => {}
            _ => query.push((name.into_owned(), value.into_owned())),
        }
    }
    let app = settings
        .wechat
        .app(appid.as_deref())
        .ok_or(GatewayError::InvalidRequest("unknown appid"))?;
    let method = request.method().clone();
    let content_type = request.headers().get(CONTENT_TYPE).cloned();
    let deadline = tokio::time::Instant::now() + settings.server.request_timeout;
    let limit = MAX_REQUEST_BYTES.min(settings.server.max_body_bytes);
    let body = GuardedBody::new(request.into_body(), limit, deadline)
        .collect_bytes()
        .await?;
    let call = RelayCall {
        method,
        path: &path,
        query: &query,
        content_type,
        body,
    };
    let answer = runtime.wechat.relay(app, &gateway.store, &call).await?;
    tracing::info!(path = %path, appid = %app.appid, status = answer.status.as_u16(), "relayed a WeChat API call");
    Ok(answer)
}
