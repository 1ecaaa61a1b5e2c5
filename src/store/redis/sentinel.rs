//! Following the primary that the Sentinels name: a background task asks them every
//! second (and at once when a command fails), checks that the address they give answers
//! `ROLE` as a primary, and then swaps the command connections over to it and tells the
//! revocation feed to subscribe there. Commands in flight on the old primary fail with
//! [`StoreUnavailable`](crate::store::StoreUnavailable); the next ones go to the new one.

use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwapOption;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::{Client, RedisResult, Role};
use tokio::sync::{watch, Notify};

use super::connect::{AbortOnDrop, Node};

/// How often the Sentinels are asked when nothing fails.
const POLL: Duration = Duration::from_secs(1);
/// The shortest time between two asks, however often commands fail.
const MIN_GAP: Duration = Duration::from_millis(100);

/// The primary in use, and how to reach the next one.
pub(super) struct Primary {
    sentinels: Vec<ConnectionManager>,
    master_name: String,
    /// How to reach a `(host, port)` the Sentinels name: TLS, credentials, db.
    node: Node,
    pool_size: usize,
    manager: ConnectionManagerConfig,
    timeout: Duration,
    current: ArcSwapOption<Current>,
    /// Bumped on each switch; the revocation feed resubscribes when it changes.
    switched: watch::Sender<u64>,
    /// Wakes the watcher early: a command failed, perhaps because the primary moved.
    nudge: Notify,
}

pub(super) struct Current {
    pub(super) addr: (String, u16),
    pub(super) client: Client,
    pub(super) pool: Vec<ConnectionManager>,
}

pub(super) struct Settings {
    pub(super) sentinels: Vec<Client>,
    pub(super) master_name: String,
    pub(super) node: Node,
    pub(super) pool_size: usize,
    pub(super) manager: ConnectionManagerConfig,
    pub(super) timeout: Duration,
}

impl Primary {
    /// Sets up lazily and starts the watcher, which runs until the returned guard drops;
    /// nothing here waits for a Sentinel.
    pub(super) fn start(settings: Settings) -> anyhow::Result<(Arc<Self>, AbortOnDrop)> {
        let sentinels = settings
            .sentinels
            .into_iter()
            .map(|c| ConnectionManager::new_lazy_with_config(c, settings.manager.clone()))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| anyhow::anyhow!("cannot set up the Sentinel connections: {e}"))?;
        let primary = Arc::new(Self {
            sentinels,
            master_name: settings.master_name,
            node: settings.node,
            pool_size: settings.pool_size.max(1),
            manager: settings.manager,
            timeout: settings.timeout,
            current: ArcSwapOption::empty(),
            switched: watch::channel(0).0,
            nudge: Notify::new(),
        });
        let watcher = AbortOnDrop(tokio::spawn(watch_primary(primary.clone())));
        Ok((primary, watcher))
    }

    pub(super) fn current(&self) -> Option<Arc<Current>> {
        self.current.load_full()
    }

    /// A command failed: look for a new primary now rather than at the next poll.
    pub(super) fn nudge(&self) {
        self.nudge.notify_one();
    }

    pub(super) fn switches(&self) -> watch::Receiver<u64> {
        self.switched.subscribe()
    }

    /// Asks the Sentinels for the primary and switches to it if it moved.
    async fn check(&self) {
        let Some(addr) = self.ask().await else {
            return;
        };
        if self.current().is_some_and(|c| c.addr == addr) {
            return;
        }
        match self.connect(&addr).await {
            Ok(current) => {
                tracing::info!(host = %addr.0, port = addr.1, "redis primary (from Sentinel)");
                self.current.store(Some(Arc::new(current)));
                self.switched.send_modify(|n| *n += 1);
            }
            Err(e) => {
                tracing::warn!(host = %addr.0, port = addr.1, error = %e, "the primary Sentinel names is not usable yet");
            }
        }
    }

    /// The first answer of a Sentinel, in the configured order.
    async fn ask(&self) -> Option<(String, u16)> {
        for sentinel in &self.sentinels {
            let mut conn = sentinel.clone();
            let mut cmd = redis::cmd("SENTINEL");
            cmd.arg("GET-MASTER-ADDR-BY-NAME").arg(&self.master_name);
            let asked = cmd.query_async::<Option<(String, u16)>>(&mut conn);
            match tokio::time::timeout(self.timeout, asked).await {
                Ok(Ok(Some(addr))) => return Some(addr),
                Ok(Ok(None)) => {
                    tracing::warn!(master_name = %self.master_name, "a Sentinel does not know this master_name");
                }
                Ok(Err(_)) | Err(_) => {}
            }
        }
        None
    }

    /// Connects to `addr` and makes sure it is a primary (a Sentinel may name a replica it
    /// is still promoting).
    async fn connect(&self, addr: &(String, u16)) -> anyhow::Result<Current> {
        let client = self.node.client(&addr.0, addr.1)?;
        let role = async {
            let mut conn = client.get_multiplexed_async_connection().await?;
            redis::cmd("ROLE").query_async::<Role>(&mut conn).await
        };
        match tokio::time::timeout(self.timeout, role).await {
            Ok(Ok(Role::Primary { .. })) => {}
            Ok(Ok(_)) => anyhow::bail!("it is not a primary yet"),
            Ok(Err(e)) => anyhow::bail!("{e}"),
            Err(_) => anyhow::bail!("it did not answer ROLE in time"),
        }
        let pool = (0..self.pool_size)
            .map(|_| ConnectionManager::new_lazy_with_config(client.clone(), self.manager.clone()))
            .collect::<RedisResult<Vec<_>>>()?;
        Ok(Current {
            addr: addr.clone(),
            client,
            pool,
        })
    }
}

async fn watch_primary(primary: Arc<Primary>) {
    loop {
        primary.check().await;
        let _ = tokio::time::timeout(POLL, primary.nudge.notified()).await;
        tokio::time::sleep(MIN_GAP).await;
    }
}
