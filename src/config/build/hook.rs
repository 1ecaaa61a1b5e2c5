//! `[auth.on_login]` and `[auth.claim_headers]`: the login hook's address, and which claims
//! become which headers upstream.

use http::HeaderName;

use super::{fold_header_name, Builder};
use crate::claims::{self, REGISTERED_CLAIMS};
use crate::config::file::{AuthSection, OnLoginSection};
use crate::settings::{IdentityHeaders, LoginHook};

/// Headers wxgate sets or reads on every forwarded request, besides the identity, token
/// and hop-by-hop ones: a claim header may not be one of them.
const WXGATE_HEADERS: [&str; 12] = [
    "host",
    "content-length",
    "content-type",
    "content-encoding",
    "expect",
    "authorization",
    "forwarded",
    "x-forwarded-for",
    "x-forwarded-proto",
    "x-forwarded-host",
    "x-real-ip",
    "x-request-id",
];

/// Folded names of the headers wxgate reads, frames the message with or writes itself
/// (besides identity headers): no configured identity or claim header may be one of them.
pub(super) fn owned_headers(token_headers: &[HeaderName]) -> impl Iterator<Item = String> + '_ {
    token_headers
        .iter()
        .map(|h| fold_header_name(h.as_str()))
        .chain(
            crate::proxy::headers::HOP_BY_HOP
                .iter()
                .map(|h| h.to_string()),
        )
        .chain(WXGATE_HEADERS.iter().map(|h| h.to_string()))
}

impl Builder<'_> {
    pub(super) fn on_login(&mut self, hook: &OnLoginSection) -> Option<LoginHook> {
        let url = match url::Url::parse(&hook.url) {
            Ok(u)
                if matches!(u.scheme(), "http" | "https")
                    && u.host().is_some()
                    && u.fragment().is_none() =>
            {
                // Credentials in a URL end up in logs and error messages sooner or later.
                if !u.username().is_empty() || u.password().is_some() {
                    self.problem(
                        "auth.on_login.url",
                        "must not carry credentials (`user:password@`)",
                    );
                    None
                } else {
                    Some(hook.url.clone())
                }
            }
            _ => {
                self.problem(
                    "auth.on_login.url",
                    "is not an absolute http:// or https:// URL",
                );
                None
            }
        };
        let timeout = self.duration("auth.on_login.timeout", &hook.timeout);
        Some(LoginHook {
            url: url?,
            timeout: timeout?,
        })
    }

    /// `[auth.claim_headers]`: claim → header. Without a hook only `phone` has a value.
    pub(super) fn claim_headers(
        &mut self,
        a: &AuthSection,
        identity: Option<&IdentityHeaders>,
        token_headers: &[HeaderName],
    ) -> Vec<(String, HeaderName)> {
        // Headers wxgate sets, reads or frames the message with: a claim must not replace them.
        let owned: Vec<String> = identity
            .map(|i| i.strip.clone())
            .unwrap_or_default()
            .into_iter()
            .chain(owned_headers(token_headers))
            .collect();
        let mut claim_headers: Vec<(String, HeaderName)> = Vec::new();
        for (claim, header) in &a.claim_headers {
            let path = format!("auth.claim_headers.{claim}");
            if !claims::is_claim_name(claim) {
                self.problem(
                    &path,
                    format!("`{claim}` is not a claim name (1 to 64 of [A-Za-z0-9_])"),
                );
            } else if REGISTERED_CLAIMS.contains(&claim.as_str()) {
                self.problem(
                    &path,
                    format!("`{claim}` is a registered claim and cannot be set by the login hook"),
                );
            } else if claim != claims::PHONE && a.on_login.is_none() {
                self.problem(
                    &path,
                    format!(
                        "`{claim}` can only come from the login hook: configure [auth.on_login] \
                         (without it, only `phone` has a value)"
                    ),
                );
            }
            let Some(name) = self.header_name(&path, header) else {
                continue;
            };
            let folded = fold_header_name(name.as_str());
            if owned.contains(&folded) {
                self.problem(
                    &path,
                    format!("`{header}` is a header wxgate sets or reads itself"),
                );
            } else if let Some((other, _)) = claim_headers
                .iter()
                .find(|(_, h)| fold_header_name(h.as_str()) == folded)
            {
                self.problem(
                    &path,
                    format!("`{header}` is already the header of claim `{other}`"),
                );
            } else {
                claim_headers.push((claim.clone(), name));
            }
        }
        claim_headers
    }
}
