//! The verified-token cache: a token that passed every check maps to its identity until the
//! token's own `exp`, so a client reusing one access token pays for the signature once.
//!
//! The key is the whole token, compared byte for byte, so two different tokens can never
//! share an entry. The cache belongs to one configuration ([`crate::gateway::Runtime`]):
//! a reload that removes a key starts from an empty cache. Revocation is not cached; the
//! caller checks it on every request, hit or miss.
//!
//! In front of the cache, each client connection remembers the last token it proved
//! ([`ConnMemo`]): a client that sends the same token again on the same connection, as a
//! mini-program on a keep-alive connection does, skips even the cache lookup.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use moka::sync::Cache;
use moka::Expiry;

use crate::identity::Identity;
use crate::tokens::{self, Policy, TokenError, MAX_TOKEN_BYTES};

/// Bytes of tokens and identities kept at most (a weigher counts them).
const CAPACITY_BYTES: u64 = 32 * 1024 * 1024;
/// Roughly what an entry costs besides the token text.
const ENTRY_OVERHEAD: u32 = 256;

#[derive(Clone)]
struct Entry {
    identity: Arc<Identity>,
    /// The entry's own key, shared: a connection's memo holds it without a copy.
    token: Arc<str>,
}

/// Entries expire with the token they stand for.
struct UntilExp;

impl Expiry<Arc<str>, Entry> for UntilExp {
    fn expire_after_create(&self, _: &Arc<str>, v: &Entry, _: Instant) -> Option<Duration> {
        let left = v.identity.exp.saturating_sub(tokens::now_unix());
        Some(Duration::from_secs(left.max(0) as u64))
    }
}

/// The cache's hasher. Faster than the default SipHash over a token of a few hundred bytes,
/// and safe here: only tokens that passed full verification (signed with our keys) are ever
/// inserted, so no client can choose the keys to make them collide.
type TokenHasher = foldhash::fast::RandomState;

pub struct VerifiedTokens {
    cache: Cache<Arc<str>, Entry, TokenHasher>,
    /// Unique to this cache for the life of the process, so a memo made under an earlier
    /// configuration (other keys) never answers for this one.
    id: u64,
}

/// A connection's last proved token and its identity, valid for the cache it came from.
#[derive(Default)]
pub struct ConnMemo(Mutex<Option<Remembered>>);

struct Remembered {
    cache: u64,
    token: Arc<str>,
    identity: Arc<Identity>,
}

impl ConnMemo {
    fn get(&self, cache: u64, token: &str, now: i64) -> Option<Arc<Identity>> {
        let slot = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        let last = slot.as_ref()?;
        (last.cache == cache && *last.token == *token && last.identity.exp > now)
            .then(|| last.identity.clone())
    }

    fn set(&self, cache: u64, token: Arc<str>, identity: Arc<Identity>) {
        *self.0.lock().unwrap_or_else(PoisonError::into_inner) = Some(Remembered {
            cache,
            token,
            identity,
        });
    }
}

impl Default for VerifiedTokens {
    fn default() -> Self {
        Self::new()
    }
}

impl VerifiedTokens {
    pub fn new() -> Self {
        static NEXT_ID: AtomicU64 = AtomicU64::new(0);
        Self {
            id: NEXT_ID.fetch_add(1, Ordering::Relaxed),
            cache: Cache::builder()
                .max_capacity(CAPACITY_BYTES)
                // The identity (hook claims included) is decoded from the token, so the
                // token's length bounds it too: an entry weighs twice its token.
                .weigher(|token: &Arc<str>, _: &Entry| {
                    (token.len() as u32)
                        .saturating_mul(2)
                        .saturating_add(ENTRY_OVERHEAD)
                })
                .expire_after(UntilExp)
                .build_with_hasher(TokenHasher::default()),
        }
    }

    /// The identity a token proves: from the connection's memo, from the cache, or by full
    /// verification. A proved token is remembered in `memo`.
    pub fn verify(
        &self,
        keys: &tokens::KeySet,
        policy: &Policy<'_>,
        token: &str,
        memo: Option<&ConnMemo>,
    ) -> Result<Arc<Identity>, TokenError> {
        if token.len() > MAX_TOKEN_BYTES {
            return Err(TokenError::TooLarge);
        }
        let now = tokens::now_unix();
        if let Some(identity) = memo.and_then(|m| m.get(self.id, token, now)) {
            crate::ops::metrics::verified_cache(true);
            return Ok(identity);
        }
        if let Some(entry) = self.cache.get(token) {
            // moka may keep an entry a moment past its expiry; `exp` is the real bound.
            if entry.identity.exp > now {
                crate::ops::metrics::verified_cache(true);
                if let Some(memo) = memo {
                    memo.set(self.id, entry.token, entry.identity.clone());
                }
                return Ok(entry.identity);
            }
        }
        crate::ops::metrics::verified_cache(false);
        let claims = tokens::verify(keys, policy, token, now)?;
        let identity = Arc::new(Identity {
            openid: claims.sub,
            unionid: claims.unionid,
            appid: claims.appid,
            sid: claims.sid,
            exp: claims.exp,
            ext: claims.ext.unwrap_or_default(),
            phone: claims.phone,
        });
        if identity.exp > now {
            let token: Arc<str> = Arc::from(token);
            if let Some(memo) = memo {
                memo.set(self.id, token.clone(), identity.clone());
            }
            self.cache.insert(
                token.clone(),
                Entry {
                    identity: identity.clone(),
                    token,
                },
            );
        }
        Ok(identity)
    }

    #[cfg(test)]
    fn len(&self) -> u64 {
        self.cache.run_pending_tasks();
        self.cache.entry_count()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::secret::Secret;
    use crate::tokens::{Claims, Key, KeySet, Material};

    const SECRET: &str = "verified-cache-test-secret-0123456789";

    fn keys() -> KeySet {
        let key = Key::new(
            "k1".into(),
            jsonwebtoken::Algorithm::HS256,
            Material::Hmac(Secret::new(SECRET)),
        )
        .expect("key");
        KeySet::new(vec![key])
    }

    fn policy() -> Policy<'static> {
        Policy {
            issuer: "wxgate",
            audience: "aud",
            leeway_secs: 0,
        }
    }

    fn token(keys: &KeySet, sub: &str, exp_in: i64) -> String {
        let now = tokens::now_unix();
        let claims = Claims {
            iss: "wxgate".into(),
            aud: "aud".into(),
            sub: sub.into(),
            iat: now,
            nbf: None,
            exp: now + exp_in,
            jti: Some(tokens::random_id(8)),
            sid: Some("s1".into()),
            appid: Some("wx1".into()),
            unionid: None,
            ext: None,
            phone: None,
        };
        tokens::mint(keys, &claims).expect("mint")
    }

    #[test]
    fn a_cached_token_gives_the_same_identity() {
        let (keys, cache) = (keys(), VerifiedTokens::new());
        let t = token(&keys, "o1", 60);
        let first = cache
            .verify(&keys, &policy(), &t, None)
            .map(|i| i.openid.clone());
        let second = cache
            .verify(&keys, &policy(), &t, None)
            .map(|i| i.openid.clone());
        assert_eq!(first, Ok("o1".to_string()));
        assert_eq!(second, first);
        assert_eq!(cache.len(), 1);
    }

    #[test]
    fn a_tampered_token_is_not_served_from_the_cache() {
        let (keys, cache) = (keys(), VerifiedTokens::new());
        let t = token(&keys, "o1", 60);
        assert!(cache.verify(&keys, &policy(), &t, None).is_ok());
        let mut tampered = t.clone();
        tampered.push('A');
        assert!(cache.verify(&keys, &policy(), &tampered, None).is_err());
        let prefix = &t[..t.len() - 1];
        assert!(cache.verify(&keys, &policy(), prefix, None).is_err());
    }

    #[test]
    fn failures_and_expired_tokens_are_not_cached() {
        let (keys, cache) = (keys(), VerifiedTokens::new());
        let expired = token(&keys, "o1", -5);
        assert_eq!(
            cache.verify(&keys, &policy(), &expired, None).map(|_| ()),
            Err(TokenError::Expired)
        );
        assert!(cache.verify(&keys, &policy(), "a.b.c", None).is_err());
        assert_eq!(cache.len(), 0);
    }

    #[test]
    fn a_token_for_another_key_set_is_still_checked() {
        let cache = VerifiedTokens::new();
        let signer = keys();
        let t = token(&signer, "o1", 60);
        assert!(cache.verify(&signer, &policy(), &t, None).is_ok());
        // The cache belongs to one key set; a new configuration builds a new cache, and a
        // fresh cache verifies against the keys it is given.
        let other = KeySet::new(vec![Key::new(
            "k1".into(),
            jsonwebtoken::Algorithm::HS256,
            Material::Hmac(Secret::new("another-secret-that-is-long-enough-000")),
        )
        .expect("key")]);
        assert!(VerifiedTokens::new()
            .verify(&other, &policy(), &t, None)
            .is_err());
    }

    #[test]
    fn a_connection_memo_answers_only_for_its_token_its_cache_and_until_exp() {
        let (keys, cache) = (keys(), VerifiedTokens::new());
        let memo = ConnMemo::default();
        let t = token(&keys, "o1", 60);
        assert!(cache.verify(&keys, &policy(), &t, Some(&memo)).is_ok());
        let now = tokens::now_unix();
        let remembered = memo.get(cache.id, &t, now).map(|i| i.openid.clone());
        assert_eq!(remembered.as_deref(), Some("o1"));
        // Another token on the same connection is checked in full, not taken from the memo.
        let mut tampered = t.clone();
        tampered.push('A');
        assert!(memo.get(cache.id, &tampered, now).is_none());
        assert!(cache
            .verify(&keys, &policy(), &tampered, Some(&memo))
            .is_err());
        // A memo made under another configuration's cache never answers for this one.
        let other = VerifiedTokens::new();
        assert!(memo.get(other.id, &t, now).is_none());
        // Nor past the token's expiry.
        assert!(memo.get(cache.id, &t, now + 61).is_none());
    }
}
