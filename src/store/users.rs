//! The embedded store's per-user state: which sessions each openid and unionid has, and
//! the operator's login blocks. One lock covers the openid index and the blocks, so a
//! login's "not blocked, so indexed" is one step against an operator's "block, then
//! revoke what is indexed".

use std::collections::HashMap;
use std::sync::{Mutex, MutexGuard, PoisonError};

use super::{Indexed, Session, User, EVERY_APP};
use crate::tokens::now_unix;

/// `key` → (`sid` → appid).
type Index = HashMap<String, HashMap<String, String>>;

#[derive(Default)]
pub(super) struct Users(Mutex<Inner>);

#[derive(Default)]
struct Inner {
    by_openid: Index,
    by_unionid: Index,
    /// openid → (appid or [`EVERY_APP`] → until).
    blocks: HashMap<String, HashMap<String, i64>>,
}

impl Users {
    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.0.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Indexes `session` unless its user is blocked; the block's end otherwise.
    pub(super) fn admit(&self, session: &Session) -> Result<(), i64> {
        let mut inner = self.lock();
        if let Some(until) = inner.blocked(&session.openid, &session.appid) {
            return Err(until);
        }
        let entry = || (session.sid.clone(), session.appid.clone());
        let (sid, appid) = entry();
        inner
            .by_openid
            .entry(session.openid.clone())
            .or_default()
            .insert(sid, appid);
        if let Some(unionid) = &session.unionid {
            let (sid, appid) = entry();
            inner
                .by_unionid
                .entry(unionid.clone())
                .or_default()
                .insert(sid, appid);
        }
        Ok(())
    }

    /// Until when `openid` is blocked in `appid`, if it is.
    pub(super) fn blocked(&self, openid: &str, appid: &str) -> Option<i64> {
        self.lock().blocked(openid, appid)
    }

    /// Takes an ended session out of the index.
    pub(super) fn forget(&self, session: &Session) {
        let mut inner = self.lock();
        remove(&mut inner.by_openid, &session.openid, &session.sid);
        if let Some(unionid) = &session.unionid {
            remove(&mut inner.by_unionid, unionid, &session.sid);
        }
    }

    pub(super) fn sessions(&self, user: User<'_>) -> Vec<Indexed> {
        let inner = self.lock();
        let (index, key) = match user {
            User::Openid(openid) => (&inner.by_openid, openid),
            User::Unionid(unionid) => (&inner.by_unionid, unionid),
        };
        index
            .get(key)
            .into_iter()
            .flatten()
            .map(|(sid, appid)| Indexed {
                appid: appid.clone(),
                sid: sid.clone(),
            })
            .collect()
    }

    pub(super) fn block(&self, openid: &str, appid: &str, until: i64) {
        let now = now_unix();
        let mut inner = self.lock();
        // Ended blocks go whenever one is set, so the map holds only those that still count.
        inner.blocks.retain(|_, apps| {
            apps.retain(|_, until| *until > now);
            !apps.is_empty()
        });
        if until > now {
            inner
                .blocks
                .entry(openid.to_string())
                .or_default()
                .insert(appid.to_string(), until);
        } else if let Some(apps) = inner.blocks.get_mut(openid) {
            apps.remove(appid);
        }
    }

    pub(super) fn unblock(&self, openid: &str, appid: &str) -> bool {
        let mut inner = self.lock();
        let Some(apps) = inner.blocks.get_mut(openid) else {
            return false;
        };
        let lifted = apps.remove(appid).is_some_and(|until| until > now_unix());
        if apps.is_empty() {
            inner.blocks.remove(openid);
        }
        lifted
    }
}

impl Inner {
    fn blocked(&self, openid: &str, appid: &str) -> Option<i64> {
        let apps = self.blocks.get(openid)?;
        let now = now_unix();
        [appid, EVERY_APP]
            .iter()
            .filter_map(|app| apps.get(*app).copied())
            .filter(|until| *until > now)
            .max()
    }
}

fn remove(index: &mut Index, key: &str, sid: &str) {
    if let Some(sessions) = index.get_mut(key) {
        sessions.remove(sid);
        if sessions.is_empty() {
            index.remove(key);
        }
    }
}
