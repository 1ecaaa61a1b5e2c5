//! The one place where a failure becomes HTTP: status, stable `error` code, safe text, JSON
//! body, and the log line that says whose fault it was ([`respond`]).

use std::borrow::Cow;

use bytes::Bytes;
use http::header::{
    HeaderValue, ALLOW, CACHE_CONTROL, CONNECTION, CONTENT_TYPE, RETRY_AFTER, WWW_AUTHENTICATE,
};
use http::{Response, StatusCode};

use crate::body::{self, ResBody};
use crate::tokens::TokenError;

/// Everything that can end a request early. Variants name what happened; the client sees
/// only the fixed code and text of [`GatewayError::into_response`], never inner details.
#[derive(Debug, Clone, thiserror::Error)]
pub enum GatewayError {
    // The client's mistakes.
    #[error("invalid request: {0}")]
    InvalidRequest(&'static str),
    #[error("ambiguous request framing: {0}")]
    BadFraming(&'static str),
    #[error("invalid path: {0}")]
    InvalidPath(crate::proxy::path::PathRejection),
    #[error("payload too large")]
    PayloadTooLarge,
    #[error("URI too long")]
    UriTooLong,
    #[error("headers too large")]
    HeadersTooLarge,
    #[error("request timed out")]
    RequestTimeout,
    #[error("method not allowed")]
    MethodNotAllowed(Vec<http::Method>),
    #[error("no route")]
    NoRoute,
    #[error("missing token")]
    MissingToken,
    #[error("invalid token: {0}")]
    InvalidToken(TokenError),
    #[error("no session for this token")]
    NoSession,
    #[error("app not allowed on this route")]
    AppNotAllowed,
    #[error("phone number required")]
    PhoneRequired,
    #[error("invalid grant")]
    InvalidGrant,
    #[error("user data could not be decrypted")]
    DecryptFailed,
    #[error("rate limited")]
    RateLimited { retry_after_secs: u64 },
    #[error("the admin bearer token is missing or wrong")]
    AdminUnauthorized,
    // WeChat's answers about the login code.
    #[error("WeChat refused the code as invalid")]
    InvalidCode,
    #[error("the code was already used")]
    CodeUsed,
    #[error("WeChat blocked the login")]
    CodeBlocked,
    // The login hook's answers.
    #[error("the login hook denied the login")]
    LoginDenied,
    #[error("login hook failed: {0}")]
    LoginHookFailed(&'static str),
    // Dependencies failing.
    #[error("WeChat is busy")]
    WechatBusy,
    #[error("WeChat unavailable: {0}")]
    WechatUnavailable(&'static str),
    #[error("WeChat timed out")]
    WechatTimeout,
    #[error("WeChat daily quota exhausted")]
    WechatQuota,
    #[error("WeChat calls are being shed")]
    WechatShedding { retry_after_secs: u64 },
    #[error("the session_key is no longer valid at WeChat")]
    SessionKeyExpired,
    #[error("WeChat rejected our credentials (errcode {0})")]
    ServerMisconfigured(i64),
    #[error("session store unavailable")]
    StoreUnavailable,
    #[error("upstream unavailable")]
    UpstreamUnavailable,
    #[error("upstream timed out")]
    UpstreamTimeout,
    // Our own bugs.
    #[error("internal error: {0}")]
    Internal(&'static str),
}

/// How one failure is answered and logged, decided in one place ([`GatewayError::policy`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Policy {
    pub status: StatusCode,
    /// The stable `error` code of the JSON body.
    pub code: &'static str,
    /// Text safe to show a client: fixed strings, never inner error details.
    pub text: Cow<'static, str>,
    /// Who caused it, which decides its log level.
    pub blame: Blame,
}

/// Who caused a failure, which decides its log level.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Blame {
    Client,
    Dependency,
    Gateway,
}

fn policy(
    status: StatusCode,
    code: &'static str,
    blame: Blame,
    text: impl Into<Cow<'static, str>>,
) -> Policy {
    Policy {
        status,
        code,
        text: text.into(),
        blame,
    }
}

impl GatewayError {
    /// Status, code, blame and text of every variant. No arm is a wildcard: a new variant
    /// does not compile until someone decides how it is answered and whose fault it is.
    // One arm per variant, two lines each, so every decision is on one screen.
    #[rustfmt::skip]
    pub fn policy(&self) -> Policy {
        use Blame::{Client, Dependency, Gateway};
        use GatewayError::*;
        use StatusCode as S;
        match self {
            InvalidRequest(why) | BadFraming(why) => policy(S::BAD_REQUEST, "invalid_request", Client,
                *why),
            InvalidPath(_) => policy(S::BAD_REQUEST, "invalid_path", Client,
                "the request path is not accepted"),
            PayloadTooLarge => policy(S::PAYLOAD_TOO_LARGE, "payload_too_large", Client,
                "the request body is too large"),
            UriTooLong => policy(S::URI_TOO_LONG, "uri_too_long", Client,
                "the request URI is too long"),
            HeadersTooLarge => policy(S::REQUEST_HEADER_FIELDS_TOO_LARGE, "headers_too_large", Client,
                "the request headers are too large"),
            RequestTimeout => policy(S::REQUEST_TIMEOUT, "request_timeout", Client,
                "the request was not received in time"),
            MethodNotAllowed(_) => policy(S::METHOD_NOT_ALLOWED, "method_not_allowed", Client,
                "the method is not allowed here"),
            NoRoute => policy(S::NOT_FOUND, "no_route", Client,
                "no route matches this request"),
            MissingToken => policy(S::UNAUTHORIZED, "missing_token", Client,
                "an access token is required"),
            InvalidToken(TokenError::Expired) => policy(S::UNAUTHORIZED, "token_expired", Client,
                TokenError::Expired.to_string()),
            InvalidToken(e) => policy(S::UNAUTHORIZED, "invalid_token", Client,
                e.to_string()),
            NoSession => policy(S::UNAUTHORIZED, "invalid_token", Client,
                "the session of this token does not exist"),
            AppNotAllowed => policy(S::FORBIDDEN, "app_not_allowed", Client,
                "this mini-program may not use this route"),
            PhoneRequired => policy(S::FORBIDDEN, "phone_required", Client,
                "this route requires a shared phone number"),
            InvalidGrant => policy(S::BAD_REQUEST, "invalid_grant", Client,
                "the refresh token is invalid, expired or already used"),
            DecryptFailed => policy(S::BAD_REQUEST, "decrypt_failed", Client,
                "the user data could not be decrypted or verified"),
            RateLimited { .. } => policy(S::TOO_MANY_REQUESTS, "rate_limited", Client,
                "too many requests; retry later"),
            AdminUnauthorized => policy(S::UNAUTHORIZED, "unauthorized", Client,
                "this admin endpoint requires the admin bearer token"),
            InvalidCode => policy(S::BAD_REQUEST, "invalid_code", Client,
                "the login code is invalid or expired; call wx.login again"),
            CodeUsed => policy(S::BAD_REQUEST, "code_used", Client,
                "the login code was already used; call wx.login again"),
            CodeBlocked => policy(S::FORBIDDEN, "code_blocked", Client,
                "WeChat blocked this login"),
            LoginDenied => policy(S::FORBIDDEN, "login_denied", Client,
                "this account may not log in"),
            LoginHookFailed(_) => policy(S::BAD_GATEWAY, "login_hook_failed", Dependency,
                "the login could not be completed; retry with a new code"),
            WechatBusy | WechatShedding { .. } => policy(S::SERVICE_UNAVAILABLE, "wechat_busy", Dependency,
                "WeChat is busy; retry later"),
            WechatUnavailable(_) => policy(S::BAD_GATEWAY, "wechat_unavailable", Dependency,
                "WeChat could not be reached or answered badly"),
            WechatTimeout => policy(S::GATEWAY_TIMEOUT, "wechat_timeout", Dependency,
                "WeChat did not answer in time"),
            WechatQuota => policy(S::SERVICE_UNAVAILABLE, "wechat_quota_exceeded", Gateway,
                "the mini-program's daily WeChat API quota is exhausted"),
            SessionKeyExpired => policy(S::UNAUTHORIZED, "session_key_expired", Client,
                "the WeChat session expired; call wx.login and log in again"),
            ServerMisconfigured(_) => policy(S::BAD_GATEWAY, "server_misconfigured", Gateway,
                "the gateway's WeChat credentials were rejected"),
            StoreUnavailable => policy(S::SERVICE_UNAVAILABLE, "store_unavailable", Dependency,
                "the session store is unavailable; retry later"),
            UpstreamUnavailable => policy(S::BAD_GATEWAY, "upstream_unavailable", Dependency,
                "the upstream service is unavailable"),
            UpstreamTimeout => policy(S::GATEWAY_TIMEOUT, "upstream_timeout", Dependency,
                "the upstream service did not answer in time"),
            Internal(_) => policy(S::INTERNAL_SERVER_ERROR, "internal_error", Gateway,
                "internal error"),
        }
    }

    pub fn status(&self) -> StatusCode {
        self.policy().status
    }

    /// The stable `error` code of the JSON body.
    pub fn code(&self) -> &'static str {
        self.policy().code
    }

    /// Text safe to show a client: fixed strings, never inner error details.
    pub fn description(&self) -> Cow<'static, str> {
        self.policy().text
    }

    pub fn blame(&self) -> Blame {
        self.policy().blame
    }

    /// Framing problems leave the connection in an unknown state: it must be closed.
    fn closes_connection(&self) -> bool {
        matches!(
            self,
            GatewayError::BadFraming(_)
                | GatewayError::PayloadTooLarge
                | GatewayError::RequestTimeout
        )
    }

    pub fn into_response(self) -> Response<ResBody> {
        let Policy {
            status, code, text, ..
        } = self.policy();
        let mut response = json_response(
            status,
            &serde_json::json!({ "error": code, "error_description": text }),
        );
        let headers = response.headers_mut();
        match &self {
            GatewayError::MissingToken => {
                headers.insert(
                    WWW_AUTHENTICATE,
                    HeaderValue::from_static("Bearer realm=\"wxgate\""),
                );
            }
            GatewayError::InvalidToken(_) | GatewayError::NoSession => {
                let value = format!(
                    "Bearer realm=\"wxgate\", error=\"invalid_token\", error_description=\"{text}\""
                );
                if let Ok(v) = HeaderValue::from_str(&value) {
                    headers.insert(WWW_AUTHENTICATE, v);
                }
            }
            GatewayError::AdminUnauthorized => {
                headers.insert(
                    WWW_AUTHENTICATE,
                    HeaderValue::from_static("Bearer realm=\"wxgate-admin\""),
                );
            }
            GatewayError::RateLimited { retry_after_secs }
            | GatewayError::WechatShedding { retry_after_secs } => {
                headers.insert(RETRY_AFTER, HeaderValue::from(*retry_after_secs));
            }
            GatewayError::WechatBusy | GatewayError::StoreUnavailable => {
                headers.insert(RETRY_AFTER, HeaderValue::from_static("2"));
            }
            GatewayError::WechatQuota => {
                headers.insert(RETRY_AFTER, HeaderValue::from_static("3600"));
            }
            GatewayError::MethodNotAllowed(allowed) => {
                let list: Vec<&str> = allowed.iter().map(|m| m.as_str()).collect();
                if let Ok(v) = HeaderValue::from_str(&list.join(", ")) {
                    headers.insert(ALLOW, v);
                }
            }
            _ => {}
        }
        if self.closes_connection() {
            headers.insert(CONNECTION, HeaderValue::from_static("close"));
        }
        response
    }
}

/// The one way a failure is answered, on every listener: logged by who caused it (the
/// client's mistakes at debug, a failing dependency at warn, our own faults at error), then
/// turned into its response. Logging the error's `Display` is safe: it names what happened
/// with fixed text and never carries client input, secrets, codes, tokens or session keys.
pub(crate) fn respond(error: GatewayError) -> Response<ResBody> {
    match error.blame() {
        Blame::Client => tracing::debug!(error = %error, "request refused"),
        Blame::Dependency => tracing::warn!(error = %error, "dependency failed"),
        Blame::Gateway => tracing::error!(error = %error, "gateway error"),
    }
    error.into_response()
}

/// A JSON response with `Cache-Control: no-store`: nothing wxgate says is cacheable (the
/// JWKS, `endpoints/jwks.rs`, is the one exception).
pub(crate) fn json_response(status: StatusCode, value: &serde_json::Value) -> Response<ResBody> {
    let bytes = serde_json::to_vec(value).unwrap_or_else(|_| b"{}".to_vec());
    let mut response = Response::new(body::full(Bytes::from(bytes)));
    *response.status_mut() = status;
    let headers = response.headers_mut();
    headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

#[cfg(test)]
mod tests;
