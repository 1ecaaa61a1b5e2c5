//! Hook claims: what the login hook may put into a session, its tokens (`ext`) and the
//! claim headers upstream. One set of rules, used by the config, the hook client and token
//! verification alike, because every value may end up as a header value.

use serde_json::{Map, Value};

/// The claims of a session, under `ext` in its tokens: names to scalar values.
pub type Ext = Map<String, Value>;

/// Names of registered JWT claims (and wxgate's own): never a hook claim, never a claim header.
pub(crate) const REGISTERED_CLAIMS: [&str; 11] = [
    "iss", "sub", "aud", "exp", "nbf", "iat", "jti", "sid", "appid", "unionid", "ext",
];
/// The phone number comes from WeChat through `/auth/phone`, never from the hook; it may
/// still be a claim header (injecting the session's verified phone).
pub(crate) const PHONE: &str = "phone";
/// Longest claim string: it becomes a header value.
pub(crate) const MAX_STRING_BYTES: usize = 256;
/// Most bytes the serialized claims may take, so that a token carrying them stays well
/// under [`crate::tokens::MAX_TOKEN_BYTES`] whatever the signing key (an RSA-8192
/// signature alone is 1366 characters).
pub(crate) const MAX_EXT_BYTES: usize = 1024;
/// Longest phone number claim (`+86 138 0013 8000` and the like).
pub(crate) const MAX_PHONE_LEN: usize = 32;

/// Why a set of claims was refused; the text names the claim and is safe to log.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum ClaimProblem {
    #[error("claim name `{0}` is not 1 to 64 of [A-Za-z0-9_]")]
    BadName(String),
    #[error("claim `{0}` is reserved for wxgate")]
    Reserved(String),
    #[error("claim `{0}` is not a string, number or boolean")]
    NotScalar(String),
    #[error("claim `{0}` is longer than 256 bytes or holds control characters")]
    BadString(String),
    #[error("the claims take more than 1024 bytes")]
    TooLarge,
}

/// `^[A-Za-z0-9_]{1,64}$`.
pub(crate) fn is_claim_name(name: &str) -> bool {
    (1..=64).contains(&name.len()) && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
}

/// A name the hook may not set: a registered claim or `phone`.
pub(crate) fn is_reserved(name: &str) -> bool {
    name == PHONE || REGISTERED_CLAIMS.contains(&name)
}

/// Checks every rule: names, reservation, scalar values, string limits, total size.
pub(crate) fn check(ext: &Ext) -> Result<(), ClaimProblem> {
    for (name, value) in ext {
        if !is_claim_name(name) {
            return Err(ClaimProblem::BadName(truncated(name)));
        }
        if is_reserved(name) {
            return Err(ClaimProblem::Reserved(name.clone()));
        }
        match value {
            Value::String(s) if s.len() > MAX_STRING_BYTES || s.chars().any(char::is_control) => {
                return Err(ClaimProblem::BadString(name.clone()))
            }
            Value::String(_) | Value::Number(_) | Value::Bool(_) => {}
            Value::Null | Value::Array(_) | Value::Object(_) => {
                return Err(ClaimProblem::NotScalar(name.clone()))
            }
        }
    }
    if serde_json::to_vec(ext).map_or(true, |bytes| bytes.len() > MAX_EXT_BYTES) {
        return Err(ClaimProblem::TooLarge);
    }
    Ok(())
}

/// A claim value as header text: strings as they are, numbers and booleans as JSON writes them.
pub(crate) fn render(value: &Value) -> Option<std::borrow::Cow<'_, str>> {
    match value {
        Value::String(s) => Some(std::borrow::Cow::Borrowed(s)),
        Value::Number(n) => Some(std::borrow::Cow::Owned(n.to_string())),
        Value::Bool(b) => Some(std::borrow::Cow::Borrowed(if *b {
            "true"
        } else {
            "false"
        })),
        _ => None,
    }
}

/// A phone number claim: 1 to 32 characters of `[0-9+ -]`.
pub(crate) fn is_phone(value: &str) -> bool {
    (1..=MAX_PHONE_LEN).contains(&value.len())
        && value
            .bytes()
            .all(|b| b.is_ascii_digit() || matches!(b, b'+' | b' ' | b'-'))
}

/// A name as it may appear in a log line: at most 64 bytes, control characters escaped.
fn truncated(name: &str) -> String {
    let cut: String = name.chars().take(64).collect();
    cut.escape_debug().to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn ext(value: Value) -> Ext {
        match value {
            Value::Object(map) => map,
            _ => Ext::new(),
        }
    }

    #[test]
    fn scalars_with_plain_names_are_accepted() {
        let good = ext(json!({"uid": 42, "role": "管理员", "vip": false, "Score_2": -1.5}));
        assert_eq!(check(&good), Ok(()));
        assert_eq!(check(&Ext::new()), Ok(()));
    }

    #[test]
    fn names_must_be_plain_and_unreserved() {
        for name in ["", "a-b", "a.b", "a b", "x\r\ny", "名", &"a".repeat(65)] {
            let claims = ext(json!({ name: 1 }));
            assert!(
                matches!(check(&claims), Err(ClaimProblem::BadName(_))),
                "{name:?}"
            );
        }
        for name in REGISTERED_CLAIMS.iter().chain([&PHONE]) {
            let claims = ext(json!({ *name: "x" }));
            assert_eq!(
                check(&claims),
                Err(ClaimProblem::Reserved(name.to_string()))
            );
        }
    }

    #[test]
    fn values_must_be_short_clean_scalars() {
        for value in [json!(null), json!([1]), json!({"a": 1})] {
            let claims = ext(json!({ "uid": value }));
            assert_eq!(check(&claims), Err(ClaimProblem::NotScalar("uid".into())));
        }
        for value in [
            "a\r\nX-OpenId: evil",
            "tab\there",
            "nul\0",
            "del\u{7f}",
            "c1\u{85}",
        ] {
            let claims = ext(json!({ "uid": value }));
            assert_eq!(check(&claims), Err(ClaimProblem::BadString("uid".into())));
        }
        let long = ext(json!({ "uid": "x".repeat(257) }));
        assert_eq!(check(&long), Err(ClaimProblem::BadString("uid".into())));
        let longest = ext(json!({ "uid": "x".repeat(256) }));
        assert_eq!(check(&longest), Ok(()));
    }

    #[test]
    fn the_whole_set_is_bounded() {
        let mut many = Ext::new();
        for i in 0..8 {
            many.insert(format!("c{i}"), json!("x".repeat(200)));
        }
        assert_eq!(check(&many), Err(ClaimProblem::TooLarge));
    }

    #[test]
    fn values_render_as_header_text() {
        assert_eq!(render(&json!("a b")).as_deref(), Some("a b"));
        assert_eq!(render(&json!(42)).as_deref(), Some("42"));
        assert_eq!(render(&json!(-1.5)).as_deref(), Some("-1.5"));
        assert_eq!(render(&json!(true)).as_deref(), Some("true"));
        assert_eq!(render(&json!(null)), None);
    }

    #[test]
    fn phone_numbers_are_digits_and_separators() {
        for good in ["13800138000", "+86 138-0013-8000", "1"] {
            assert!(is_phone(good), "{good}");
        }
        for bad in ["", "138\r\n", "tel:138", &"1".repeat(33), "１３８"] {
            assert!(!is_phone(bad), "{bad}");
        }
    }
}
