//! `jscode2session`: code bookkeeping (single use, magic prefixes), the session_keys it
//! hands out and the openids and unionids it derives.

use aws_lc_rs::digest;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine as _;
use hyper::StatusCode;
use serde_json::json;

use super::wire::{errcode_from_code, json_resp, malformed_login, param, raw_resp, TEXT};
use super::{random_bytes, MockWechat, Params, Resp};

impl MockWechat {
    /// The session_key most recently issued to `openid` (base64 text), so tests can encrypt user data for it.
    pub fn session_key(&self, openid: &str) -> Option<String> {
        self.state().session_keys.get(openid).cloned()
    }

    /// Ends `openid`'s session_key at WeChat (the user logged in elsewhere, or it expired):
    /// `checksession` answers 87009 for it from now on.
    pub fn expire_session_key(&self, openid: &str) {
        self.state().session_keys.remove(openid);
    }

    /// The openid the mock derives for (appid, code) — deterministic. A code
    /// `same-{user}-{anything}` stands for one user logging in again (another device, a
    /// new `wx.login`): its openid comes from `{user}` alone.
    pub fn openid_for(appid: &str, code: &str) -> String {
        format!("o{}", hash27(&format!("{appid}:{}", user_of(code))))
    }

    /// The unionid of a code that asks for one: one per user across every app, as WeChat
    /// gives one per user across an open-platform account's apps.
    pub fn unionid_for(appid: &str, code: &str) -> String {
        match code.starts_with("same-") {
            true => format!("u{}", hash27(&format!("union:{}", user_of(code)))),
            false => format!(
                "u{}",
                hash27(&format!("union:{}", Self::openid_for(appid, code)))
            ),
        }
    }

    /// `GET /sns/jscode2session`. Code prefixes: `err<N>` answers errcode N; `bad*` answers a
    /// malformed response (never consumed, so they behave the same every time); `slow` waits
    /// `slow_delay`; `okstring` succeeds with `"errcode":"0"` as text/plain; any other code
    /// succeeds once and answers 40163 afterwards.
    pub(super) async fn jscode2session(&self, q: &Params) -> Resp {
        let Some(appid) = param(q, "appid") else {
            return self.error(41002);
        };
        let Some(secret) = param(q, "secret") else {
            return self.error(41004);
        };
        let Some(code) = param(q, "js_code") else {
            return self.error(41008);
        };
        if param(q, "grant_type") != Some("authorization_code") {
            return self.error(40002);
        }
        if let Some(errcode) = self.check_app(appid, secret).or(errcode_from_code(code)) {
            return self.error(errcode);
        }
        if let Some(resp) = malformed_login(appid, code) {
            return resp;
        }
        // Consume before sleeping, so a concurrent duplicate of a slow code sees 40163 at once.
        let fresh = self
            .state()
            .used_codes
            .insert((appid.to_owned(), code.to_owned()));
        if !fresh {
            return self.error(40163);
        }
        if code.starts_with("slow") {
            tokio::time::sleep(self.inner.options.slow_delay).await;
        }
        self.login_success(appid, code)
    }

    pub(super) fn login_success(&self, appid: &str, code: &str) -> Resp {
        let openid = Self::openid_for(appid, code);
        let Some(key) = random_bytes::<16>().map(|b| STANDARD.encode(b)) else {
            return self.error(-1);
        };
        self.state()
            .session_keys
            .insert(openid.clone(), key.clone());
        let mut body = json!({"openid": openid, "session_key": key});
        if code.contains("union") {
            body["unionid"] = Self::unionid_for(appid, code).into();
        }
        if code.starts_with("okstring") {
            // Official docs show errcode as a string once, and WeChat sends JSON as text/plain.
            body["errcode"] = "0".into();
            body["errmsg"] = "ok".into();
            return raw_resp(StatusCode::OK, TEXT, body.to_string());
        }
        json_resp(StatusCode::OK, &body)
    }
}

/// First 27 characters of base64url-no-pad(SHA-256(input)): 28-char ids like real openids.
/// The user a code stands for: `{user}` in `same-{user}-...`, else the code itself.
fn user_of(code: &str) -> &str {
    code.strip_prefix("same-")
        .and_then(|rest| rest.split_once('-'))
        .map_or(code, |(user, _)| user)
}

fn hash27(input: &str) -> String {
    let hash = digest::digest(&digest::SHA256, input.as_bytes());
    let mut text = URL_SAFE_NO_PAD.encode(hash.as_ref());
    text.truncate(27);
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_codes_stand_for_one_user_with_one_unionid_across_apps() {
        let (a, b) = ("wx0123456789abcdef", "wxother");
        let first = MockWechat::openid_for(a, "same-ann-1");
        assert_eq!(first, MockWechat::openid_for(a, "same-ann-union2"));
        assert_ne!(first, MockWechat::openid_for(a, "same-bob-1"));
        assert_ne!(
            first,
            MockWechat::openid_for(b, "same-ann-1"),
            "openids are per app"
        );
        assert_eq!(
            MockWechat::unionid_for(a, "same-ann-union1"),
            MockWechat::unionid_for(b, "same-ann-union2")
        );
    }

    #[test]
    fn openid_is_deterministic_and_well_formed() {
        let a = MockWechat::openid_for("wx0123456789abcdef", "code1");
        assert_eq!(a, MockWechat::openid_for("wx0123456789abcdef", "code1"));
        assert_ne!(a, MockWechat::openid_for("wx0123456789abcdef", "code2"));
        assert_ne!(a, MockWechat::openid_for("wxother", "code1"));
        assert_eq!(a.len(), 28);
        assert!(a.starts_with('o'));
        let charset = |c: char| c.is_ascii_alphanumeric() || c == '_' || c == '-';
        assert!(a.chars().all(charset));
    }
}
