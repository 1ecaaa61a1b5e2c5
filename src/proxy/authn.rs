//! Authentication stage: find the one credential, verify it, refuse revoked sessions.

use std::sync::Arc;

use http::header::{HeaderMap, HeaderName, AUTHORIZATION};

use super::routes::{AuthMode, Route};
use crate::error::GatewayError;
use crate::gateway::Runtime;
pub(crate) use crate::identity::Identity;
use crate::proxy::verified::ConnMemo;
use crate::tokens::{Policy, TokenError};

/// The credential a request carries.
pub(crate) struct Credential<'a> {
    pub token: &'a str,
}

/// Finds the token among the configured headers. Two credentials (two `Authorization`
/// headers, or tokens in two configured headers) are refused rather than guessed between.
pub(crate) fn credential<'a>(
    headers: &'a HeaderMap,
    names: &'a [HeaderName],
) -> Result<Option<Credential<'a>>, GatewayError> {
    let mut found: Option<Credential<'a>> = None;
    for name in names {
        let mut values = headers.get_all(name).iter();
        let Some(value) = values.next() else { continue };
        if values.next().is_some() || found.is_some() {
            return Err(GatewayError::InvalidRequest(
                "more than one credential was sent",
            ));
        }
        // UTF-8 is all the token text needs here (checking for visible ASCII byte by byte,
        // as `to_str` does, costs more than the rest of a cached check): only a token that
        // parses as a JWT and verifies is accepted, and such a token is ASCII.
        let text = std::str::from_utf8(value.as_bytes())
            .map_err(|_| GatewayError::InvalidToken(TokenError::Malformed))?;
        let token = if name == AUTHORIZATION {
            bearer(text)?
        } else {
            text.trim()
        };
        found = Some(Credential { token });
    }
    Ok(found)
}

/// `Bearer <token>`, the scheme compared case-insensitively (RFC 9110 11.1).
fn bearer(value: &str) -> Result<&str, GatewayError> {
    bearer_scheme(value)
        .filter(|token| !token.is_empty())
        .ok_or(GatewayError::InvalidToken(TokenError::Malformed))
}

/// The credential of an `Authorization` value whose scheme is `Bearer` (any case, any
/// blanks around and after it), possibly empty; `None` for any other scheme. The one
/// reading of the header: authentication takes the token from it, and with
/// `forward_token = false` forwarding removes exactly the values it says are bearer
/// credentials.
pub(crate) fn bearer_scheme(value: &str) -> Option<&str> {
    let value = value.trim_matches([' ', '\t']);
    let (scheme, rest) = value.split_once([' ', '\t']).unwrap_or((value, ""));
    scheme
        .eq_ignore_ascii_case("bearer")
        .then(|| rest.trim_matches([' ', '\t']))
}

/// Verifies a token (through the runtime's verified-token cache) and checks its session
/// was not revoked. No store round trip: access tokens are self-contained, and revocations
/// are a local lookup, made on every call whether the cache hit or not. `memo` is the
/// client connection's, when the token came on one.
pub(crate) fn verify(
    runtime: &Runtime,
    token: &str,
    memo: Option<&ConnMemo>,
) -> Result<Arc<Identity>, GatewayError> {
    let auth = &runtime.settings.auth;
    let policy = Policy {
        issuer: &auth.issuer,
        audience: &auth.audience,
        leeway_secs: auth.leeway.as_secs() as i64,
    };
    let checked = runtime
        .verified
        .verify(&auth.keys, &policy, token, memo)
        .and_then(|identity| {
            if identity
                .sid
                .as_deref()
                .is_some_and(|sid| runtime.store.is_revoked(sid))
            {
                Err(TokenError::Revoked)
            } else {
                Ok(identity)
            }
        });
    crate::ops::metrics::verification(checked.as_ref().map_or_else(|e| e.label(), |_| "valid"));
    checked.map_err(GatewayError::InvalidToken)
}

/// The route's auth policy: its auth mode, its `apps` and `auth = "phone"`. Returns the
/// verified identity, if any.
pub(crate) fn for_route(
    runtime: &Runtime,
    route: &Route,
    headers: &HeaderMap,
    memo: &ConnMemo,
) -> Result<Option<Arc<Identity>>, GatewayError> {
    if route.auth == AuthMode::None {
        return Ok(None);
    }
    let auth = &runtime.settings.auth;
    let Some(credential) = credential(headers, &auth.token_headers)? else {
        return match route.auth {
            AuthMode::Optional => Ok(None),
            _ => Err(GatewayError::MissingToken),
        };
    };
    let identity = verify(runtime, credential.token, Some(memo))?;
    if let Some(apps) = &route.apps {
        // A token that names no mini-program is of none of them.
        if !identity.appid.as_ref().is_some_and(|a| apps.contains(a)) {
            return Err(GatewayError::AppNotAllowed);
        }
    }
    if route.auth == AuthMode::Phone && identity.phone.is_none() {
        // The phone claim arrives with the token `/auth/phone` issues; older tokens lack it.
        return Err(GatewayError::PhoneRequired);
    }
    Ok(Some(identity))
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::proxy::headers::test_map as headers;

    fn names() -> Vec<HeaderName> {
        vec![AUTHORIZATION, HeaderName::from_static("x-token")]
    }

    #[test]
    fn the_bearer_scheme_is_case_insensitive() {
        for value in ["Bearer abc", "bearer abc", "BEARER  abc "] {
            let h = headers(&[("authorization", value)]);
            let names = names();
            let c = credential(&h, &names)
                .ok()
                .flatten()
                .map(|c| c.token.to_string());
            assert_eq!(c.as_deref(), Some("abc"), "{value}");
        }
    }

    #[test]
    fn one_reading_of_the_bearer_scheme_for_auth_and_for_stripping() {
        for (value, token) in [
            ("Bearer abc", Some("abc")),
            ("Bearer\tabc", Some("abc")),
            (" Bearer abc", Some("abc")),
            ("bearer \t abc \t", Some("abc")),
            ("Bearer", Some("")),
            ("Bearer   ", Some("")),
            ("Basic abc", None),
            ("Bearerabc", None),
            ("abc", None),
        ] {
            assert_eq!(bearer_scheme(value), token, "{value:?}");
        }
    }

    #[test]
    fn other_schemes_and_empty_bearers_are_invalid_tokens() {
        for value in ["Basic abc", "Bearer", "Bearer   ", "abc"] {
            let h = headers(&[("authorization", value)]);
            let names = names();
            assert!(
                matches!(credential(&h, &names), Err(GatewayError::InvalidToken(_))),
                "{value}"
            );
        }
    }

    #[test]
    fn two_credentials_are_refused() {
        let names = names();
        let twice = headers(&[("authorization", "Bearer a"), ("authorization", "Bearer b")]);
        assert!(matches!(
            credential(&twice, &names),
            Err(GatewayError::InvalidRequest(_))
        ));
        let two_headers = headers(&[("authorization", "Bearer a"), ("x-token", "b")]);
        assert!(matches!(
            credential(&two_headers, &names),
            Err(GatewayError::InvalidRequest(_))
        ));
    }

    #[test]
    fn other_configured_headers_carry_the_raw_token() {
        let names = names();
        let h = headers(&[("x-token", "raw.token.value")]);
        let c = credential(&h, &names)
            .ok()
            .flatten()
            .map(|c| c.token.to_string());
        assert_eq!(c.as_deref(), Some("raw.token.value"));
    }
}
