//! Who a verified token says the caller is: what may become identity headers upstream.
//! A leaf: verification makes it, forwarding, upgrades and endpoints read it.

use crate::claims::Ext;

/// A verified caller: what may become identity headers upstream. Shared as an
/// `Arc<Identity>` from the verified-token cache, so a request never copies it.
#[derive(Debug, Clone)]
pub struct Identity {
    pub openid: String,
    pub unionid: Option<String>,
    /// Absent in tokens other tooling minted without it: no `X-AppId`, no `apps` route.
    pub appid: Option<String>,
    /// Absent in tokens minted without a session: nothing to revoke, valid until `exp`.
    pub sid: Option<String>,
    pub exp: i64,
    /// The login hook's claims (empty without a hook), for claim headers.
    pub ext: Ext,
    /// The session's phone number, from `/auth/phone`: what `auth = "phone"` routes need.
    pub phone: Option<String>,
}
