//! The revocation feed: a background task that subscribes to the revocation channel and
//! keeps the local [`Revocations`] current, resynchronising from the sorted set every time
//! it (re)connects.

use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;
use redis::AsyncCommands;

use super::connect::{Connector, RECONNECT_MAX};
use crate::store::Revocations;
use crate::tokens::now_unix;

/// How often the subscriber checks that its connection is alive.
const SUBSCRIBER_PING: Duration = Duration::from_secs(5);

/// Follows the revocation channel into the local [`Revocations`].
pub(super) struct Subscriber {
    pub(super) connector: Arc<Connector>,
    /// The name of both the revocation sorted set and its channel.
    pub(super) name: String,
    pub(super) revoked: Revocations,
}

impl Subscriber {
    pub(super) async fn run(self) {
        let mut connected = true;
        let mut delay = Duration::from_millis(50);
        let mut moved = self.connector.moved();
        // Behind Sentinel the primary is not known at start: wait for it a moment rather
        // than report the feed lost before it was ever there.
        if !self.connector.has_target() {
            tokio::select! {
                () = switched(&mut moved) => {}
                () = tokio::time::sleep(RECONNECT_MAX) => {}
            }
        }
        loop {
            match self.follow(&mut connected).await {
                Ok(()) => delay = Duration::from_millis(50),
                Err(e) => {
                    if std::mem::replace(&mut connected, false) {
                        tracing::warn!(error = %e, "revocation feed from redis lost; retrying");
                        // A feed that was working retries quickly, however long ago the
                        // last outage backed off.
                        delay = Duration::from_millis(50);
                    }
                }
            }
            // A new primary ends the wait: the feed moves there at once.
            tokio::select! {
                () = tokio::time::sleep(delay) => {}
                () = switched(&mut moved) => {}
            }
            delay = (delay * 2).min(RECONNECT_MAX);
        }
    }

    /// Subscribes, then loads every current revocation, then applies announcements until
    /// the connection fails. Subscribing first means nothing falls between the two.
    async fn follow(&self, connected: &mut bool) -> anyhow::Result<()> {
        let timeout = self.connector.feed_timeout;
        // Taken before connecting, so a switch of primary while subscribing is not missed.
        let mut moved = self.connector.moved();
        if let Some(moved) = &mut moved {
            moved.borrow_and_update();
        }
        let pubsub = tokio::time::timeout(timeout, self.connector.pubsub()).await??;
        let (mut sink, mut stream) = pubsub.split();
        tokio::time::timeout(timeout, sink.subscribe(&self.name)).await??;
        self.resync().await?;
        if !std::mem::replace(connected, true) {
            tracing::info!("revocation feed from redis restored");
        }
        let mut ping = tokio::time::interval(SUBSCRIBER_PING);
        ping.tick().await;
        loop {
            tokio::select! {
                message = stream.next() => {
                    let Some(message) = message else {
                        anyhow::bail!("the subscription closed");
                    };
                    if let Ok(text) = message.get_payload::<String>() {
                        self.apply(&text);
                    }
                }
                _ = ping.tick() => {
                    // Any reply will do: on a subscribed RESP2 connection Redis answers PING
                    // with the array ["pong", ""], not the +PONG a String would require.
                    tokio::time::timeout(timeout, sink.ping::<()>()).await??;
                }
                () = switched(&mut moved) => {
                    tracing::info!("revocation feed follows the new redis primary");
                    return Ok(());
                }
            }
        }
    }

    async fn resync(&self) -> anyhow::Result<()> {
        let mut conn = self.connector.conn();
        let current: Vec<(String, i64)> = tokio::time::timeout(
            self.connector.feed_timeout,
            conn.zrangebyscore_withscores(&self.name, now_unix(), "+inf"),
        )
        .await??;
        for (sid, until) in current {
            self.revoked.insert(&sid, until);
        }
        Ok(())
    }

    /// One announcement: `"{sid} {until}"`.
    fn apply(&self, text: &str) {
        if let Some((sid, until)) = text.split_once(' ') {
            if let Ok(until) = until.parse() {
                self.revoked.insert(sid, until);
            }
        }
    }
}

/// Completes when the primary the subscription is on has been replaced; never in the
/// modes without one.
async fn switched(moved: &mut Option<tokio::sync::watch::Receiver<u64>>) {
    let changed = match moved {
        Some(moved) => moved.changed().await.is_ok(),
        None => false,
    };
    if !changed {
        std::future::pending::<()>().await;
    }
}
