//! The one place where a failure becomes HTTP: status, stable `error` code, safe text, JSON body.

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

/// Who caused a failure, which decides its log level.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Blame {
    Client,
    Dependency,
    Gateway,
}

impl GatewayError {
    pub fn status(&self) -> StatusCode {
        use GatewayError::*;
        match self {
            InvalidRequest(_) | BadFraming(_) | InvalidPath(_) | InvalidGrant | DecryptFailed
            | InvalidCode | CodeUsed => StatusCode::BAD_REQUEST,
            PayloadTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            UriTooLong => StatusCode::URI_TOO_LONG,
            HeadersTooLarge => StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            RequestTimeout => StatusCode::REQUEST_TIMEOUT,
            MethodNotAllowed(_) => StatusCode::METHOD_NOT_ALLOWED,
            NoRoute => StatusCode::NOT_FOUND,
            MissingToken | InvalidToken(_) | NoSession | SessionKeyExpired | AdminUnauthorized => {
                StatusCode::UNAUTHORIZED
            }
            AppNotAllowed | PhoneRequired | CodeBlocked | LoginDenied => StatusCode::FORBIDDEN,
            RateLimited { .. } => StatusCode::TOO_MANY_REQUESTS,
            WechatBusy | WechatShedding { .. } | WechatQuota | StoreUnavailable => {
                StatusCode::SERVICE_UNAVAILABLE
            }
            WechatUnavailable(_)
            | ServerMisconfigured(_)
            | UpstreamUnavailable
            | LoginHookFailed(_) => StatusCode::BAD_GATEWAY,
            WechatTimeout | UpstreamTimeout => StatusCode::GATEWAY_TIMEOUT,
            Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// The stable `error` code of the JSON body.
    pub fn code(&self) -> &'static str {
        use GatewayError::*;
        match self {
            InvalidRequest(_) | BadFraming(_) => "invalid_request",
            InvalidPath(_) => "invalid_path",
            PayloadTooLarge => "payload_too_large",
            UriTooLong => "uri_too_long",
            HeadersTooLarge => "headers_too_large",
            RequestTimeout => "request_timeout",
            MethodNotAllowed(_) => "method_not_allowed",
            NoRoute => "no_route",
            MissingToken => "missing_token",
            InvalidToken(TokenError::Expired) => "token_expired",
            InvalidToken(_) | NoSession => "invalid_token",
            AppNotAllowed => "app_not_allowed",
            PhoneRequired => "phone_required",
            InvalidGrant => "invalid_grant",
            DecryptFailed => "decrypt_failed",
            RateLimited { .. } => "rate_limited",
            AdminUnauthorized => "unauthorized",
            InvalidCode => "invalid_code",
            CodeUsed => "code_used",
            CodeBlocked => "code_blocked",
            LoginDenied => "login_denied",
            LoginHookFailed(_) => "login_hook_failed",
            WechatBusy | WechatShedding { .. } => "wechat_busy",
            WechatUnavailable(_) => "wechat_unavailable",
            WechatTimeout => "wechat_timeout",
            WechatQuota => "wechat_quota_exceeded",
            SessionKeyExpired => "session_key_expired",
            ServerMisconfigured(_) => "server_misconfigured",
            StoreUnavailable => "store_unavailable",
            UpstreamUnavailable => "upstream_unavailable",
            UpstreamTimeout => "upstream_timeout",
            Internal(_) => "internal_error",
        }
    }

    /// Text safe to show a client: fixed strings, never inner error details.
    pub fn description(&self) -> Cow<'static, str> {
        use GatewayError::*;
        Cow::Borrowed(match self {
            InvalidRequest(why) | BadFraming(why) => why,
            InvalidPath(_) => "the request path is not accepted",
            PayloadTooLarge => "the request body is too large",
            UriTooLong => "the request URI is too long",
            HeadersTooLarge => "the request headers are too large",
            RequestTimeout => "the request was not received in time",
            MethodNotAllowed(_) => "the method is not allowed here",
            NoRoute => "no route matches this request",
            MissingToken => "an access token is required",
            InvalidToken(e) => return Cow::Owned(e.to_string()),
            NoSession => "the session of this token does not exist",
            AppNotAllowed => "this mini-program may not use this route",
            PhoneRequired => "this route requires a shared phone number",
            InvalidGrant => "the refresh token is invalid, expired or already used",
            DecryptFailed => "the user data could not be decrypted or verified",
            RateLimited { .. } => "too many requests; retry later",
            AdminUnauthorized => "this admin endpoint requires the admin bearer token",
            InvalidCode => "the login code is invalid or expired; call wx.login again",
            CodeUsed => "the login code was already used; call wx.login again",
            CodeBlocked => "WeChat blocked this login",
            LoginDenied => "this account may not log in",
            LoginHookFailed(_) => "the login could not be completed; retry with a new code",
            WechatBusy | WechatShedding { .. } => "WeChat is busy; retry later",
            WechatUnavailable(_) => "WeChat could not be reached or answered badly",
            WechatTimeout => "WeChat did not answer in time",
            WechatQuota => "the mini-program's daily WeChat API quota is exhausted",
            SessionKeyExpired => "the WeChat session expired; call wx.login and log in again",
            ServerMisconfigured(_) => "the gateway's WeChat credentials were rejected",
            StoreUnavailable => "the session store is unavailable; retry later",
            UpstreamUnavailable => "the upstream service is unavailable",
            UpstreamTimeout => "the upstream service did not answer in time",
            Internal(_) => "internal error",
        })
    }

    pub fn blame(&self) -> Blame {
        use GatewayError::*;
        match self {
            WechatBusy
            | WechatShedding { .. }
            | WechatUnavailable(_)
            | WechatTimeout
            | StoreUnavailable
            | UpstreamUnavailable
            | UpstreamTimeout
            | LoginHookFailed(_) => Blame::Dependency,
            ServerMisconfigured(_) | WechatQuota | Internal(_) => Blame::Gateway,
            _ => Blame::Client,
        }
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
        let status = self.status();
        let mut response = json_response(
            status,
            &serde_json::json!({ "error": self.code(), "error_description": self.description() }),
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
                    "Bearer realm=\"wxgate\", error=\"invalid_token\", error_description=\"{}\"",
                    self.description()
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

/// A JSON response with `Cache-Control: no-store`: nothing wxgate says is cacheable (the
/// JWKS, `endpoints/jwks.rs`, is the one exception).
pub fn json_response(status: StatusCode, value: &serde_json::Value) -> Response<ResBody> {
    let bytes = serde_json::to_vec(value).unwrap_or_else(|_| b"{}".to_vec());
    let mut response = Response::new(body::full(Bytes::from(bytes)));
    *response.status_mut() = status;
    let headers = response.headers_mut();
    headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expired_tokens_have_their_own_code_and_a_bearer_challenge() {
        let response = GatewayError::InvalidToken(TokenError::Expired).into_response();
        assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
        let challenge = response.headers()[WWW_AUTHENTICATE]
            .to_str()
            .unwrap_or_default();
        assert!(challenge.starts_with("Bearer realm=\"wxgate\", error=\"invalid_token\""));
        assert_eq!(
            GatewayError::InvalidToken(TokenError::Expired).code(),
            "token_expired"
        );
    }

    #[test]
    fn missing_tokens_get_a_challenge_without_an_error_attribute() {
        let response = GatewayError::MissingToken.into_response();
        assert_eq!(
            response.headers()[WWW_AUTHENTICATE],
            "Bearer realm=\"wxgate\""
        );
    }

    #[test]
    fn inner_details_never_reach_the_description() {
        let e = GatewayError::ServerMisconfigured(40125);
        assert!(!e.description().contains("40125"));
        assert_eq!(e.status(), StatusCode::BAD_GATEWAY);
    }

    #[test]
    fn login_hook_answers_map_to_their_codes_without_details() {
        let denied = GatewayError::LoginDenied;
        assert_eq!(
            (denied.status(), denied.code()),
            (StatusCode::FORBIDDEN, "login_denied")
        );
        let failed = GatewayError::LoginHookFailed("answered 500");
        assert_eq!(
            (failed.status(), failed.code()),
            (StatusCode::BAD_GATEWAY, "login_hook_failed")
        );
        assert!(!failed.description().contains("500"));
        assert_eq!(failed.blame(), Blame::Dependency);
    }

    #[test]
    fn rate_limits_say_when_to_retry() {
        let response = GatewayError::RateLimited {
            retry_after_secs: 60,
        }
        .into_response();
        assert_eq!(response.headers()[RETRY_AFTER], "60");
        assert_eq!(response.status(), StatusCode::TOO_MANY_REQUESTS);
    }
}
