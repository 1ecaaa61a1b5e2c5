//! Server-side state: sessions (with their `session_key`), hashed refresh tokens and their
//! rotation, revoked sessions, the single-use gate for login codes, and per user: the
//! index of their sessions and the operator's login blocks.
//!
//! Two backends stand behind [`SessionStore`]: the embedded [`MemoryStore`] (one instance)
//! and [`RedisStore`] (several instances sharing one Redis). Whatever the backend, the
//! revocation check made on every proxied request is a local lookup in [`Revocations`];
//! the Redis backend keeps that local view current through pub/sub. Open WebSocket tunnels
//! [`watch`](Store::watch_revocation) that view to close when their session is revoked.

mod memory;
mod redis;
mod revocations;
mod users;
mod watch;

use std::sync::Arc;
use std::time::Duration;

use crate::claims::Ext;
use crate::secret::Secret;
use crate::settings::StoreSettings;
use crate::tokens::now_unix;

pub(crate) use memory::MemoryStore;
pub(crate) use redis::RedisStore;
pub(crate) use revocations::Revocations;
pub(crate) use watch::RevocationWatch;

/// How long a login code is remembered: WeChat codes live five minutes.
pub(crate) const CODE_MEMORY: Duration = Duration::from_secs(300);

#[derive(Debug, Clone)]
pub struct Session {
    pub sid: String,
    pub openid: String,
    pub unionid: Option<String>,
    pub appid: String,
    pub session_key: Secret,
    /// Unix seconds when the session ends unless refreshed.
    pub expires_at: i64,
    /// The login hook's claims (empty without a hook); every token of the session carries them.
    pub claims: Ext,
    /// The phone number `/auth/phone` obtained from WeChat, once it has.
    pub phone: Option<String>,
    /// Unix seconds of the login.
    pub created_at: i64,
    /// Unix seconds of the last refresh, if there was one.
    pub refreshed_at: Option<i64>,
}

/// A refresh token as the store sees it: the session it belongs to, which the token
/// carries in clear so that a clustered store finds that session's keys without a lookup,
/// and the digest of the whole token, which is all that is stored.
#[derive(Debug, Clone)]
pub struct RefreshKey {
    pub sid: String,
    pub digest: Digest,
}

/// Whose sessions an operator means.
#[derive(Debug, Clone, Copy)]
pub enum User<'a> {
    Openid(&'a str),
    Unionid(&'a str),
}

/// One entry of a user's session index: a session and its mini-program.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Indexed {
    pub appid: String,
    pub sid: String,
}

/// What asking for a new session did.
#[derive(Debug, PartialEq, Eq)]
pub enum Admission {
    Created,
    /// The user is blocked until this Unix time: no session was made.
    Blocked {
        until: i64,
    },
}

/// Which of a user's logins a block refuses: one mini-program's, or every one (`*`).
pub(crate) const EVERY_APP: &str = "*";

/// SHA-256 of a secret value; what the store keeps instead of codes and refresh tokens.
pub(crate) type Digest = [u8; 32];

pub(crate) fn digest(parts: &[&[u8]]) -> Digest {
    let mut ctx = aws_lc_rs::digest::Context::new(&aws_lc_rs::digest::SHA256);
    for part in parts {
        ctx.update(&(part.len() as u64).to_be_bytes());
        ctx.update(part);
    }
    let mut out = [0u8; 32];
    out.copy_from_slice(ctx.finish().as_ref());
    out
}

/// A refresh: spend `old`, install `new` and let the session run until `expires_at`; if
/// `old` was spent before, its session is revoked until `revoke_until`. Named fields,
/// because the two times are both Unix seconds and easy to swap.
#[derive(Debug, Clone, Copy)]
pub struct Renewal<'a> {
    pub old: &'a RefreshKey,
    pub new: &'a RefreshKey,
    pub expires_at: i64,
    pub revoke_until: i64,
}

/// What presenting a refresh token did.
#[derive(Debug)]
pub enum Rotation {
    /// The token was live: it is now spent and the session carries the new expiry.
    Rotated(Session),
    /// The token had been spent before: a replay, so the whole session (`sid`) is revoked.
    Reused { sid: String },
    /// Unknown, expired, or its session is gone.
    Invalid,
    /// The session's user is blocked until this Unix time; the token was not spent.
    Blocked { until: i64 },
}

#[derive(Debug, thiserror::Error)]
#[error("the session store is unavailable")]
pub struct StoreUnavailable;

/// What a session backend must do. Every operation that changes shared state is atomic in
/// the backend: two instances claiming one code or rotating one refresh token at the same
/// moment get exactly one winner.
#[async_trait::async_trait]
pub(crate) trait SessionStore: Send + Sync {
    /// Claims a login code for one exchange: true for the first caller only.
    async fn claim_code(&self, appid: &str, code: &str) -> Result<bool, StoreUnavailable>;
    /// Stores a new session with its first refresh token and adds it to its user's index,
    /// unless the user is blocked (checked in the same step as the index is written, so a
    /// block followed by a user revocation leaves no session behind).
    async fn create(
        &self,
        session: &Session,
        refresh: &RefreshKey,
    ) -> Result<Admission, StoreUnavailable>;
    async fn session(&self, sid: &str) -> Result<Option<Session>, StoreUnavailable>;
    /// Does the [`Renewal`] in one atomic step. A blocked user's token is left unspent.
    async fn rotate(&self, renewal: Renewal<'_>) -> Result<Rotation, StoreUnavailable>;
    /// Ends sessions everywhere: their refresh tokens stop at once, and their access tokens
    /// are refused until `until` (when the last of them has expired anyway).
    async fn revoke(&self, sids: &[String], until: i64) -> Result<(), StoreUnavailable>;
    /// The sessions in a user's index (some may have ended since).
    async fn user_sessions(&self, user: User<'_>) -> Result<Vec<Indexed>, StoreUnavailable>;
    /// Refuses `openid`'s logins and refreshes in `appid` ([`EVERY_APP`]: all) until `until`.
    async fn block(&self, openid: &str, appid: &str, until: i64) -> Result<(), StoreUnavailable>;
    /// Lifts a block set with the same `appid`; false when there was none.
    async fn unblock(&self, openid: &str, appid: &str) -> Result<bool, StoreUnavailable>;
    /// Records the session's phone number; false when the session no longer exists (it is
    /// never created again by this).
    async fn set_phone(&self, sid: &str, phone: &str) -> Result<bool, StoreUnavailable>;
    /// Whether the backend answers.
    async fn ping(&self) -> bool;
    /// A small value every instance shares (the managed `access_token`), with the Unix time
    /// it expires. The embedded store has no other instance to share with: always `None`.
    async fn shared_get(&self, key: &str) -> Result<Option<(String, i64)>, StoreUnavailable>;
    async fn shared_put(
        &self,
        key: &str,
        value: &str,
        expires_at: i64,
    ) -> Result<(), StoreUnavailable>;
    /// Forgets the shared value only if it is still `value` (another instance may have
    /// replaced it already).
    async fn shared_forget(&self, key: &str, value: &str) -> Result<(), StoreUnavailable>;
}

/// The time left until the Unix time `expires_at` (zero when it has passed).
pub(crate) fn until(expires_at: i64) -> Option<Duration> {
    Some(Duration::from_secs(
        expires_at.saturating_sub(now_unix()).max(0) as u64,
    ))
}

/// The session store a gateway uses: a backend plus the local revocation view. Cheap to
/// clone: every clone is the same store.
#[derive(Clone)]
pub struct Store {
    backend: Arc<dyn SessionStore>,
    revoked: Revocations,
}

impl Store {
    /// Builds the configured backend. Connecting to Redis happens in the background, so a
    /// gateway starts (and serves valid tokens) while Redis is still unreachable.
    pub fn new(settings: &StoreSettings) -> anyhow::Result<Self> {
        let revoked = Revocations::default();
        let backend: Arc<dyn SessionStore> = match settings {
            StoreSettings::Memory => Arc::new(MemoryStore::new()),
            StoreSettings::Redis(redis) => Arc::new(RedisStore::new(redis, revoked.clone())?),
        };
        Ok(Self { backend, revoked })
    }

    pub fn memory() -> Self {
        Self {
            backend: Arc::new(MemoryStore::new()),
            revoked: Revocations::default(),
        }
    }

    pub async fn claim_code(&self, appid: &str, code: &str) -> Result<bool, StoreUnavailable> {
        self.backend.claim_code(appid, code).await
    }

    pub async fn create(
        &self,
        session: &Session,
        refresh: &RefreshKey,
    ) -> Result<Admission, StoreUnavailable> {
        self.backend.create(session, refresh).await
    }

    pub async fn session(&self, sid: &str) -> Result<Option<Session>, StoreUnavailable> {
        if self.is_revoked(sid) {
            return Ok(None);
        }
        self.backend.session(sid).await
    }

    pub async fn rotate(&self, renewal: Renewal<'_>) -> Result<Rotation, StoreUnavailable> {
        // A session this instance knows to be revoked has no live refresh token, even if
        // the backend has not caught up (a revocation racing the session's creation).
        if self.is_revoked(&renewal.old.sid) {
            return Ok(Rotation::Invalid);
        }
        let rotation = self.backend.rotate(renewal).await?;
        if let Rotation::Reused { sid } = &rotation {
            self.revoked.insert(sid, renewal.revoke_until);
        }
        Ok(rotation)
    }

    pub async fn revoke(&self, sid: &str, until: i64) -> Result<(), StoreUnavailable> {
        self.revoke_all(&[sid.to_string()], until).await
    }

    async fn revoke_all(&self, sids: &[String], until: i64) -> Result<(), StoreUnavailable> {
        self.backend.revoke(sids, until).await?;
        for sid in sids {
            self.revoked.insert(sid, until);
        }
        Ok(())
    }

    /// A user's live sessions (of `appid` only, when given), oldest first.
    pub async fn sessions_of(
        &self,
        user: User<'_>,
        appid: Option<&str>,
    ) -> Result<Vec<Session>, StoreUnavailable> {
        let mut sessions = Vec::new();
        for sid in self.indexed(user, appid).await? {
            if let Some(session) = self.session(&sid).await? {
                sessions.push(session);
            }
        }
        sessions.sort_by_key(|s| s.created_at);
        Ok(sessions)
    }

    /// Ends every session of a user (of `appid` only, when given) on every instance; the
    /// ids of the sessions ended.
    pub async fn revoke_user(
        &self,
        user: User<'_>,
        appid: Option<&str>,
        until: i64,
    ) -> Result<Vec<String>, StoreUnavailable> {
        let sids = self.indexed(user, appid).await?;
        if !sids.is_empty() {
            self.revoke_all(&sids, until).await?;
        }
        Ok(sids)
    }

    /// The ids in a user's index that are not revoked already.
    async fn indexed(
        &self,
        user: User<'_>,
        appid: Option<&str>,
    ) -> Result<Vec<String>, StoreUnavailable> {
        let mut sids: Vec<String> = self
            .backend
            .user_sessions(user)
            .await?
            .into_iter()
            .filter(|e| appid.is_none_or(|a| a == e.appid) && !self.is_revoked(&e.sid))
            .map(|e| e.sid)
            .collect();
        sids.sort();
        sids.dedup();
        Ok(sids)
    }

    pub async fn block(
        &self,
        openid: &str,
        appid: &str,
        until: i64,
    ) -> Result<(), StoreUnavailable> {
        self.backend.block(openid, appid, until).await
    }

    pub async fn unblock(&self, openid: &str, appid: &str) -> Result<bool, StoreUnavailable> {
        self.backend.unblock(openid, appid).await
    }

    /// Records the session's phone number; false when the session is gone or revoked.
    pub async fn set_phone(&self, sid: &str, phone: &str) -> Result<bool, StoreUnavailable> {
        if self.is_revoked(sid) {
            return Ok(false);
        }
        self.backend.set_phone(sid, phone).await
    }

    /// Called for every authenticated request; a local lookup, never a round trip.
    pub fn is_revoked(&self, sid: &str) -> bool {
        self.revoked.contains(sid)
    }

    /// Watches `sid` for revocation, whether it happens here or, with Redis, on another
    /// instance.
    pub fn watch_revocation(&self, sid: &str) -> RevocationWatch {
        self.revoked.watch(sid)
    }

    pub async fn ping(&self) -> bool {
        self.backend.ping().await
    }

    pub async fn shared_get(&self, key: &str) -> Result<Option<(String, i64)>, StoreUnavailable> {
        self.backend.shared_get(key).await
    }

    pub async fn shared_put(
        &self,
        key: &str,
        value: &str,
        expires_at: i64,
    ) -> Result<(), StoreUnavailable> {
        self.backend.shared_put(key, value, expires_at).await
    }

    pub async fn shared_forget(&self, key: &str, value: &str) -> Result<(), StoreUnavailable> {
        self.backend.shared_forget(key, value).await
    }
}

#[cfg(test)]
mod tests;
