//! The managed `access_token`: one per app, from `cgi-bin/stable_token` in normal mode.
//!
//! Normal mode hands every caller the same token while it is valid, so instances never
//! clobber each other; `force_refresh` is never used (it would invalidate the token other
//! services hold, and is limited to 20 a day). A token is dropped [`REFRESH_BEFORE`] ahead
//! of its expiry, when WeChat has already renewed it. Fetches are single-flight per app
//! (moka coalesces concurrent loads of one key). With the Redis store the token is shared
//! through it, so instances agree and only one of them usually asks WeChat. A failure
//! that retrying cannot cure (quota, rate limit, busy) is remembered briefly and answered
//! at once, so a burst of callers cannot turn into a burst of calls.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use moka::future::Cache;
use moka::Expiry;
use serde_json::{json, Value};

use super::{errcode, json_errcode, trace_id, Api, WechatClient};
use crate::error::GatewayError;
use crate::secret::Secret;
use crate::settings::App;
use crate::store::Store;
use crate::tokens::now_unix;

/// WeChat renews a stable token five minutes before it expires; from then on ask again.
pub(super) const REFRESH_BEFORE: Duration = Duration::from_secs(300);
/// However short-lived a token WeChat hands out, it is kept at least this long.
const MIN_KEEP: Duration = Duration::from_secs(30);
/// Tokens are opaque but bounded (WeChat says to reserve 512 characters).
const MAX_TOKEN_CHARS: usize = 2048;

/// errcodes that mean the token itself was refused: fetch once more and retry once.
pub(super) fn token_refused(errcode: i64) -> bool {
    matches!(errcode, 40001 | 40014 | 42001)
}

/// A managed token and when it should no longer be handed out.
#[derive(Clone)]
pub struct Managed {
    pub token: Secret,
    refresh_at: Instant,
}

struct UntilRefresh;

impl Expiry<String, Managed> for UntilRefresh {
    fn expire_after_create(&self, _: &String, v: &Managed, now: Instant) -> Option<Duration> {
        Some(v.refresh_at.saturating_duration_since(now))
    }
}

pub struct AccessTokens {
    current: Cache<String, Managed>,
    /// Failures not worth repeating yet: appid → (until, what to answer).
    holding: Mutex<HashMap<String, (Instant, GatewayError)>>,
}

impl Default for AccessTokens {
    fn default() -> Self {
        Self {
            current: Cache::builder()
                .max_capacity(1024)
                .expire_after(UntilRefresh)
                .build(),
            holding: Mutex::new(HashMap::new()),
        }
    }
}

/// What a call made with the token reports.
pub enum Used<T> {
    Done(T),
    /// WeChat refused the token (40001, 40014, 42001).
    TokenRefused,
}

fn shared_key(appid: &str) -> String {
    format!("access_token:{appid}")
}

impl WechatClient {
    /// The app's current token: cached, shared through the store, or fetched.
    pub async fn access_token(&self, app: &App, store: &Store) -> Result<Managed, GatewayError> {
        if let Some(error) = self.tokens.held(&app.appid) {
            return Err(error);
        }
        let loaded = self
            .tokens
            .current
            .try_get_with(app.appid.clone(), self.load_token(app, store))
            .await;
        loaded.map_err(|e| {
            let error = GatewayError::clone(&e);
            self.tokens.hold(&app.appid, &error);
            error
        })
    }

    /// Runs `call` with the app's token; when WeChat refuses the token, fetches once more
    /// (normal mode: never a forced refresh) and retries once.
    pub async fn with_token<T, F, Fut>(
        &self,
        app: &App,
        store: &Store,
        mut call: F,
    ) -> Result<T, GatewayError>
    where
        F: FnMut(Secret) -> Fut,
        Fut: std::future::Future<Output = Result<Used<T>, GatewayError>>,
    {
        for attempt in 0..2 {
            let managed = self.access_token(app, store).await?;
            match call(managed.token.clone()).await? {
                Used::Done(value) => return Ok(value),
                Used::TokenRefused => {
                    tracing::warn!(appid = %app.appid, attempt, "WeChat refused the access_token");
                    self.forget_token(app, store, &managed.token).await;
                }
            }
        }
        Err(GatewayError::WechatUnavailable("access_token refused"))
    }

    async fn forget_token(&self, app: &App, store: &Store, token: &Secret) {
        let current = self.tokens.current.get(&app.appid).await;
        if current.is_some_and(|m| m.token == *token) {
            self.tokens.current.invalidate(&app.appid).await;
        }
        if store
            .shared_forget(&shared_key(&app.appid), token.expose())
            .await
            .is_err()
        {
            tracing::debug!("the shared access_token could not be forgotten");
        }
    }

    async fn load_token(&self, app: &App, store: &Store) -> Result<Managed, GatewayError> {
        let key = shared_key(&app.appid);
        let now = now_unix();
        match store.shared_get(&key).await {
            Ok(Some((token, expires_at))) if expires_at - now > REFRESH_BEFORE.as_secs() as i64 => {
                return Ok(managed(token, expires_at - now));
            }
            Ok(_) => {}
            // Without the store, fetch anyway: normal mode is safe for every instance.
            Err(_) => tracing::debug!("the shared access_token is unavailable; asking WeChat"),
        }
        let (token, expires_in) = self.stable_token(app).await?;
        if store
            .shared_put(&key, &token, now + expires_in)
            .await
            .is_err()
        {
            tracing::debug!("the access_token could not be shared");
        }
        Ok(managed(token, expires_in))
    }

    /// `POST cgi-bin/stable_token` in normal mode.
    async fn stable_token(&self, app: &App) -> Result<(String, i64), GatewayError> {
        let url = self.url("/cgi-bin/stable_token")?;
        let body = json!({
            "grant_type": "client_credential",
            "appid": app.appid,
            "secret": app.secret.expose(),
            "force_refresh": false,
        });
        let request = self.send(self.post_json(url, &body));
        let answer = self
            .bounded(Api::StableToken, request, json_errcode)
            .await?;
        let code = errcode(&answer)?;
        if code != 0 {
            crate::ops::metrics::wechat_errcode("stable_token", code);
            let error = token_error(code);
            let rid = trace_id(&answer);
            if matches!(error, GatewayError::ServerMisconfigured(_)) {
                tracing::error!(errcode = code, rid, appid = %app.appid, "WeChat refused the app's credentials for an access_token");
            } else {
                tracing::warn!(errcode = code, rid, appid = %app.appid, "WeChat gave no access_token");
            }
            return Err(error);
        }
        let token = answer
            .get("access_token")
            .and_then(Value::as_str)
            .filter(|t| !t.is_empty() && t.len() <= MAX_TOKEN_CHARS && t.is_ascii());
        let expires_in = match answer.get("expires_in") {
            Some(Value::Number(n)) => n.as_i64(),
            Some(Value::String(s)) => s.trim().parse().ok(),
            _ => None,
        }
        .filter(|secs| *secs > 0);
        match (token, expires_in) {
            (Some(token), Some(expires_in)) => {
                tracing::info!(appid = %app.appid, expires_in, "access_token fetched");
                Ok((token.to_string(), expires_in))
            }
            _ => {
                tracing::warn!("WeChat's access_token answer is unusable");
                Err(GatewayError::WechatUnavailable("unusable access_token"))
            }
        }
    }
}

fn managed(token: String, expires_in: i64) -> Managed {
    let left = Duration::from_secs(expires_in.max(0) as u64);
    let keep = left.saturating_sub(REFRESH_BEFORE).max(MIN_KEEP.min(left));
    Managed {
        token: Secret::new(token),
        refresh_at: Instant::now() + keep,
    }
}

/// What a failed `stable_token` call means for the caller, and how long it is held.
fn token_error(code: i64) -> GatewayError {
    match code {
        45009 => GatewayError::WechatQuota,
        45011 => GatewayError::RateLimited {
            retry_after_secs: 60,
        },
        -1 => GatewayError::WechatBusy,
        40001 | 40002 | 40013 | 40125 | 40164 | 41002 | 41004 => {
            GatewayError::ServerMisconfigured(code)
        }
        _ => GatewayError::WechatUnavailable("unknown errcode"),
    }
}

impl AccessTokens {
    fn held(&self, appid: &str) -> Option<GatewayError> {
        let mut holding = self.holding.lock().ok()?;
        match holding.get(appid) {
            Some((until, error)) if *until > Instant::now() => Some(error.clone()),
            Some(_) => {
                holding.remove(appid);
                None
            }
            None => None,
        }
    }

    fn hold(&self, appid: &str, error: &GatewayError) {
        let secs = match error {
            GatewayError::WechatQuota | GatewayError::RateLimited { .. } => 60,
            GatewayError::WechatBusy => 2,
            GatewayError::ServerMisconfigured(_) => 10,
            _ => return,
        };
        if let Ok(mut holding) = self.holding.lock() {
            holding.insert(
                appid.to_string(),
                (Instant::now() + Duration::from_secs(secs), error.clone()),
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_dropped_five_minutes_early_but_kept_a_little_while() {
        let in_secs = |m: &Managed| m.refresh_at.saturating_duration_since(Instant::now());
        let long = managed("t".into(), 7200);
        assert!(in_secs(&long) <= Duration::from_secs(6900));
        assert!(in_secs(&long) > Duration::from_secs(6890));
        let short = managed("t".into(), 310);
        assert!(
            in_secs(&short) >= Duration::from_secs(29),
            "kept at least 30 s"
        );
        let tiny = managed("t".into(), 5);
        assert!(
            in_secs(&tiny) <= Duration::from_secs(5),
            "never past its expiry"
        );
    }

    #[test]
    fn refused_tokens_and_held_failures() {
        assert!(token_refused(40001) && token_refused(42001) && token_refused(40014));
        assert!(!token_refused(45011));
        assert_eq!(token_error(45009).code(), "wechat_quota_exceeded");
        assert_eq!(token_error(45011).code(), "rate_limited");
        assert_eq!(token_error(40125).code(), "server_misconfigured");
        let tokens = AccessTokens::default();
        tokens.hold("wx1", &GatewayError::WechatQuota);
        assert!(matches!(
            tokens.held("wx1"),
            Some(GatewayError::WechatQuota)
        ));
        assert!(tokens.held("wx2").is_none());
        tokens.hold("wx2", &GatewayError::WechatTimeout);
        assert!(tokens.held("wx2").is_none(), "timeouts are worth retrying");
    }
}
