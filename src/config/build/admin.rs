//! `[admin] token_file`: the bearer secret that guards the session and user endpoints.

use std::path::Path;

use crate::config::file::AdminSection;
use crate::secret::Secret;

/// Shorter secrets are refused: the token guards the power to end anyone's sessions.
const MIN_TOKEN_LEN: usize = 16;

/// The token from `token_file` (trimmed), when set; problems go to `problems`.
pub(super) fn token(
    admin: &AdminSection,
    base: &Path,
    problems: &mut Vec<String>,
) -> Option<Secret> {
    let file = admin.token_file.as_deref()?;
    let full = base.join(file);
    let text = match std::fs::read_to_string(&full) {
        Ok(text) => text,
        Err(e) => {
            problems.push(format!(
                "admin.token_file: cannot read {}: {e}",
                full.display()
            ));
            return None;
        }
    };
    let token = text.trim();
    if token.len() < MIN_TOKEN_LEN || !token.bytes().all(|b| b.is_ascii_graphic()) {
        problems.push(format!(
            "admin.token_file: must hold at least {MIN_TOKEN_LEN} visible ASCII characters"
        ));
        return None;
    }
    Some(Secret::new(token))
}
