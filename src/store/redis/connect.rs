//! Connections to the configured Redis: one server (plain, TLS, unix socket), with the ACL
//! user and password, TLS verified against the configured CA or the system roots.
//!
//! [`Connector::conn`] hands out a command connection; [`Connector::pubsub`] opens the
//! revocation feed's subscription where announcements can be heard.

use std::time::Duration;

use redis::aio::{ConnectionLike, ConnectionManager, ConnectionManagerConfig, PubSub};
use redis::{
    Client, ClientTlsConfig, Cmd, ConnectionAddr, ConnectionInfo, IntoConnectionInfo, Pipeline,
    RedisFuture, RedisResult, TlsCertificates, Value,
};

use crate::settings::{RedisAuth, RedisSettings, RedisTarget, RedisTls};

/// The longest wait between reconnection attempts.
pub(super) const RECONNECT_MAX: Duration = Duration::from_secs(2);

pub(super) struct Connector {
    client: Client,
    pool: Vec<ConnectionManager>,
    next: std::sync::atomic::AtomicUsize,
    /// Bound on connecting and on each wait of the feed's subscription.
    pub(super) feed_timeout: Duration,
}

impl Connector {
    /// Sets up connections lazily: nothing here waits for Redis. Must run inside a tokio
    /// runtime.
    pub(super) fn new(settings: &RedisSettings) -> anyhow::Result<Self> {
        install_crypto_provider();
        let client = match &settings.target {
            RedisTarget::Url(url) => {
                let info = url
                    .expose()
                    .into_connection_info()
                    .map_err(|_| anyhow::anyhow!("store.url is not a usable Redis URL"))?;
                client(with_auth(info, &settings.auth), settings.tls.as_ref())?
            }
            RedisTarget::Sentinel { .. } | RedisTarget::Cluster { .. } => {
                anyhow::bail!("this Redis mode is not available yet")
            }
        };
        let config = manager_config(settings);
        let pool = (0..settings.pool_size.max(1))
            .map(|_| ConnectionManager::new_lazy_with_config(client.clone(), config.clone()))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| anyhow::anyhow!("cannot set up the Redis connection: {e}"))?;
        Ok(Self {
            client,
            pool,
            next: Default::default(),
            feed_timeout: settings.timeout.max(settings.connect_timeout),
        })
    }

    /// A command connection (round-robin over the pool).
    pub(super) fn conn(&self) -> Conn {
        use std::sync::atomic::Ordering;
        let i = self.next.fetch_add(1, Ordering::Relaxed) % self.pool.len();
        Conn::Managed(self.pool[i].clone())
    }

    /// A fresh subscription connection.
    pub(super) async fn pubsub(&self) -> RedisResult<PubSub> {
        self.client.get_async_pubsub().await
    }
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

/// One command connection, whatever the mode.
#[derive(Clone)]
pub(super) enum Conn {
    Managed(ConnectionManager),
}

impl ConnectionLike for Conn {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        match self {
            Conn::Managed(conn) => conn.req_packed_command(cmd),
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
        }
    }

    fn get_db(&self) -> i64 {
        match self {
            Conn::Managed(conn) => conn.get_db(),
        }
    }
}
