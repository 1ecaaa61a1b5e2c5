//! Server-side state: sessions (with their `session_key`), hashed refresh tokens and their
//! rotation, revoked sessions, and the single-use gate for login codes.
//!
//! Two backends stand behind [`SessionStore`]: the embedded [`MemoryStore`] (one instance)
//! and [`RedisStore`] (several instances sharing one Redis). Whatever the backend, the
//! revocation check made on every proxied request is a local lookup in [`Revocations`];
//! the Redis backend keeps that local view current through pub/sub. Open WebSocket tunnels
//! [`watch`](Store::watch_revocation) that view to close when their session is revoked.

mod memory;
mod redis;
mod revocations;
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
}

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

/// What presenting a refresh token did.
#[derive(Debug)]
pub enum Rotation {
    /// The token was live: it is now spent and the session carries the new expiry.
    Rotated(Session),
    /// The token had been spent before: a replay, so the whole session (`sid`) is revoked.
    Reused { sid: String },
    /// Unknown, expired, or its session is gone.
    Invalid,
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
    /// Stores a new session with its first refresh token.
    async fn create(&self, session: &Session, refresh: Digest) -> Result<(), StoreUnavailable>;
    async fn session(&self, sid: &str) -> Result<Option<Session>, StoreUnavailable>;
    /// Spends `old` and installs `new` in one atomic step; presenting a spent token again
    /// revokes its session until `revoke_until`.
    async fn rotate(
        &self,
        old: Digest,
        new: Digest,
        expires_at: i64,
        revoke_until: i64,
    ) -> Result<Rotation, StoreUnavailable>;
    /// Ends a session everywhere: its refresh tokens stop at once, and its access tokens
    /// are refused until `until` (when the last of them has expired anyway).
    async fn revoke(&self, sid: &str, until: i64) -> Result<(), StoreUnavailable>;
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

    pub async fn create(&self, session: &Session, refresh: Digest) -> Result<(), StoreUnavailable> {
        self.backend.create(session, refresh).await
    }

    pub async fn session(&self, sid: &str) -> Result<Option<Session>, StoreUnavailable> {
        if self.is_revoked(sid) {
            return Ok(None);
        }
        self.backend.session(sid).await
    }

    pub async fn rotate(
        &self,
        old: Digest,
        new: Digest,
        expires_at: i64,
        revoke_until: i64,
    ) -> Result<Rotation, StoreUnavailable> {
        let rotation = self
            .backend
            .rotate(old, new, expires_at, revoke_until)
            .await?;
        if let Rotation::Reused { sid } = &rotation {
            self.revoked.insert(sid, revoke_until);
        }
        Ok(rotation)
    }

    pub async fn revoke(&self, sid: &str, until: i64) -> Result<(), StoreUnavailable> {
        self.backend.revoke(sid, until).await?;
        self.revoked.insert(sid, until);
        Ok(())
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
mod tests {
    use super::*;
    use crate::secret::Secret;

    fn session(sid: &str) -> Session {
        Session {
            sid: sid.into(),
            openid: "o1".into(),
            unionid: None,
            appid: "wx1".into(),
            session_key: Secret::new("k"),
            expires_at: now_unix() + 3600,
            claims: Ext::new(),
            phone: None,
        }
    }

    #[tokio::test]
    async fn a_code_is_claimed_once() {
        let store = Store::memory();
        assert!(store.claim_code("wx1", "c1").await.unwrap_or(false));
        assert!(!store.claim_code("wx1", "c1").await.unwrap_or(true));
        assert!(
            store.claim_code("wx2", "c1").await.unwrap_or(false),
            "codes are per app"
        );
    }

    #[tokio::test]
    async fn rotation_spends_the_old_token_and_replay_revokes_the_session() {
        let store = Store::memory();
        let (r1, r2, r3) = (digest(&[b"r1"]), digest(&[b"r2"]), digest(&[b"r3"]));
        store.create(&session("s1"), r1).await.ok();
        let exp = now_unix() + 7200;
        assert!(
            matches!(store.rotate(r1, r2, exp, exp).await, Ok(Rotation::Rotated(s)) if s.sid == "s1")
        );
        assert!(matches!(
            store.rotate(r1, r3, exp, exp).await,
            Ok(Rotation::Reused { .. })
        ));
        assert!(store.is_revoked("s1"));
        assert!(matches!(
            store.rotate(r2, r3, exp, exp).await,
            Ok(Rotation::Invalid)
        ));
    }

    /// Whether `watch` has been told its session is revoked, without waiting for it.
    async fn fired(watch: &RevocationWatch) -> bool {
        tokio::time::timeout(Duration::ZERO, watch.revoked())
            .await
            .is_ok()
    }

    #[tokio::test]
    async fn a_watch_hears_its_sessions_revocation_whenever_it_comes() {
        let store = Store::memory();
        let (before, other) = (store.watch_revocation("s1"), store.watch_revocation("s2"));
        assert!(!fired(&before).await);
        store.revoke("s1", now_unix() + 60).await.ok();
        assert!(fired(&before).await, "a revocation after the watch began");
        assert!(!fired(&other).await, "another session's watch");
        let after = store.watch_revocation("s1");
        assert!(fired(&after).await, "a watch begun after the revocation");
        let replayed = store.watch_revocation("s2");
        store.create(&session("s2"), digest(&[b"w1"])).await.ok();
        let exp = now_unix() + 60;
        let (w1, w2, w3) = (digest(&[b"w1"]), digest(&[b"w2"]), digest(&[b"w3"]));
        store.rotate(w1, w2, exp, exp).await.ok();
        store.rotate(w1, w3, exp, exp).await.ok();
        assert!(
            fired(&replayed).await,
            "a replayed refresh token revokes too"
        );
    }

    #[tokio::test]
    async fn unknown_refresh_tokens_are_invalid() {
        let store = Store::memory();
        let r = store.rotate(digest(&[b"x"]), digest(&[b"y"]), 0, 0).await;
        assert!(matches!(r, Ok(Rotation::Invalid)));
    }

    #[tokio::test]
    async fn a_phone_is_set_on_a_live_session_only() {
        let store = Store::memory();
        let mut with_claims = session("s1");
        with_claims
            .claims
            .insert("uid".into(), serde_json::json!(42));
        store.create(&with_claims, digest(&[b"r1"])).await.ok();
        assert!(matches!(
            store.set_phone("s1", "+86 13800138000").await,
            Ok(true)
        ));
        let stored = store.session("s1").await.ok().flatten();
        assert_eq!(
            stored.as_ref().and_then(|s| s.phone.as_deref()),
            Some("+86 13800138000")
        );
        assert_eq!(
            stored.map(|s| s.claims),
            Some(with_claims.claims.clone()),
            "the claims are kept"
        );
        assert!(matches!(store.set_phone("gone", "1").await, Ok(false)));
        assert!(
            matches!(store.session("gone").await, Ok(None)),
            "setting a phone never creates a session"
        );
        store.revoke("s1", now_unix() + 60).await.ok();
        assert!(matches!(store.set_phone("s1", "2").await, Ok(false)));
    }

    #[tokio::test]
    async fn rotation_keeps_claims_and_phone() {
        let store = Store::memory();
        let mut s = session("s2");
        s.claims.insert("role".into(), serde_json::json!("admin"));
        let (r1, r2) = (digest(&[b"p1"]), digest(&[b"p2"]));
        store.create(&s, r1).await.ok();
        assert!(matches!(
            store.set_phone("s2", "13800138000").await,
            Ok(true)
        ));
        let exp = now_unix() + 7200;
        let Ok(Rotation::Rotated(renewed)) = store.rotate(r1, r2, exp, exp).await else {
            panic!("rotation failed");
        };
        assert_eq!(renewed.expires_at, exp);
        assert_eq!(renewed.claims, s.claims);
        assert_eq!(renewed.phone.as_deref(), Some("13800138000"));
    }
}
