//! The Redis backend, for several gateway instances sharing one Redis (6.2 or later): one
//! server, a primary followed through Sentinel, or a Redis Cluster.
//!
//! Keys, all under `key_prefix`; `{...}` is a literal Redis Cluster hash tag, so every key
//! of one session, or of one user, lives on one cluster slot:
//! - `code:<digest>`: the spent-code gate, `SET NX EX 300`;
//! - `session:{<sid>}`: a hash with the session (`session_key` included; the hook's claims
//!   as JSON under `claims`, the phone number under `phone`, `created_at`,
//!   `refreshed_at`), expiring with it;
//! - `refresh:{<sid>}:<digest>`: `sid` for a live refresh token, `!sid` once spent (the
//!   token carries its session id, so its key is found without a lookup);
//! - `revoked:{<sid>}`: the session was revoked, until the value's time;
//! - `user:{<openid>}`, `unionid:{<unionid>}`: sorted sets of `"<appid> <sid>"` scored by
//!   the session's expiry, the index user revocation and listing read;
//! - `block:{<openid>}`: a hash of appid (or `*`) to the Unix time a login block ends;
//! - `shared:<name>`: values every instance shares, as `"{expires_at} {value}"` (the
//!   managed `access_token` of each app);
//! - `revoked`: a sorted set of revoked session ids scored by when they may be forgotten,
//!   and a pub/sub channel of the same name announcing each revocation.
//!
//! Each multi-key change is a Lua script ([`scripts`]) on one slot. A revocation is two
//! steps: the session's slot ends it (its refresh tokens fail from then on), then the
//! `revoked` set records and announces it; the second step is idempotent, so a failure in
//! between is mended by trying again. Every command is bounded by the store timeout; a
//! failure is [`StoreUnavailable`], never a hang. A background task subscribes to the
//! revocation channel and resynchronises the local [`Revocations`] from the sorted set
//! every time it (re)connects.

mod connect;
mod scripts;
mod sentinel;
mod sessions;
mod subscriber;
mod users;

use std::collections::HashMap;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use redis::{AsyncCommands, FromRedisValue, Script, ScriptInvocation};

use connect::{AbortOnDrop, Conn, Connector};
use subscriber::Subscriber;

use super::{
    Admission, Digest, Indexed, RefreshKey, Renewal, Revocations, Rotation, Session, SessionStore,
    StoreUnavailable, User, CODE_MEMORY,
};
use crate::claims::Ext;
use crate::secret::Secret;
use crate::settings::RedisSettings;

pub(crate) struct RedisStore {
    connector: Arc<Connector>,
    prefix: String,
    timeout: Duration,
    scripts: Scripts,
    /// Stops the revocation subscriber when the store goes away.
    _subscriber: AbortOnDrop,
}

struct Scripts {
    admit: Script,
    create: Script,
    rotate: Script,
    end: Script,
    announce: Script,
    block: Script,
    unblock: Script,
    forget_if: Script,
    set_phone: Script,
}

impl RedisStore {
    /// Connects lazily: nothing here waits for Redis. Must run inside a tokio runtime.
    pub(crate) fn new(settings: &RedisSettings, revoked: Revocations) -> anyhow::Result<Self> {
        let connector = Arc::new(Connector::new(settings)?);
        let prefix = settings.key_prefix.clone();
        let subscriber = Subscriber {
            connector: connector.clone(),
            name: format!("{prefix}revoked"),
            revoked,
        };
        Ok(Self {
            connector,
            scripts: Scripts {
                admit: Script::new(scripts::ADMIT),
                create: Script::new(scripts::CREATE),
                rotate: Script::new(scripts::ROTATE),
                end: Script::new(scripts::END),
                announce: Script::new(scripts::ANNOUNCE),
                block: Script::new(scripts::BLOCK),
                unblock: Script::new(scripts::UNBLOCK),
                forget_if: Script::new(scripts::FORGET_IF),
                set_phone: Script::new(scripts::SET_PHONE),
            },
            timeout: settings.timeout,
            prefix,
            _subscriber: AbortOnDrop(tokio::spawn(subscriber.run())),
        })
    }

    fn conn(&self) -> Conn {
        self.connector.conn()
    }

    /// An untagged key: `code:`, `shared:`.
    fn key(&self, kind: &str, id: &str) -> String {
        format!("{}{kind}:{id}", self.prefix)
    }

    /// A key placed on the cluster slot of `tag`: a session's or a user's.
    fn tagged(&self, kind: &str, tag: &str) -> String {
        format!("{}{kind}:{{{tag}}}", self.prefix)
    }

    fn digest_key(&self, kind: &str, digest: &Digest) -> String {
        self.key(kind, &URL_SAFE_NO_PAD.encode(digest))
    }

    /// A refresh token's key, on its session's slot.
    fn refresh_key(&self, token: &RefreshKey) -> String {
        format!(
            "{}:{}",
            self.tagged("refresh", &token.sid),
            URL_SAFE_NO_PAD.encode(token.digest)
        )
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

    /// Runs a prepared script within the store timeout.
    async fn run<T: FromRedisValue>(
        &self,
        what: &str,
        invocation: &ScriptInvocation<'_>,
    ) -> Result<T, StoreUnavailable> {
        let mut conn = self.conn();
        self.bounded(what, invocation.invoke_async(&mut conn)).await
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

    async fn create(
        &self,
        session: &Session,
        refresh: &RefreshKey,
    ) -> Result<Admission, StoreUnavailable> {
        self.create_session(session, refresh).await
    }

    async fn session(&self, sid: &str) -> Result<Option<Session>, StoreUnavailable> {
        let mut conn = self.conn();
        let fields: HashMap<String, String> = self
            .bounded("session", conn.hgetall(self.tagged("session", sid)))
            .await?;
        Ok(session_from(sid, fields))
    }

    async fn rotate(&self, renewal: Renewal<'_>) -> Result<Rotation, StoreUnavailable> {
        self.rotate_token(renewal).await
    }

    async fn revoke(&self, sids: &[String], until: i64) -> Result<(), StoreUnavailable> {
        self.end_sessions(sids, until).await
    }

    async fn user_sessions(&self, user: User<'_>) -> Result<Vec<Indexed>, StoreUnavailable> {
        self.indexed(user).await
    }

    async fn block(&self, openid: &str, appid: &str, until: i64) -> Result<(), StoreUnavailable> {
        self.set_block(openid, appid, until).await
    }

    async fn unblock(&self, openid: &str, appid: &str) -> Result<bool, StoreUnavailable> {
        let mut invocation = self.scripts.unblock.prepare_invoke();
        invocation
            .key(self.tagged("block", openid))
            .arg(appid)
            .arg(crate::tokens::now_unix());
        let lifted: i64 = self.run("unblock", &invocation).await?;
        Ok(lifted == 1)
    }

    async fn set_phone(&self, sid: &str, phone: &str) -> Result<bool, StoreUnavailable> {
        let mut invocation = self.scripts.set_phone.prepare_invoke();
        invocation.key(self.tagged("session", sid)).arg(phone);
        let set: i64 = self.run("set_phone", &invocation).await?;
        Ok(set == 1)
    }
    async fn ping(&self) -> bool {
        let pings = self
            .connector
            .each()
            .into_iter()
            .map(|mut conn| async move {
                tokio::time::timeout(self.timeout, conn.ping::<String>())
                    .await
                    .is_ok_and(|r| r.is_ok())
            });
        futures_util::future::join_all(pings)
            .await
            .into_iter()
            .all(|ok| ok)
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
        let mut invocation = self.scripts.forget_if.prepare_invoke();
        invocation.key(self.key("shared", key)).arg(value);
        self.run::<i64>("shared_forget", &invocation)
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
        created_at: fields.remove("created_at")?.parse().ok()?,
        refreshed_at: fields.remove("refreshed_at").and_then(|t| t.parse().ok()),
    })
}
