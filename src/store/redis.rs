//! The Redis backend, for several gateway instances sharing one Redis (6.2 or later).
//!
//! Keys, all under `key_prefix`:
//! - `code:{digest}`: the spent-code gate, `SET NX EX 300`;
//! - `session:{sid}`: a hash with the session (`session_key` included; the hook's claims as
//!   JSON under `claims`, the phone number under `phone`), expiring with it;
//! - `refresh:{digest}`: the session id of a live refresh token, or `!sid` once spent;
//! - `shared:{name}`: values every instance shares, as `"{expires_at} {value}"` (the managed
//!   `access_token` of each app);
//! - `revoked`: a sorted set of revoked session ids scored by when they may be forgotten,
//!   and a pub/sub channel of the same name announcing each revocation.
//!
//! Rotation and revocation are Lua scripts, so they are atomic across instances. Every
//! command is bounded by the store timeout; a failure is [`StoreUnavailable`], never a hang.
//! A background task subscribes to the revocation channel and resynchronises the local
//! [`Revocations`] from the sorted set every time it (re)connects.

use std::collections::HashMap;
use std::future::Future;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use futures_util::StreamExt;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::{AsyncCommands, Client, Script};

use super::{Digest, Revocations, Rotation, Session, SessionStore, StoreUnavailable, CODE_MEMORY};
use crate::claims::Ext;
use crate::secret::Secret;
use crate::settings::RedisSettings;
use crate::tokens::now_unix;

/// How often the subscriber checks that its connection is alive.
const SUBSCRIBER_PING: Duration = Duration::from_secs(5);
const RECONNECT_MAX: Duration = Duration::from_secs(2);

/// KEYS: refresh(old), refresh(new), revoked; ARGV: expires_at, revoke_until, now,
/// session key prefix, channel.
const ROTATE: &str = r"
local found = redis.call('GET', KEYS[1])
if not found then return {'invalid'} end
if string.sub(found, 1, 1) == '!' then
  local sid = string.sub(found, 2)
  redis.call('ZADD', KEYS[3], 'GT', ARGV[2], sid)
  redis.call('ZREMRANGEBYSCORE', KEYS[3], '-inf', '(' .. ARGV[3])
  redis.call('DEL', ARGV[4] .. sid)
  redis.call('PUBLISH', ARGV[5], sid .. ' ' .. ARGV[2])
  return {'reused', sid}
end
local session = ARGV[4] .. found
if redis.call('EXISTS', session) == 0 or redis.call('ZSCORE', KEYS[3], found) then
  return {'invalid'}
end
redis.call('SET', KEYS[1], '!' .. found, 'KEEPTTL')
redis.call('SET', KEYS[2], found, 'EXAT', ARGV[1])
redis.call('HSET', session, 'expires_at', ARGV[1])
redis.call('EXPIREAT', session, ARGV[1])
local out = {'rotated', found}
for _, v in ipairs(redis.call('HGETALL', session)) do out[#out + 1] = v end
return out
";

/// KEYS: shared value; ARGV: the value it must still hold.
const FORGET_IF: &str = r"
local current = redis.call('GET', KEYS[1])
if not current then return 0 end
local space = string.find(current, ' ', 1, true)
if space and string.sub(current, space + 1) == ARGV[1] then
  redis.call('DEL', KEYS[1])
  return 1
end
return 0
";

/// KEYS: session; ARGV: phone. Never recreates a session that expired or was revoked.
const SET_PHONE: &str = r"
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
redis.call('HSET', KEYS[1], 'phone', ARGV[1])
return 1
";

/// KEYS: session, revoked; ARGV: sid, until, now, channel.
const REVOKE: &str = r"
redis.call('ZADD', KEYS[2], 'GT', ARGV[2], ARGV[1])
redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', '(' .. ARGV[3])
redis.call('DEL', KEYS[1])
redis.call('PUBLISH', ARGV[4], ARGV[1] .. ' ' .. ARGV[2])
return 1
";

pub struct RedisStore {
    pool: Vec<ConnectionManager>,
    next: AtomicUsize,
    prefix: String,
    timeout: Duration,
    rotate: Script,
    revoke: Script,
    forget_if: Script,
    set_phone: Script,
    /// Stops the revocation subscriber when the store goes away.
    _subscriber: AbortOnDrop,
}

struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

impl RedisStore {
    /// Connects lazily: nothing here waits for Redis. Must run inside a tokio runtime.
    pub fn new(settings: &RedisSettings, revoked: Revocations) -> anyhow::Result<Self> {
        let client = Client::open(settings.url.expose())
            .map_err(|_| anyhow::anyhow!("store.url is not a usable Redis URL"))?;
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(settings.connect_timeout))
            .set_response_timeout(Some(settings.timeout))
            .set_number_of_retries(1)
            .set_max_delay(RECONNECT_MAX);
        let pool = (0..settings.pool_size.max(1))
            .map(|_| ConnectionManager::new_lazy_with_config(client.clone(), config.clone()))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| anyhow::anyhow!("cannot set up the Redis connection: {e}"))?;
        let prefix = settings.key_prefix.clone();
        let subscriber = Subscriber {
            client,
            name: format!("{prefix}revoked"),
            revoked,
            timeout: settings.timeout.max(settings.connect_timeout),
        };
        Ok(Self {
            pool,
            next: AtomicUsize::new(0),
            rotate: Script::new(ROTATE),
            revoke: Script::new(REVOKE),
            forget_if: Script::new(FORGET_IF),
            set_phone: Script::new(SET_PHONE),
            timeout: settings.timeout,
            prefix,
            _subscriber: AbortOnDrop(tokio::spawn(subscriber.run())),
        })
    }

    fn conn(&self) -> ConnectionManager {
        let i = self.next.fetch_add(1, Ordering::Relaxed) % self.pool.len();
        self.pool[i].clone()
    }

    fn key(&self, kind: &str, id: &str) -> String {
        format!("{}{kind}:{id}", self.prefix)
    }

    fn digest_key(&self, kind: &str, digest: &Digest) -> String {
        self.key(kind, &URL_SAFE_NO_PAD.encode(digest))
    }

    fn revoked_key(&self) -> String {
        format!("{}revoked", self.prefix)
    }

    /// Runs one store operation within the store timeout.
    async fn bounded<T>(
        &self,
        what: &str,
        op: impl Future<Output = redis::RedisResult<T>>,
    ) -> Result<T, StoreUnavailable> {
        match tokio::time::timeout(self.timeout, op).await {
            Ok(Ok(value)) => Ok(value),
            Ok(Err(e)) => {
                tracing::warn!(operation = what, error = %e, "session store (redis) failed");
                Err(StoreUnavailable)
            }
            Err(_) => {
                tracing::warn!(operation = what, "session store (redis) timed out");
                Err(StoreUnavailable)
            }
        }
    }
}

#[async_trait::async_trait]
impl SessionStore for RedisStore {
    async fn claim_code(&self, appid: &str, code: &str) -> Result<bool, StoreUnavailable> {
        let key = self.digest_key("code", &super::digest(&[appid.as_bytes(), code.as_bytes()]));
        let mut conn = self.conn();
        let set: Option<String> = self
            .bounded(
                "claim_code",
                redis::cmd("SET")
                    .arg(&key)
                    .arg(1)
                    .arg("NX")
                    .arg("EX")
                    .arg(CODE_MEMORY.as_secs())
                    .query_async(&mut conn),
            )
            .await?;
        Ok(set.is_some())
    }

    async fn create(&self, session: &Session, refresh: Digest) -> Result<(), StoreUnavailable> {
        let key = self.key("session", &session.sid);
        let mut fields = vec![
            ("openid", session.openid.clone()),
            ("appid", session.appid.clone()),
            ("session_key", session.session_key.expose().to_string()),
            ("expires_at", session.expires_at.to_string()),
        ];
        if let Some(unionid) = &session.unionid {
            fields.push(("unionid", unionid.clone()));
        }
        if !session.claims.is_empty() {
            let claims = serde_json::to_string(&session.claims).map_err(|_| StoreUnavailable)?;
            fields.push(("claims", claims));
        }
        if let Some(phone) = &session.phone {
            fields.push(("phone", phone.clone()));
        }
        let mut pipe = redis::pipe();
        pipe.atomic()
            .hset_multiple(&key, &fields)
            .ignore()
            .expire_at(&key, session.expires_at)
            .ignore()
            .cmd("SET")
            .arg(self.digest_key("refresh", &refresh))
            .arg(&session.sid)
            .arg("EXAT")
            .arg(session.expires_at)
            .ignore();
        let mut conn = self.conn();
        self.bounded("create", pipe.query_async::<()>(&mut conn))
            .await
    }

    async fn session(&self, sid: &str) -> Result<Option<Session>, StoreUnavailable> {
        let mut conn = self.conn();
        let fields: HashMap<String, String> = self
            .bounded("session", conn.hgetall(self.key("session", sid)))
            .await?;
        Ok(session_from(sid, fields))
    }

    async fn rotate(
        &self,
        old: Digest,
        new: Digest,
        expires_at: i64,
        revoke_until: i64,
    ) -> Result<Rotation, StoreUnavailable> {
        let mut invocation = self.rotate.prepare_invoke();
        invocation
            .key(self.digest_key("refresh", &old))
            .key(self.digest_key("refresh", &new))
            .key(self.revoked_key())
            .arg(expires_at)
            .arg(revoke_until)
            .arg(now_unix())
            .arg(self.key("session", ""))
            .arg(self.revoked_key());
        let mut conn = self.conn();
        let reply: Vec<String> = self
            .bounded("rotate", invocation.invoke_async(&mut conn))
            .await?;
        let mut reply = reply.into_iter();
        Ok(match (reply.next().as_deref(), reply.next()) {
            (Some("rotated"), Some(sid)) => {
                let mut fields = HashMap::new();
                while let (Some(k), Some(v)) = (reply.next(), reply.next()) {
                    fields.insert(k, v);
                }
                session_from(&sid, fields).map_or(Rotation::Invalid, Rotation::Rotated)
            }
            (Some("reused"), Some(sid)) => Rotation::Reused { sid },
            _ => Rotation::Invalid,
        })
    }

    async fn revoke(&self, sid: &str, until: i64) -> Result<(), StoreUnavailable> {
        let mut invocation = self.revoke.prepare_invoke();
        invocation
            .key(self.key("session", sid))
            .key(self.revoked_key())
            .arg(sid)
            .arg(until)
            .arg(now_unix())
            .arg(self.revoked_key());
        let mut conn = self.conn();
        self.bounded("revoke", invocation.invoke_async::<i64>(&mut conn))
            .await
            .map(drop)
    }

    async fn set_phone(&self, sid: &str, phone: &str) -> Result<bool, StoreUnavailable> {
        let mut invocation = self.set_phone.prepare_invoke();
        invocation.key(self.key("session", sid)).arg(phone);
        let mut conn = self.conn();
        let set: i64 = self
            .bounded("set_phone", invocation.invoke_async(&mut conn))
            .await?;
        Ok(set == 1)
    }

    async fn ping(&self) -> bool {
        let mut conn = self.conn();
        tokio::time::timeout(self.timeout, conn.ping::<String>())
            .await
            .is_ok_and(|r| r.is_ok())
    }

    async fn shared_get(&self, key: &str) -> Result<Option<(String, i64)>, StoreUnavailable> {
        let mut conn = self.conn();
        let stored: Option<String> = self
            .bounded("shared_get", conn.get(self.key("shared", key)))
            .await?;
        Ok(stored.and_then(|text| {
            let (expires_at, value) = text.split_once(' ')?;
            Some((value.to_string(), expires_at.parse().ok()?))
        }))
    }

    async fn shared_put(
        &self,
        key: &str,
        value: &str,
        expires_at: i64,
    ) -> Result<(), StoreUnavailable> {
        let mut conn = self.conn();
        self.bounded(
            "shared_put",
            redis::cmd("SET")
                .arg(self.key("shared", key))
                .arg(format!("{expires_at} {value}"))
                .arg("EXAT")
                .arg(expires_at)
                .query_async::<()>(&mut conn),
        )
        .await
    }

    async fn shared_forget(&self, key: &str, value: &str) -> Result<(), StoreUnavailable> {
        let mut invocation = self.forget_if.prepare_invoke();
        invocation.key(self.key("shared", key)).arg(value);
        let mut conn = self.conn();
        self.bounded("shared_forget", invocation.invoke_async::<i64>(&mut conn))
            .await
            .map(drop)
    }
}

/// A session from its hash (as HGETALL or the rotation script returns it); `None` when it is
/// gone or a field does not read back, which makes the session unusable rather than partial.
fn session_from(sid: &str, mut fields: HashMap<String, String>) -> Option<Session> {
    let claims = match fields.remove("claims") {
        None => Ext::new(),
        Some(json) => serde_json::from_str(&json).ok()?,
    };
    Some(Session {
        sid: sid.to_string(),
        openid: fields.remove("openid")?,
        unionid: fields.remove("unionid"),
        appid: fields.remove("appid")?,
        session_key: Secret::new(fields.remove("session_key")?),
        expires_at: fields.remove("expires_at")?.parse().ok()?,
        claims,
        phone: fields.remove("phone"),
    })
}

/// Follows the revocation channel into the local [`Revocations`].
struct Subscriber {
    client: Client,
    /// The name of both the revocation sorted set and its channel.
    name: String,
    revoked: Revocations,
    timeout: Duration,
}

impl Subscriber {
    async fn run(self) {
        let mut connected = true;
        let mut delay = Duration::from_millis(50);
        loop {
            match self.follow(&mut connected).await {
                Ok(()) => delay = Duration::from_millis(50),
                Err(e) => {
                    if std::mem::replace(&mut connected, false) {
                        tracing::warn!(error = %e, "revocation feed from redis lost; retrying");
                    }
                }
            }
            tokio::time::sleep(delay).await;
            delay = (delay * 2).min(RECONNECT_MAX);
        }
    }

    /// Subscribes, then loads every current revocation, then applies announcements until
    /// the connection fails. Subscribing first means nothing falls between the two.
    async fn follow(&self, connected: &mut bool) -> anyhow::Result<()> {
        let pubsub = tokio::time::timeout(self.timeout, self.client.get_async_pubsub()).await??;
        let (mut sink, mut stream) = pubsub.split();
        tokio::time::timeout(self.timeout, sink.subscribe(&self.name)).await??;
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
                    tokio::time::timeout(self.timeout, sink.ping::<()>()).await??;
                }
            }
        }
    }

    async fn resync(&self) -> anyhow::Result<()> {
        let mut conn =
            tokio::time::timeout(self.timeout, self.client.get_multiplexed_async_connection())
                .await??;
        let current: Vec<(String, i64)> = tokio::time::timeout(
            self.timeout,
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
