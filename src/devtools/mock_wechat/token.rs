//! `stable_token` and the access_tokens it issues: one current token per appid, renewed
//! 5 minutes before expiry or at once on a force refresh, plus the knobs tests use to
//! revoke, expire or refuse them.

use std::time::{Duration, Instant};

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use hyper::body::Incoming;
use hyper::{Method, Request, StatusCode};
use serde_json::{json, Value};

use super::wire::{json_resp, param, read_json};
use super::{random_bytes, MockWechat, Params, Resp};

const TOKEN_TTL: Duration = Duration::from_secs(7200);
/// WeChat renews a stable token 5 minutes before expiry, so a handed-out token always has >= 300 s.
const TOKEN_RENEW_BEFORE: Duration = Duration::from_secs(300);

impl MockWechat {
    /// Makes every access_token issued so far invalid (as a force refresh elsewhere would):
    /// using one answers 40001, and the next normal-mode `stable_token` issues a new one.
    pub fn revoke_access_tokens(&self) {
        let mut st = self.state();
        st.tokens.clear();
    }

    /// Lets every access_token issued so far expire now: using one answers 42001, and the
    /// next normal-mode `stable_token` issues a new one.
    pub fn expire_access_tokens(&self) {
        let now = Instant::now();
        for (_, expiry) in self.state().tokens.values_mut() {
            *expiry = now;
        }
    }

    /// Makes `stable_token` answer `errcode` (e.g. 45009, 45011, -1) until set to `None`.
    pub fn fail_stable_token(&self, errcode: Option<i64>) {
        self.state().token_error = errcode;
    }

    /// `POST /cgi-bin/stable_token` with a JSON body.
    pub(super) async fn stable_token(&self, req: Request<Incoming>) -> Resp {
        if req.method() != Method::POST {
            return self.error(43002);
        }
        let Some(body) = read_json(req).await else {
            return self.error(47001);
        };
        let field = |k: &str| {
            body.get(k)
                .and_then(Value::as_str)
                .filter(|s| !s.is_empty())
        };
        let Some(appid) = field("appid") else {
            return self.error(41002);
        };
        let Some(secret) = field("secret") else {
            return self.error(41004);
        };
        if field("grant_type") != Some("client_credential") {
            return self.error(40002);
        }
        if let Some(errcode) = self.check_app(appid, secret).or(self.state().token_error) {
            return self.error(errcode);
        }
        let force = body.get("force_refresh").and_then(Value::as_bool) == Some(true);
        match self.issue_token(appid, force) {
            Some((token, ttl)) => json_resp(
                StatusCode::OK,
                &json!({"access_token": token, "expires_in": ceil_secs(ttl)}),
            ),
            None => self.error(-1),
        }
    }

    /// Normal mode reuses the current token while it has more than 5 minutes left (the old one
    /// stays valid until it expires); force mode invalidates the old token immediately.
    fn issue_token(&self, appid: &str, force: bool) -> Option<(String, Duration)> {
        let fresh = format!("MOCK_{}", URL_SAFE_NO_PAD.encode(random_bytes::<24>()?));
        let now = Instant::now();
        let mut st = self.state();
        let current = st.current_token.get(appid).cloned();
        if let Some(old) = current {
            if force {
                st.tokens.remove(&old);
            } else if let Some((_, expiry)) = st.tokens.get(&old) {
                let left = expiry.saturating_duration_since(now);
                if left > TOKEN_RENEW_BEFORE {
                    return Some((old, left));
                }
            }
        }
        st.tokens.retain(|_, (_, expiry)| *expiry > now);
        st.tokens
            .insert(fresh.clone(), (appid.to_owned(), now + TOKEN_TTL));
        st.current_token.insert(appid.to_owned(), fresh.clone());
        Some((fresh, TOKEN_TTL))
    }

    /// The appid an access_token belongs to, or the errcode WeChat gives for it.
    pub(super) fn token_appid(&self, q: &Params) -> Result<String, i64> {
        let token = param(q, "access_token").ok_or(41001)?;
        let mut st = self.state();
        let (appid, expiry) = st.tokens.get(token).cloned().ok_or(40001)?;
        if expiry <= Instant::now() {
            st.tokens.remove(token);
            return Err(42001);
        }
        Ok(appid)
    }
}

/// Whole seconds rounded up, so a token re-served within the same second still says 7200.
fn ceil_secs(d: Duration) -> u64 {
    d.as_secs() + u64::from(d.subsec_nanos() > 0)
}
