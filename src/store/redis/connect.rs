//! Connections to the configured Redis, in each of its modes: one server (plain, TLS, unix
//! socket), the primary that Sentinels name (followed through failovers by
//! [`super::sentinel`]), or a Redis Cluster (slots and redirections handled by the redis
//! crate's cluster client). Every mode takes the ACL user and password, and TLS verified
//! against the configured CA or the system roots.
//!
//! [`Connector::conn`] hands out a command connection; [`Connector::pubsub`] opens the
//! revocation feed's subscription where announcements can be heard, and
//! [`Connector::moved`] says when it must move.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use redis::aio::{ConnectionLike, ConnectionManager, ConnectionManagerConfig, PubSub};
use redis::cluster::{ClusterClientBuilder, ClusterConfig};
use redis::cluster_async::ClusterConnection;
use redis::{
    Client, ClientTlsConfig, Cmd, ConnectionAddr, ConnectionInfo, ErrorKind, IntoConnectionInfo,
    Pipeline, RedisError, RedisFuture, RedisResult, TlsCertificates, TlsMode, Value,
};
use tokio::sync::watch;

use super::sentinel::{self, Primary};
use crate::settings::{RedisAuth, RedisSettings, RedisTarget, RedisTls};

/// The longest wait between reconnection attempts.
pub(super) const RECONNECT_MAX: Duration = Duration::from_secs(2);

pub(super) struct Connector {
    mode: Mode,
    next: AtomicUsize,
    /// Bound on connecting and on each wait of the feed's subscription.
    pub(super) feed_timeout: Duration,
}

enum Mode {
    Single {
        /// Boxed: a client is large, and the other modes hold theirs behind pointers.
        client: Box<Client>,
        pool: Vec<ConnectionManager>,
    },
    Sentinel {
        primary: Arc<Primary>,
        _watcher: AbortOnDrop,
    },
    Cluster {
        pool: Vec<ClusterConnection>,
        /// One client per seed node: an ordinary PUBLISH reaches every node of a cluster,
        /// so the feed may subscribe on any of them.
        seeds: Vec<Client>,
    },
}

/// A background task that ends when its owner goes away.
pub(super) struct AbortOnDrop(pub(super) tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// How to reach one node of a Sentinel or Cluster deployment by the address it is named
/// by: TLS, credentials and database are the same for all of them.
pub(super) struct Node {
    pub(super) auth: RedisAuth,
    pub(super) db: i64,
    pub(super) tls: Option<RedisTls>,
}

impl Node {
    pub(super) fn info(&self, host: &str, port: u16) -> RedisResult<ConnectionInfo> {
        let addr = match self.tls {
            Some(_) => ConnectionAddr::TcpTls {
                host: host.to_string(),
                port,
                insecure: false,
                tls_params: None,
            },
            None => ConnectionAddr::Tcp(host.to_string(), port),
        };
        let info = addr.into_connection_info()?;
        let redis = info.redis_settings().clone().set_db(self.db);
        Ok(with_auth(info.set_redis_settings(redis), &self.auth))
    }

    pub(super) fn client(&self, host: &str, port: u16) -> anyhow::Result<Client> {
        let info = self
            .info(host, port)
            .map_err(|e| anyhow::anyhow!("not a usable Redis address: {e}"))?;
        client(info, self.tls.as_ref())
    }
}

impl Connector {
    /// Sets up connections lazily: nothing here waits for Redis. Must run inside a tokio
    /// runtime.
    pub(super) fn new(settings: &RedisSettings) -> anyhow::Result<Self> {
        install_crypto_provider();
        let mode = match &settings.target {
            RedisTarget::Url(url) => {
                let info = url
                    .expose()
                    .into_connection_info()
                    .map_err(|_| anyhow::anyhow!("store.url is not a usable Redis URL"))?;
                let client = client(with_auth(info, &settings.auth), settings.tls.as_ref())?;
                let pool = managers(&client, settings)?;
                Mode::Single {
                    client: Box::new(client),
                    pool,
                }
            }
            RedisTarget::Sentinel {
                sentinels,
                master_name,
                db,
                sentinel_auth,
            } => sentinel_mode(settings, sentinels, master_name, *db, sentinel_auth)?,
            RedisTarget::Cluster { nodes } => cluster_mode(settings, nodes)?,
        };
        Ok(Self {
            mode,
            next: AtomicUsize::new(0),
            feed_timeout: settings.timeout.max(settings.connect_timeout),
        })
    }

    /// A command connection (round-robin over the pool).
    pub(super) fn conn(&self) -> Conn {
        let next = self.next.fetch_add(1, Ordering::Relaxed);
        match &self.mode {
            Mode::Single { pool, .. } => Conn::Managed(pool[next % pool.len()].clone()),
            Mode::Sentinel { primary, .. } => match primary.current() {
                Some(current) => Conn::Primary(
                    current.pool[next % current.pool.len()].clone(),
                    primary.clone(),
                ),
                None => {
                    primary.nudge();
                    Conn::NoPrimary
                }
            },
            Mode::Cluster { pool, .. } => Conn::Cluster(pool[next % pool.len()].clone()),
        }
    }

    /// Every command connection of the pool, once each: readiness checks them all, so
    /// that a ready instance has no connection left that would fail its next command
    /// (after a Redis restart, each one fails once before it reconnects).
    pub(super) fn each(&self) -> Vec<Conn> {
        match &self.mode {
            Mode::Single { pool, .. } => pool.iter().cloned().map(Conn::Managed).collect(),
            Mode::Sentinel { primary, .. } => match primary.current() {
                Some(current) => (current.pool.iter().cloned())
                    .map(|c| Conn::Primary(c, primary.clone()))
                    .collect(),
                None => vec![self.conn()],
            },
            Mode::Cluster { pool, .. } => pool.iter().cloned().map(Conn::Cluster).collect(),
        }
    }

    /// A fresh subscription connection where revocation announcements are heard: the one
    /// server, the current primary, or the next seed node of a cluster.
    pub(super) async fn pubsub(&self) -> RedisResult<PubSub> {
        let next = self.next.fetch_add(1, Ordering::Relaxed);
        match &self.mode {
            Mode::Single { client, .. } => client.get_async_pubsub().await,
            Mode::Sentinel { primary, .. } => match primary.current() {
                Some(current) => current.client.get_async_pubsub().await,
                None => Err(no_primary()),
            },
            Mode::Cluster { seeds, .. } => seeds[next % seeds.len()].get_async_pubsub().await,
        }
    }

    /// Whether there is somewhere to connect to yet (Sentinel: a primary is known).
    pub(super) fn has_target(&self) -> bool {
        match &self.mode {
            Mode::Sentinel { primary, .. } => primary.current().is_some(),
            _ => true,
        }
    }

    /// Changes when the subscription must move (Sentinel switched to another primary);
    /// `None` in the modes where it never has to.
    pub(super) fn moved(&self) -> Option<watch::Receiver<u64>> {
        match &self.mode {
            Mode::Sentinel { primary, .. } => Some(primary.switches()),
            _ => None,
        }
    }
}

fn sentinel_mode(
    settings: &RedisSettings,
    sentinels: &[(String, u16)],
    master_name: &str,
    db: i64,
    sentinel_auth: &RedisAuth,
) -> anyhow::Result<Mode> {
    let tls = settings.tls.clone();
    let reach_sentinel = Node {
        auth: sentinel_auth.clone(),
        db: 0,
        tls: tls.clone(),
    };
    let clients = sentinels
        .iter()
        .map(|(host, port)| reach_sentinel.client(host, port.to_owned()))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let (primary, watcher) = Primary::start(sentinel::Settings {
        sentinels: clients,
        master_name: master_name.to_string(),
        node: Node {
            auth: settings.auth.clone(),
            db,
            tls,
        },
        pool_size: settings.pool_size,
        manager: manager_config(settings),
        timeout: settings.timeout.max(settings.connect_timeout),
    })?;
    Ok(Mode::Sentinel {
        primary,
        _watcher: watcher,
    })
}

fn cluster_mode(settings: &RedisSettings, nodes: &[(String, u16)]) -> anyhow::Result<Mode> {
    let node = Node {
        auth: settings.auth.clone(),
        db: 0,
        tls: settings.tls.clone(),
    };
    let infos = nodes
        .iter()
        .map(|(host, port)| node.info(host, *port))
        .collect::<RedisResult<Vec<_>>>()
        .map_err(|e| anyhow::anyhow!("store.cluster: {e}"))?;
    let mut builder = ClusterClientBuilder::new(infos)
        .connection_timeout(settings.connect_timeout)
        .response_timeout(settings.timeout);
    if let Some(tls) = &settings.tls {
        builder = builder.tls(TlsMode::Secure).certs(certificates(tls));
    }
    let cluster = builder
        .build()
        .map_err(|e| anyhow::anyhow!("cannot set up the Redis Cluster client: {e}"))?;
    let config = ClusterConfig::new()
        .set_connection_timeout(settings.connect_timeout)
        .set_response_timeout(settings.timeout);
    let pool = (0..settings.pool_size.max(1))
        .map(|_| cluster.get_pending_async_connection_with_config(config.clone()))
        .collect();
    let seeds = nodes
        .iter()
        .map(|(host, port)| node.client(host, *port))
        .collect::<anyhow::Result<Vec<_>>>()?;
    Ok(Mode::Cluster { pool, seeds })
}

/// The redis crate builds its rustls `ClientConfig` with the process-default crypto
/// provider: make that aws-lc-rs, wxgate's one provider, before the first connection. It
/// fails only when a provider is installed already, and rustls here is built with no other.
fn install_crypto_provider() {
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
}

fn manager_config(settings: &RedisSettings) -> ConnectionManagerConfig {
    ConnectionManagerConfig::new()
        .set_connection_timeout(Some(settings.connect_timeout))
        .set_response_timeout(Some(settings.timeout))
        .set_number_of_retries(1)
        .set_max_delay(RECONNECT_MAX)
}

fn managers(client: &Client, settings: &RedisSettings) -> anyhow::Result<Vec<ConnectionManager>> {
    let config = manager_config(settings);
    (0..settings.pool_size.max(1))
        .map(|_| ConnectionManager::new_lazy_with_config(client.clone(), config.clone()))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| anyhow::anyhow!("cannot set up the Redis connection: {e}"))
}

/// `info` with the configured ACL user and password, where the configuration gives them
/// outside the URL.
fn with_auth(info: ConnectionInfo, auth: &RedisAuth) -> ConnectionInfo {
    let mut redis = info.redis_settings().clone();
    if let Some(username) = &auth.username {
        redis = redis.set_username(username);
    }
    if let Some(password) = &auth.password {
        redis = redis.set_password(password.expose());
    }
    info.set_redis_settings(redis)
}

/// A client for `info`; over TLS (a `rediss://` address) with the configured roots and
/// client certificate.
fn client(info: ConnectionInfo, tls: Option<&RedisTls>) -> anyhow::Result<Client> {
    let built = match (info.addr(), tls) {
        (ConnectionAddr::TcpTls { .. }, Some(tls)) => {
            Client::build_with_tls(info, certificates(tls))
        }
        (ConnectionAddr::TcpTls { .. }, None) => {
            anyhow::bail!("a rediss:// address needs the TLS settings")
        }
        _ => Client::open(info),
    };
    built.map_err(|e| anyhow::anyhow!("cannot set up the Redis client: {e}"))
}

/// What the redis crate takes for TLS: the CA (else it uses the system roots) and the
/// client certificate, both PEM.
fn certificates(tls: &RedisTls) -> TlsCertificates {
    TlsCertificates {
        client_tls: tls.client.as_ref().map(|(chain, key)| ClientTlsConfig {
            client_cert: chain.clone(),
            client_key: key.expose().as_bytes().to_vec(),
        }),
        root_cert: tls.ca.clone(),
    }
}

fn no_primary() -> RedisError {
    RedisError::from((
        ErrorKind::Io,
        "no Redis primary known yet (asking the Sentinels)",
    ))
}

/// One command connection, whatever the mode.
pub(super) enum Conn {
    Managed(ConnectionManager),
    /// A connection to the Sentinels' primary; a failure makes it look for a new one.
    Primary(ConnectionManager, Arc<Primary>),
    /// Sentinel mode before any primary is known: every command fails at once.
    NoPrimary,
    Cluster(ClusterConnection),
}

impl ConnectionLike for Conn {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        match self {
            Conn::Managed(conn) => conn.req_packed_command(cmd),
            Conn::Primary(conn, primary) => Box::pin(async move {
                let result = conn.req_packed_command(cmd).await;
                if result.is_err() {
                    primary.nudge();
                }
                result
            }),
            Conn::NoPrimary => Box::pin(async { Err(no_primary()) }),
            Conn::Cluster(conn) => conn.req_packed_command(cmd),
        }
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        pipeline: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        match self {
            Conn::Managed(conn) => conn.req_packed_commands(pipeline, offset, count),
            Conn::Primary(conn, primary) => Box::pin(async move {
                let result = conn.req_packed_commands(pipeline, offset, count).await;
                if result.is_err() {
                    primary.nudge();
                }
                result
            }),
            Conn::NoPrimary => Box::pin(async { Err(no_primary()) }),
            Conn::Cluster(conn) => conn.req_packed_commands(pipeline, offset, count),
        }
    }

    fn get_db(&self) -> i64 {
        match self {
            Conn::Managed(conn) | Conn::Primary(conn, _) => conn.get_db(),
            Conn::NoPrimary => 0,
            Conn::Cluster(conn) => conn.get_db(),
        }
    }
}
