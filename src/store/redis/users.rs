//! Per-user state in Redis: the index of each openid's and unionid's sessions, and login
//! blocks, which share the openid's slot so that one script checks the block and indexes
//! a new session together.

use redis::AsyncCommands;

use super::RedisStore;
use crate::store::{Indexed, Session, StoreUnavailable, User};
use crate::tokens::now_unix;

impl RedisStore {
    /// Indexes `session` under its openid (and unionid) until it expires, unless its user
    /// is blocked in its app: then the block's end.
    pub(super) async fn admit(&self, session: &Session) -> Result<Option<i64>, StoreUnavailable> {
        let member = format!("{} {}", session.appid, session.sid);
        let now = now_unix();
        let mut invocation = self.scripts.admit.prepare_invoke();
        invocation
            .key(self.tagged("user", &session.openid))
            .key(self.tagged("block", &session.openid))
            .arg(&session.appid)
            .arg(&member)
            .arg(session.expires_at)
            .arg(now);
        let blocked: i64 = self.run("admit", &invocation).await?;
        if blocked > 0 {
            return Ok(Some(blocked));
        }
        if let Some(unionid) = &session.unionid {
            let mut invocation = self.scripts.admit.prepare_invoke();
            invocation
                .key(self.tagged("unionid", unionid))
                .arg(&session.appid)
                .arg(&member)
                .arg(session.expires_at)
                .arg(now);
            self.run::<i64>("admit", &invocation).await?;
        }
        Ok(None)
    }

    pub(super) async fn indexed(&self, user: User<'_>) -> Result<Vec<Indexed>, StoreUnavailable> {
        let key = match user {
            User::Openid(openid) => self.tagged("user", openid),
            User::Unionid(unionid) => self.tagged("unionid", unionid),
        };
        let mut conn = self.conn();
        let members: Vec<String> = self
            .bounded("sessions", conn.zrangebyscore(key, now_unix(), "+inf"))
            .await?;
        Ok(members
            .into_iter()
            .filter_map(|member| {
                let (appid, sid) = member.split_once(' ')?;
                Some(Indexed {
                    appid: appid.to_string(),
                    sid: sid.to_string(),
                })
            })
            .collect())
    }

    pub(super) async fn set_block(
        &self,
        openid: &str,
        appid: &str,
        until: i64,
    ) -> Result<(), StoreUnavailable> {
        let mut invocation = self.scripts.block.prepare_invoke();
        invocation
            .key(self.tagged("block", openid))
            .arg(appid)
            .arg(until)
            .arg(now_unix());
        self.run::<i64>("block", &invocation).await.map(drop)
    }
}
