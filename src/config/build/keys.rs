//! `[[auth.keys]]`: the signing and verification keys, the first one signing.

use super::Builder;
use crate::config::file::{AuthSection, KeySection};
use crate::secret::Secret;
use crate::tokens::{self, Key, KeySet, Material};

impl Builder<'_> {
    pub(super) fn keys(&mut self, a: &AuthSection) -> Option<KeySet> {
        if a.keys.is_empty() {
            self.problem("auth.keys", "at least one [[auth.keys]] entry is required");
            return None;
        }
        if a.keys[0].public_key_file.is_some() {
            self.problem(
                "auth.keys[0]",
                "the first key signs new tokens, so it needs `secret`, `secret_file` or \
                 `private_key_file`; a `public_key_file` key only verifies and goes after it",
            );
        }
        let mut keys = Vec::new();
        for (i, k) in a.keys.iter().enumerate() {
            let path = format!("auth.keys[{i}]");
            if k.kid.is_empty() || k.kid.len() > 64 || !k.kid.bytes().all(|b| b.is_ascii_graphic())
            {
                self.problem(
                    &format!("{path}.kid"),
                    "must be 1 to 64 visible ASCII characters",
                );
            }
            if a.keys[..i].iter().any(|other| other.kid == k.kid) {
                self.problem(
                    &format!("{path}.kid"),
                    format!("`{}` is used by two keys", k.kid),
                );
            }
            let alg = match tokens::parse_alg(&k.alg) {
                Ok(alg) => alg,
                Err(e) => {
                    self.problem(&format!("{path}.alg"), e);
                    continue;
                }
            };
            let Some((field, material)) = self.key_material(&path, alg, k) else {
                continue;
            };
            match Key::new(k.kid.clone(), alg, material) {
                Ok(key) => keys.push(key),
                Err(e) => self.problem(&format!("{path}.{field}"), e),
            }
        }
        (keys.len() == a.keys.len()).then(|| KeySet::new(keys))
    }

    /// What one `[[auth.keys]]` entry holds, and the field its problems are reported under.
    fn key_material(
        &mut self,
        path: &str,
        alg: jsonwebtoken::Algorithm,
        k: &KeySection,
    ) -> Option<(&'static str, Material)> {
        let has_secret = k.secret.is_some() || k.secret_file.is_some();
        // Whether the material suits `alg` is the key's own check (`Key::new`).
        match (&k.private_key_file, &k.public_key_file) {
            (Some(_), Some(_)) => {
                self.problem(
                    path,
                    "set either `private_key_file` or `public_key_file`, not both",
                );
                None
            }
            (Some(_), None) | (None, Some(_)) if has_secret => {
                self.problem(
                    path,
                    "set either a secret (`secret`, `secret_file`) or a PEM key file, not both",
                );
                None
            }
            (Some(file), None) => self
                .read_file(&format!("{path}.private_key_file"), file)
                .map(|pem| ("private_key_file", Material::PrivatePem(Secret::new(pem)))),
            (None, Some(file)) => self
                .read_file(&format!("{path}.public_key_file"), file)
                .map(|pem| ("public_key_file", Material::PublicPem(pem))),
            (None, None) if has_secret || tokens::is_hmac(alg) => self
                .secret(
                    &format!("{path}.secret"),
                    k.secret.as_deref(),
                    k.secret_file.as_deref(),
                )
                .map(|secret| ("secret", Material::Hmac(secret))),
            (None, None) => {
                self.problem(
                    path,
                    format!(
                        "missing: set `private_key_file` or `public_key_file` for `{}`",
                        tokens::alg_name(alg)
                    ),
                );
                None
            }
        }
    }
}
