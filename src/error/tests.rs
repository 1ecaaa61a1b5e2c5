//! The error policy: who is blamed for what, the accessors, and the headers of the answers.

use super::*;

/// One of each variant (both codes of `InvalidToken`). The match makes a new variant a
/// compile error here until it is added to the list.
fn one_of_each() -> Vec<GatewayError> {
    use GatewayError::*;
    let all = vec![
        InvalidRequest("bad"),
        BadFraming("bad"),
        InvalidPath(crate::proxy::path::PathRejection::DotSegment),
        PayloadTooLarge,
        UriTooLong,
        HeadersTooLarge,
        RequestTimeout,
        MethodNotAllowed(vec![http::Method::GET]),
        NoRoute,
        MissingToken,
        InvalidToken(TokenError::Expired),
        InvalidToken(TokenError::BadSignature),
        NoSession,
        AppNotAllowed,
        PhoneRequired,
        InvalidGrant,
        DecryptFailed,
        RateLimited {
            retry_after_secs: 1,
        },
        AdminUnauthorized,
        InvalidCode,
        CodeUsed,
        CodeBlocked,
        LoginDenied,
        LoginHookFailed("timed out"),
        WechatBusy,
        WechatUnavailable("unreachable"),
        WechatTimeout,
        WechatQuota,
        WechatShedding {
            retry_after_secs: 1,
        },
        SessionKeyExpired,
        ServerMisconfigured(40013),
        StoreUnavailable,
        UpstreamUnavailable,
        UpstreamTimeout,
        Internal("bug"),
    ];
    for e in &all {
        match e {
            InvalidRequest(_)
            | BadFraming(_)
            | InvalidPath(_)
            | PayloadTooLarge
            | UriTooLong
            | HeadersTooLarge
            | RequestTimeout
            | MethodNotAllowed(_)
            | NoRoute
            | MissingToken
            | InvalidToken(_)
            | NoSession
            | AppNotAllowed
            | PhoneRequired
            | InvalidGrant
            | DecryptFailed
            | RateLimited { .. }
            | AdminUnauthorized
            | InvalidCode
            | CodeUsed
            | CodeBlocked
            | LoginDenied
            | LoginHookFailed(_)
            | WechatBusy
            | WechatUnavailable(_)
            | WechatTimeout
            | WechatQuota
            | WechatShedding { .. }
            | SessionKeyExpired
            | ServerMisconfigured(_)
            | StoreUnavailable
            | UpstreamUnavailable
            | UpstreamTimeout
            | Internal(_) => {}
        }
    }
    all
}

#[test]
fn the_client_is_blamed_exactly_for_4xx_answers() {
    for e in one_of_each() {
        let p = e.policy();
        match p.blame {
            Blame::Client => assert!(p.status.is_client_error(), "{e:?}: {p:?}"),
            Blame::Dependency | Blame::Gateway => {
                assert!(p.status.is_server_error(), "{e:?}: {p:?}")
            }
        }
    }
}

#[test]
fn the_accessors_and_the_response_follow_the_policy() {
    for e in one_of_each() {
        let p = e.policy();
        assert_eq!(
            (e.status(), e.code(), e.description(), e.blame()),
            (p.status, p.code, p.text.clone(), p.blame)
        );
        let response = e.into_response();
        assert_eq!(response.status(), p.status);
    }
}

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
