//! The WeChat API relay for legacy services, on the admin listener only:
//! `GET|POST /wechat/{path}` is sent to `{api_base}/{path}` with the managed `access_token`,
//! so backends call WeChat's server APIs without holding a token or the app secret.
//!
//! Only paths in `[wechat.relay] allow` are relayed (others are 404). `?appid=` picks the
//! app; every other query parameter is passed on except `access_token`, which wxgate sets.
//! WeChat's answer comes back as it was (status, `Content-Type`, body: QR codes are images),
//! except that a refused token (40001, 40014, 42001) is fetched again and the call retried
//! once; bodies are buffered both ways, within limits, so the retry can resend them.

use bytes::Bytes;
use http::header::{HeaderValue, CONTENT_TYPE};
use http::{Method, Request, Response, StatusCode};
use hyper::body::Incoming;
use serde_json::Value;

use super::token::{token_refused, Used};
use super::{errcode, Api, WechatClient};
use crate::body::{self, GuardedBody, ResBody};
use crate::error::GatewayError;
use crate::gateway::Gateway;

/// Where the relay lives on the admin listener.
pub const PREFIX: &str = "/wechat";
/// Request bodies (message payloads, content-security text) are small.
const MAX_REQUEST_BYTES: u64 = 1024 * 1024;
/// Answers can be images (`getwxacodeunlimit`), still bounded.
const MAX_ANSWER_BYTES: usize = 8 * 1024 * 1024;

/// WeChat's answer, passed back as it was.
struct Answer {
    status: StatusCode,
    content_type: Option<HeaderValue>,
    body: Bytes,
}

pub async fn handle(gateway: &Gateway, request: Request<Incoming>) -> Response<ResBody> {
    match relay(gateway, request).await {
        Ok(answer) => {
            let mut response = Response::new(body::full(answer.body));
            *response.status_mut() = answer.status;
            if let Some(content_type) = answer.content_type {
                response.headers_mut().insert(CONTENT_TYPE, content_type);
            }
            response
        }
        Err(error) => error.into_response(),
    }
}

async fn relay(gateway: &Gateway, request: Request<Incoming>) -> Result<Answer, GatewayError> {
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
    let wechat = &runtime.wechat;
    let outgoing = Outgoing {
        method,
        path: &path,
        query: &query,
        content_type,
        body,
    };
    let answer = wechat
        .with_token(app, &gateway.store, |token| {
            let outgoing = &outgoing;
            async move {
                let answer = wechat.relay_once(outgoing, token.expose()).await?;
                let code = answer_errcode(&answer);
                if code != 0 {
                    crate::ops::metrics::wechat_errcode("relay", code);
                }
                Ok(if token_refused(code) {
                    Used::TokenRefused
                } else {
                    Used::Done(answer)
                })
            }
        })
        .await?;
    tracing::info!(path = %path, appid = %app.appid, status = answer.status.as_u16(), "relayed a WeChat API call");
    Ok(answer)
}

struct Outgoing<'a> {
    method: Method,
    path: &'a str,
    query: &'a [(String, String)],
    content_type: Option<HeaderValue>,
    body: Bytes,
}

/// The errcode of a small JSON answer (0 for anything else: images, success).
fn answer_errcode(answer: &Answer) -> i64 {
    (answer.body.len() < 4096)
        .then(|| serde_json::from_slice::<Value>(&answer.body).ok())
        .flatten()
        .and_then(|v| errcode(&v).ok())
        .unwrap_or(0)
}

impl WechatClient {
    async fn relay_once(&self, out: &Outgoing<'_>, token: &str) -> Result<Answer, GatewayError> {
        let mut url = self.url(out.path)?;
        url.query_pairs_mut()
            .extend_pairs(out.query.iter())
            .append_pair("access_token", token);
        let mut request = self.http.request(out.method.clone(), url);
        if out.method == Method::POST {
            if let Some(content_type) = &out.content_type {
                request = request.header(CONTENT_TYPE, content_type.clone());
            }
            request = request.body(out.body.clone());
        }
        let call = async move {
            let response = request.send().await.map_err(|e| {
                let e = e.without_url();
                tracing::warn!(error = %e, "WeChat relay request failed");
                if e.is_timeout() {
                    GatewayError::WechatTimeout
                } else {
                    GatewayError::WechatUnavailable("unreachable")
                }
            })?;
            read_answer(response).await
        };
        self.bounded(Api::Relay, call, |answer| Some(answer_errcode(answer)))
            .await
    }
}

async fn read_answer(mut response: reqwest::Response) -> Result<Answer, GatewayError> {
    let status = response.status();
    let content_type = response.headers().get(CONTENT_TYPE).cloned();
    let mut body = Vec::new();
    loop {
        match response.chunk().await {
            Ok(Some(chunk)) if body.len() + chunk.len() > MAX_ANSWER_BYTES => {
                tracing::warn!("WeChat relay answer is too large");
                return Err(GatewayError::WechatUnavailable("oversized"));
            }
            Ok(Some(chunk)) => body.extend_from_slice(&chunk),
            Ok(None) => break,
            Err(e) => {
                tracing::warn!(error = %e.without_url(), "WeChat relay answer could not be read");
                return Err(GatewayError::WechatUnavailable("truncated"));
            }
        }
    }
    Ok(Answer {
        status,
        content_type,
        body: Bytes::from(body),
    })
}
