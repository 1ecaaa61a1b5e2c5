//! A session's life in Redis: created after its user's index admits it, refreshed after
//! the block check and the index's expiry are brought up to date, ended on its own slot
//! and then announced.

use std::collections::HashMap;

use super::{session_from, RedisStore};
use crate::store::{
    Admission, RefreshKey, Renewal, Rotation, Session, SessionStore, StoreUnavailable,
};
use crate::tokens::now_unix;

impl RedisStore {
    pub(super) async fn create_session(
        &self,
        session: &Session,
        refresh: &RefreshKey,
    ) -> Result<Admission, StoreUnavailable> {
        // The index first: a session that exists is always indexed, so revoking its user
        // finds it. A failure after this leaves only an index entry without a session.
        if let Some(until) = self.admit(session).await? {
            return Ok(Admission::Blocked { until });
        }
        let mut fields = vec![
            ("openid", session.openid.clone()),
            ("appid", session.appid.clone()),
            ("session_key", session.session_key.expose().to_string()),
            ("expires_at", session.expires_at.to_string()),
            ("created_at", session.created_at.to_string()),
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
        let mut invocation = self.scripts.create.prepare_invoke();
        invocation
            .key(self.tagged("session", &session.sid))
            .key(self.refresh_key(refresh))
            .arg(session.expires_at)
            .arg(&session.sid);
        for (name, value) in &fields {
            invocation.arg(*name).arg(value);
        }
        self.run::<i64>("create", &invocation).await?;
        Ok(Admission::Created)
    }

    pub(super) async fn rotate_token(
        &self,
        renewal: Renewal<'_>,
    ) -> Result<Rotation, StoreUnavailable> {
        // Before anything is spent: the user's block, and the index's expiry for this
        // session (the index lives on the user's slot, which the rotation cannot touch).
        // A failure here leaves the token unspent, so the client can simply try again.
        if let Some(session) = self.session(&renewal.old.sid).await? {
            let renewed = Session {
                expires_at: renewal.expires_at,
                ..session
            };
            if let Some(until) = self.admit(&renewed).await? {
                return Ok(Rotation::Blocked { until });
            }
        }
        let mut invocation = self.scripts.rotate.prepare_invoke();
        invocation
            .key(self.refresh_key(renewal.old))
            .key(self.refresh_key(renewal.new))
            .key(self.tagged("session", &renewal.old.sid))
            .key(self.tagged("revoked", &renewal.old.sid))
            .arg(renewal.expires_at)
            .arg(renewal.revoke_until)
            .arg(now_unix());
        let reply: Vec<String> = self.run("rotate", &invocation).await?;
        let mut reply = reply.into_iter();
        Ok(match (reply.next().as_deref(), reply.next()) {
            (Some("rotated"), Some(sid)) => {
                let mut fields = HashMap::new();
                while let (Some(k), Some(v)) = (reply.next(), reply.next()) {
                    fields.insert(k, v);
                }
                session_from(&sid, fields).map_or(Rotation::Invalid, Rotation::Rotated)
            }
            (Some("reused"), Some(sid)) => {
                self.announce(std::slice::from_ref(&sid), renewal.revoke_until)
                    .await?;
                Rotation::Reused { sid }
            }
            _ => Rotation::Invalid,
        })
    }

    pub(super) async fn end_sessions(
        &self,
        sids: &[String],
        until: i64,
    ) -> Result<(), StoreUnavailable> {
        for sid in sids {
            let mut invocation = self.scripts.end.prepare_invoke();
            invocation
                .key(self.tagged("session", sid))
                .key(self.tagged("revoked", sid))
                .arg(until);
            self.run::<i64>("revoke", &invocation).await?;
        }
        self.announce(sids, until).await
    }

    /// Records revocations in the `revoked` set and tells every instance.
    async fn announce(&self, sids: &[String], until: i64) -> Result<(), StoreUnavailable> {
        let mut invocation = self.scripts.announce.prepare_invoke();
        invocation
            .key(self.revoked_key())
            .arg(until)
            .arg(now_unix())
            .arg(self.revoked_key());
        for sid in sids {
            invocation.arg(sid);
        }
        self.run::<i64>("announce", &invocation).await.map(drop)
    }
}
