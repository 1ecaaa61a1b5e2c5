//! Server-side state: sessions (with their `session_key`), hashed refresh tokens and their
//! rotation, revoked sessions, and the single-use gate for login codes.
//!
//! The embedded store keeps it in bounded moka caches whose entries expire with what they
//! hold. Operations are `async` so a networked store can stand behind the same calls.

use std::sync::Arc;
use std::time::{Duration, Instant};

use moka::sync::Cache;
use moka::Expiry;

use crate::secret::Secret;
use crate::tokens::now_unix;

/// How long a login code is remembered: WeChat codes live five minutes.
pub const CODE_MEMORY: Duration = Duration::from_secs(300);
const MAX_SESSIONS: u64 = 1_000_000;

#[derive(Debug, Clone)]
pub struct Session {
    pub sid: String,
    pub openid: String,
    pub unionid: Option<String>,
    pub appid: String,
    pub session_key: Secret,
    /// Unix seconds when the session ends unless refreshed.
    pub expires_at: i64,
}

/// SHA-256 of a secret value; what the store keeps instead of codes and refresh tokens.
pub type Digest = [u8; 32];

pub fn digest(parts: &[&[u8]]) -> Digest {
    let mut ctx = aws_lc_rs::digest::Context::new(&aws_lc_rs::digest::SHA256);
    for part in parts {
        ctx.update(&(part.len() as u64).to_be_bytes());
        ctx.update(part);
    }
    let mut out = [0u8; 32];
    out.copy_from_slice(ctx.finish().as_ref());
    out
}

#[derive(Debug, Clone)]
struct RefreshEntry {
    sid: String,
    spent: bool,
    expires_at: i64,
}

/// What presenting a refresh token did.
#[derive(Debug)]
pub enum Rotation {
    /// The token was live: it is now spent and `new` replaces it.
    Rotated(Session),
    /// The token had been spent before: a replay, so the whole session is revoked.
    Reused,
    /// Unknown, expired, or its session is gone.
    Invalid,
}

#[derive(Debug, thiserror::Error)]
#[error("the session store is unavailable")]
pub struct StoreUnavailable;

pub struct MemoryStore {
    codes: Cache<Digest, ()>,
    sessions: Cache<String, Arc<Session>>,
    refresh: Cache<Digest, RefreshEntry>,
    revoked: Cache<String, i64>,
}

/// Entries live until the Unix time they carry.
struct UntilExpiry;

fn until(expires_at: i64) -> Option<Duration> {
    Some(Duration::from_secs(
        expires_at.saturating_sub(now_unix()).max(0) as u64,
    ))
}

impl Expiry<String, Arc<Session>> for UntilExpiry {
    fn expire_after_create(&self, _: &String, v: &Arc<Session>, _: Instant) -> Option<Duration> {
        until(v.expires_at)
    }
    fn expire_after_update(
        &self,
        _: &String,
        v: &Arc<Session>,
        _: Instant,
        _: Option<Duration>,
    ) -> Option<Duration> {
        until(v.expires_at)
    }
}

impl Expiry<Digest, RefreshEntry> for UntilExpiry {
    fn expire_after_create(&self, _: &Digest, v: &RefreshEntry, _: Instant) -> Option<Duration> {
        until(v.expires_at)
    }
    fn expire_after_update(
        &self,
        _: &Digest,
        v: &RefreshEntry,
        _: Instant,
        _: Option<Duration>,
    ) -> Option<Duration> {
        until(v.expires_at)
    }
}

impl Expiry<String, i64> for UntilExpiry {
    fn expire_after_create(&self, _: &String, v: &i64, _: Instant) -> Option<Duration> {
        until(*v)
    }
}

impl Default for MemoryStore {
    fn default() -> Self {
        Self::new()
    }
}

impl MemoryStore {
    pub fn new() -> Self {
        Self {
            codes: Cache::builder()
                .max_capacity(MAX_SESSIONS)
                .time_to_live(CODE_MEMORY)
                .build(),
            sessions: Cache::builder()
                .max_capacity(MAX_SESSIONS)
                .expire_after(UntilExpiry)
                .build(),
            refresh: Cache::builder()
                .max_capacity(MAX_SESSIONS * 2)
                .expire_after(UntilExpiry)
                .build(),
            revoked: Cache::builder()
                .max_capacity(MAX_SESSIONS)
                .expire_after(UntilExpiry)
                .build(),
        }
    }

    /// Claims a login code for one exchange: true for the first caller only, for five minutes.
    pub async fn claim_code(&self, appid: &str, code: &str) -> Result<bool, StoreUnavailable> {
        let key = digest(&[appid.as_bytes(), code.as_bytes()]);
        Ok(self.codes.entry(key).or_insert(()).is_fresh())
    }

    /// Stores a new session with its first refresh token.
    pub async fn create(&self, session: Session, refresh: Digest) -> Result<(), StoreUnavailable> {
        self.refresh.insert(
            refresh,
            RefreshEntry {
                sid: session.sid.clone(),
                spent: false,
                expires_at: session.expires_at,
            },
        );
        self.sessions.insert(session.sid.clone(), Arc::new(session));
        Ok(())
    }

    pub async fn session(&self, sid: &str) -> Result<Option<Session>, StoreUnavailable> {
        Ok(self.sessions.get(sid).map(|s| Session::clone(&s)))
    }

    /// Spends `old` and installs `new` in one atomic step; a second presentation of `old`
    /// reports [`Rotation::Reused`] and revokes the session.
    pub async fn rotate(
        &self,
        old: Digest,
        new: Digest,
        expires_at: i64,
        revoke_until: i64,
    ) -> Result<Rotation, StoreUnavailable> {
        let now = now_unix();
        let mut outcome: Option<Result<String, bool>> = None;
        self.refresh.entry(old).and_compute_with(|current| {
            use moka::ops::compute::Op;
            match current.map(|e| e.into_value()) {
                Some(entry) if entry.spent => {
                    outcome = Some(Err(true));
                    Op::Nop
                }
                Some(entry) if entry.expires_at > now => {
                    outcome = Some(Ok(entry.sid.clone()));
                    Op::Put(RefreshEntry {
                        spent: true,
                        ..entry
                    })
                }
                _ => {
                    outcome = Some(Err(false));
                    Op::Nop
                }
            }
        });
        let sid = match outcome {
            Some(Ok(sid)) => sid,
            Some(Err(true)) => {
                if let Some(entry) = self.refresh.get(&old) {
                    self.revoke(&entry.sid, revoke_until).await?;
                }
                return Ok(Rotation::Reused);
            }
            _ => return Ok(Rotation::Invalid),
        };
        let Some(session) = self.sessions.get(&sid).filter(|_| !self.is_revoked(&sid)) else {
            return Ok(Rotation::Invalid);
        };
        let renewed = Session {
            expires_at,
            ..Session::clone(&session)
        };
        self.refresh.insert(
            new,
            RefreshEntry {
                sid: sid.clone(),
                spent: false,
                expires_at,
            },
        );
        self.sessions.insert(sid, Arc::new(renewed.clone()));
        Ok(Rotation::Rotated(renewed))
    }

    /// Ends a session: its refresh tokens stop working at once and its access tokens are
    /// refused until `until` (when the last of them has expired anyway).
    pub async fn revoke(&self, sid: &str, until: i64) -> Result<(), StoreUnavailable> {
        self.revoked.insert(sid.to_string(), until);
        self.sessions.invalidate(sid);
        Ok(())
    }

    /// Called for every authenticated request; a local lookup, never a round trip.
    pub fn is_revoked(&self, sid: &str) -> bool {
        self.revoked.contains_key(sid)
    }

    /// Whether the store answers (the embedded one always does).
    pub async fn ping(&self) -> bool {
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn session(sid: &str) -> Session {
        Session {
            sid: sid.into(),
            openid: "o1".into(),
            unionid: None,
            appid: "wx1".into(),
            session_key: Secret::new("k"),
            expires_at: now_unix() + 3600,
        }
    }

    #[tokio::test]
    async fn a_code_is_claimed_once() {
        let store = MemoryStore::new();
        assert!(store.claim_code("wx1", "c1").await.unwrap_or(false));
        assert!(!store.claim_code("wx1", "c1").await.unwrap_or(true));
        assert!(
            store.claim_code("wx2", "c1").await.unwrap_or(false),
            "codes are per app"
        );
    }

    #[tokio::test]
    async fn rotation_spends_the_old_token_and_replay_revokes_the_session() {
        let store = MemoryStore::new();
        let (r1, r2, r3) = (digest(&[b"r1"]), digest(&[b"r2"]), digest(&[b"r3"]));
        store.create(session("s1"), r1).await.ok();
        let exp = now_unix() + 7200;
        assert!(
            matches!(store.rotate(r1, r2, exp, exp).await, Ok(Rotation::Rotated(s)) if s.sid == "s1")
        );
        assert!(matches!(
            store.rotate(r1, r3, exp, exp).await,
            Ok(Rotation::Reused)
        ));
        assert!(store.is_revoked("s1"));
        assert!(matches!(
            store.rotate(r2, r3, exp, exp).await,
            Ok(Rotation::Invalid)
        ));
    }

    #[tokio::test]
    async fn unknown_refresh_tokens_are_invalid() {
        let store = MemoryStore::new();
        let r = store.rotate(digest(&[b"x"]), digest(&[b"y"]), 0, 0).await;
        assert!(matches!(r, Ok(Rotation::Invalid)));
    }
}
