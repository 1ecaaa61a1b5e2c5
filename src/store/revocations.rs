//! The local view of revoked sessions, checked on every authenticated request.
//!
//! It has no capacity: a revocation dropped to make room would let a logged-out token
//! work again. Each entry lapses when every access token of its session has expired
//! (`until`), and a session can only be revoked after a login, which WeChat and the login
//! limiter pace, so the set stays as small as the logouts of one access-token lifetime.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, RwLock};

use super::watch::{RevocationWatch, Watchers};
use crate::tokens::now_unix;

/// `sid` → Unix time until which it stays revoked, and who waits to hear about a
/// revocation. Cheap to clone (one shared set).
#[derive(Clone, Default)]
pub(crate) struct Revocations(Arc<Inner>);

#[derive(Default)]
struct Inner {
    map: RwLock<HashMap<String, i64, foldhash::fast::RandomState>>,
    /// Entries in `map`, readable without the lock: the usual answer, "none", costs no lock.
    len: AtomicUsize,
    /// The size after the last sweep; the next sweep comes when the set has doubled.
    swept_at: AtomicUsize,
    watchers: Arc<Watchers>,
}

/// Below this size the set is never swept (a sweep walks every entry).
const SWEEP_FLOOR: usize = 1024;

impl Revocations {
    /// Records that `sid` is revoked until `until`; a later `until` already known is kept.
    pub(crate) fn insert(&self, sid: &str, until: i64) {
        let now = now_unix();
        if until <= now {
            return;
        }
        let mut map = self.0.map.write().unwrap_or_else(|e| e.into_inner());
        let entry = map.entry(sid.to_string()).or_insert(until);
        *entry = (*entry).max(until);
        if map.len() >= SWEEP_FLOOR.max(2 * self.0.swept_at.load(Ordering::Relaxed)) {
            map.retain(|_, until| *until > now);
            self.0.swept_at.store(map.len(), Ordering::Relaxed);
        }
        self.0.len.store(map.len(), Ordering::Release);
        drop(map);
        // After the insert: a watch that begins meanwhile finds the sid in the set.
        self.0.watchers.revoked(sid);
    }

    /// A watch that completes when `sid` is revoked. It is registered before the set is
    /// looked at, so a revocation arriving at any moment is either seen now or notified.
    pub(crate) fn watch(&self, sid: &str) -> RevocationWatch {
        let watch = self.0.watchers.register(sid);
        if self.contains(sid) {
            watch.fire();
        }
        watch
    }

    /// Whether `sid` is revoked now.
    pub(crate) fn contains(&self, sid: &str) -> bool {
        if self.0.len.load(Ordering::Acquire) == 0 {
            return false;
        }
        let map = self.0.map.read().unwrap_or_else(|e| e.into_inner());
        map.get(sid).is_some_and(|until| *until > now_unix())
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.0.len.load(Ordering::Acquire)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_revocation_holds_until_its_time_and_the_later_time_wins() {
        let r = Revocations::default();
        let now = now_unix();
        assert!(!r.contains("s1"));
        r.insert("s1", now + 60);
        r.insert("s1", now + 10);
        assert!(r.contains("s1"));
        r.insert("gone", now - 1);
        assert!(!r.contains("gone"));
        assert_eq!(r.len(), 1);
    }

    #[test]
    fn a_dropped_watch_leaves_the_registry() {
        let revocations = Revocations::default();
        let (a, b) = (revocations.watch("s1"), revocations.watch("s1"));
        assert_eq!(revocations.0.watchers.len(), 2);
        drop(a);
        assert_eq!(revocations.0.watchers.len(), 1);
        drop(b);
        assert_eq!(revocations.0.watchers.len(), 0);
        revocations.insert("s1", now_unix() + 60);
    }

    #[test]
    fn no_revocation_is_dropped_to_make_room() {
        let r = Revocations::default();
        let until = now_unix() + 3600;
        // More than the million entries the earlier, bounded set held.
        let n = 1_000_001;
        for i in 0..n {
            r.insert(&format!("s{i}"), until);
        }
        assert_eq!(r.len(), n);
        for i in [0, 1, n / 2, n - 1] {
            assert!(r.contains(&format!("s{i}")), "s{i} was dropped");
        }
    }

    #[test]
    fn expired_entries_are_swept_as_the_set_grows() {
        let r = Revocations::default();
        let now = now_unix();
        for i in 0..SWEEP_FLOOR {
            r.insert(&format!("old{i}"), now + 3600);
        }
        // Let those lapse, as time passing would.
        {
            let mut map = r.0.map.write().unwrap_or_else(|e| e.into_inner());
            map.values_mut().for_each(|until| *until = now - 1);
        }
        assert!(!r.contains("old0"));
        for i in 0..SWEEP_FLOOR {
            r.insert(&format!("new{i}"), now + 3600);
        }
        // The set doubled, so it was swept: only the live half is left.
        assert_eq!(r.len(), SWEEP_FLOOR);
        assert!(r.contains("new0") && r.contains(&format!("new{}", SWEEP_FLOOR - 1)));
    }
}
