//! The WeChat client's side of the API relay ([`crate::ops::relay`]): one call sent as the
//! relay received it, with the app's managed `access_token` added, and WeChat's answer read
//! back as it is (status, `Content-Type`, body), within a size bound.

use bytes::Bytes;
use http::header::{HeaderValue, CONTENT_TYPE};
use http::{Method, StatusCode};
use serde_json::Value;

use super::token::{token_refused, Used};
use super::{errcode, Api, WechatClient};
use crate::error::GatewayError;
use crate::settings::App;
use crate::store::Store;

/// Answers can be images (`getwxacodeunlimit`), still bounded.
const MAX_ANSWER_BYTES: usize = 8 * 1024 * 1024;

/// A call to relay: WeChat's API path, the query without `access_token`, and the body
/// (kept whole, so a retry with a new token can send it again).
pub struct RelayCall<'a> {
    pub method: Method,
    pub path: &'a str,
    pub query: &'a [(String, String)],
    pub content_type: Option<HeaderValue>,
    pub body: Bytes,
}

/// WeChat's answer, passed back as it was.
pub struct RelayAnswer {
    pub status: StatusCode,
    pub content_type: Option<HeaderValue>,
    pub body: Bytes,
}

impl WechatClient {
    /// Sends `call` with `app`'s managed token; when WeChat refuses the token, fetches it
    /// again and sends the call once more.
    pub async fn relay(
        &self,
        app: &App,
        store: &Store,
        call: &RelayCall<'_>,
    ) -> Result<RelayAnswer, GatewayError> {
        self.with_token(app, store, |token| async move {
            let answer = self.relay_once(call, token.expose()).await?;
            let code = answer_errcode(&answer);
            if code != 0 {
                crate::ops::metrics::wechat_errcode("relay", code);
            }
            Ok(if token_refused(code) {
                Used::TokenRefused
            } else {
                Used::Done(answer)
            })
        })
        .await
    }

    async fn relay_once(
        &self,
        out: &RelayCall<'_>,
        token: &str,
    ) -> Result<RelayAnswer, GatewayError> {
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

/// The errcode of a small JSON answer (0 for anything else: images, success).
fn answer_errcode(answer: &RelayAnswer) -> i64 {
    (answer.body.len() < 4096)
        .then(|| serde_json::from_slice::<Value>(&answer.body).ok())
        .flatten()
        .and_then(|v| errcode(&v).ok())
        .unwrap_or(0)
}

async fn read_answer(mut response: reqwest::Response) -> Result<RelayAnswer, GatewayError> {
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
    Ok(RelayAnswer {
        status,
        content_type,
        body: Bytes::from(body),
    })
}
