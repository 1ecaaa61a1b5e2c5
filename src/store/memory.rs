//! The embedded backend: bounded moka caches whose entries expire with what they hold,
//! and the per-user index, which sessions leave as the cache lets them go.
//! State lives in this process only, so it suits one gateway instance.

use std::sync::Arc;
use std::time::{Duration, Instant};

use moka::notification::RemovalCause;
use moka::sync::Cache;
use moka::Expiry;

use super::users::Users;
use super::{
    until, Admission, Digest, Indexed, RefreshKey, Renewal, Rotation, Session, SessionStore,
    StoreUnavailable, User, CODE_MEMORY,
};
use crate::tokens::now_unix;

const MAX_SESSIONS: u64 = 1_000_000;

#[derive(Debug, Clone)]
struct RefreshEntry {
    sid: String,
    spent: bool,
    expires_at: i64,
}

pub(crate) struct MemoryStore {
    codes: Cache<Digest, ()>,
    sessions: Cache<String, Arc<Session>>,
    refresh: Cache<Digest, RefreshEntry>,
    users: Arc<Users>,
}

/// Entries live until the Unix time they carry.
struct UntilExpiry;

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

impl Default for MemoryStore {
    fn default() -> Self {
        Self::new()
    }
}

impl MemoryStore {
    pub(crate) fn new() -> Self {
        let users = Arc::new(Users::default());
        let index = users.clone();
        Self {
            codes: Cache::builder()
                .max_capacity(MAX_SESSIONS)
                .time_to_live(CODE_MEMORY)
                .build(),
            sessions: Cache::builder()
                .max_capacity(MAX_SESSIONS)
                .expire_after(UntilExpiry)
                // An expired, revoked or evicted session leaves its user's index; an updated
                // one (a refresh, a phone) is replaced and stays.
                .eviction_listener(move |_, session: Arc<Session>, cause| {
                    if cause != RemovalCause::Replaced {
                        index.forget(&session);
                    }
                })
                .build(),
            refresh: Cache::builder()
                .max_capacity(MAX_SESSIONS * 2)
                .expire_after(UntilExpiry)
                .build(),
            users,
        }
    }
}

#[async_trait::async_trait]
impl SessionStore for MemoryStore {
    async fn claim_code(&self, appid: &str, code: &str) -> Result<bool, StoreUnavailable> {
        let key = super::digest(&[appid.as_bytes(), code.as_bytes()]);
        Ok(self.codes.entry(key).or_insert(()).is_fresh())
    }

    async fn create(
        &self,
        session: &Session,
        refresh: &RefreshKey,
    ) -> Result<Admission, StoreUnavailable> {
        if let Err(until) = self.users.admit(session) {
            return Ok(Admission::Blocked { until });
        }
        self.refresh.insert(
            refresh.digest,
            RefreshEntry {
                sid: session.sid.clone(),
                spent: false,
                expires_at: session.expires_at,
            },
        );
        self.sessions
            .insert(session.sid.clone(), Arc::new(session.clone()));
        Ok(Admission::Created)
    }

    async fn session(&self, sid: &str) -> Result<Option<Session>, StoreUnavailable> {
        Ok(self.sessions.get(sid).map(|s| Session::clone(&s)))
    }

    async fn rotate(&self, renewal: Renewal<'_>) -> Result<Rotation, StoreUnavailable> {
        let old = renewal.old;
        if let Some(until) = self.blocked_owner(&old.digest) {
            return Ok(Rotation::Blocked { until });
        }
        let now = now_unix();
        // What the old token was, decided atomically with spending it.
        enum Found {
            Live(String),
            Spent(String),
            Unknown,
        }
        let mut found = Found::Unknown;
        self.refresh.entry(old.digest).and_compute_with(|current| {
            use moka::ops::compute::Op;
            match current.map(|e| e.into_value()) {
                Some(entry) if entry.spent => {
                    found = Found::Spent(entry.sid);
                    Op::Nop
                }
                Some(entry) if entry.expires_at > now => {
                    found = Found::Live(entry.sid.clone());
                    Op::Put(RefreshEntry {
                        spent: true,
                        ..entry
                    })
                }
                _ => Op::Nop,
            }
        });
        let sid = match found {
            Found::Live(sid) => sid,
            Found::Spent(sid) => {
                self.revoke(std::slice::from_ref(&sid), renewal.revoke_until)
                    .await?;
                return Ok(Rotation::Reused { sid });
            }
            Found::Unknown => return Ok(Rotation::Invalid),
        };
        // Only the expiry changes, in place: a phone set meanwhile must not be undone.
        let Some(renewed) = self.update(&sid, |session| {
            session.expires_at = renewal.expires_at;
            session.refreshed_at = Some(now);
        }) else {
            return Ok(Rotation::Invalid);
        };
        self.refresh.insert(
            renewal.new.digest,
            RefreshEntry {
                sid,
                spent: false,
                expires_at: renewal.expires_at,
            },
        );
        Ok(Rotation::Rotated(renewed))
    }

    async fn revoke(&self, sids: &[String], _until: i64) -> Result<(), StoreUnavailable> {
        for sid in sids {
            self.sessions.invalidate(sid);
        }
        Ok(())
    }

    async fn user_sessions(&self, user: User<'_>) -> Result<Vec<Indexed>, StoreUnavailable> {
        Ok(self.users.sessions(user))
    }

    async fn block(&self, openid: &str, appid: &str, until: i64) -> Result<(), StoreUnavailable> {
        self.users.block(openid, appid, until);
        Ok(())
    }

    async fn unblock(&self, openid: &str, appid: &str) -> Result<bool, StoreUnavailable> {
        Ok(self.users.unblock(openid, appid))
    }

    async fn set_phone(&self, sid: &str, phone: &str) -> Result<bool, StoreUnavailable> {
        Ok(self
            .update(sid, |session| session.phone = Some(phone.to_string()))
            .is_some())
    }

    async fn ping(&self) -> bool {
        true
    }

    async fn shared_get(&self, _: &str) -> Result<Option<(String, i64)>, StoreUnavailable> {
        Ok(None)
    }

    async fn shared_put(&self, _: &str, _: &str, _: i64) -> Result<(), StoreUnavailable> {
        Ok(())
    }

    async fn shared_forget(&self, _: &str, _: &str) -> Result<(), StoreUnavailable> {
        Ok(())
    }
}

impl MemoryStore {
    /// Until when the user of a live refresh token's session is blocked, if they are: such
    /// a refresh is refused before anything is spent.
    fn blocked_owner(&self, token: &Digest) -> Option<i64> {
        let entry = self.refresh.get(token).filter(|e| !e.spent)?;
        let session = self.sessions.get(&entry.sid)?;
        self.users.blocked(&session.openid, &session.appid)
    }

    /// Changes a live session atomically and returns the new version; `None` when it is gone.
    fn update(&self, sid: &str, change: impl FnOnce(&mut Session)) -> Option<Session> {
        use moka::ops::compute::{CompResult, Op};
        let result =
            self.sessions
                .entry(sid.to_string())
                .and_compute_with(|current| match current {
                    Some(entry) => {
                        let mut session = Session::clone(entry.value());
                        change(&mut session);
                        Op::Put(Arc::new(session))
                    }
                    None => Op::Nop,
                });
        match result {
            CompResult::ReplacedWith(entry) => Some(Session::clone(entry.value())),
            _ => None,
        }
    }
}
