//! Who waits to hear that a session is revoked: open WebSocket tunnels, registered by `sid`,
//! woken by the same [`super::Revocations::insert`] every revocation notice goes through
//! (a local logout or replay, or the Redis feed from another instance).

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};

use tokio::sync::Notify;

/// The registry: `sid` → one [`Notify`] per waiting tunnel. A session has few tunnels, so a
/// list per `sid` is enough; the lock is taken when a tunnel opens or closes and when a
/// session is revoked, never on a proxied request.
#[derive(Default)]
pub(super) struct Watchers(Mutex<HashMap<String, Vec<Arc<Notify>>>>);

impl Watchers {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Vec<Arc<Notify>>>> {
        self.0.lock().unwrap_or_else(PoisonError::into_inner)
    }

    pub(super) fn register(self: &Arc<Self>, sid: &str) -> RevocationWatch {
        let notify = Arc::new(Notify::new());
        self.lock()
            .entry(sid.to_string())
            .or_default()
            .push(notify.clone());
        RevocationWatch {
            watchers: self.clone(),
            sid: sid.to_string(),
            notify,
        }
    }

    /// Wakes every watch on `sid`. `notify_one` keeps a permit, so a watch that is not
    /// waiting at this instant still ends when it next waits.
    pub(super) fn revoked(&self, sid: &str) {
        if let Some(waiting) = self.lock().get(sid) {
            for notify in waiting {
                notify.notify_one();
            }
        }
    }

    fn unregister(&self, sid: &str, notify: &Arc<Notify>) {
        let mut map = self.lock();
        if let Some(waiting) = map.get_mut(sid) {
            waiting.retain(|n| !Arc::ptr_eq(n, notify));
            if waiting.is_empty() {
                map.remove(sid);
            }
        }
    }

    #[cfg(test)]
    pub(super) fn len(&self) -> usize {
        self.lock().values().map(Vec::len).sum()
    }
}

/// One tunnel's watch on its session; leaves the registry when dropped.
pub struct RevocationWatch {
    watchers: Arc<Watchers>,
    sid: String,
    notify: Arc<Notify>,
}

impl RevocationWatch {
    /// Completes once the session is revoked (at once if it was when the watch began).
    pub async fn revoked(&self) {
        self.notify.notified().await;
    }

    /// Marks the watch as revoked already.
    pub(super) fn fire(&self) {
        self.notify.notify_one();
    }
}

impl Drop for RevocationWatch {
    fn drop(&mut self) {
        self.watchers.unregister(&self.sid, &self.notify);
    }
}
