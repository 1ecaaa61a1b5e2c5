//! `[wechat]`: the API base, the apps and their secrets, the relay and quota protection.

use super::Builder;
use crate::config::file::WechatSection;
use crate::settings::{App, GateSettings, RelaySettings, WechatSettings};
use crate::tokens;

/// WeChat APIs that take the app secret or hand out tokens: the relay never serves them.
const RELAY_NEVER: [&str; 3] = [
    "/cgi-bin/token",
    "/cgi-bin/stable_token",
    "/sns/jscode2session",
];

impl Builder<'_> {
    pub(super) fn wechat(&mut self, w: &WechatSection) -> Option<WechatSettings> {
        let api_base = match url::Url::parse(&w.api_base) {
            Ok(u)
                if matches!(u.scheme(), "http" | "https")
                    && u.host().is_some()
                    && u.query().is_none() =>
            {
                Some(w.api_base.trim_end_matches('/').to_string())
            }
            _ => {
                self.problem(
                    "wechat.api_base",
                    format!("`{}` is not an http(s) URL", w.api_base),
                );
                None
            }
        };
        let timeout = self.duration("wechat.timeout", &w.timeout);
        if w.apps.is_empty() {
            self.problem(
                "wechat.apps",
                "at least one [[wechat.apps]] entry is required",
            );
        }
        let mut apps = Vec::new();
        for (i, app) in w.apps.iter().enumerate() {
            let path = format!("wechat.apps[{i}]");
            if !tokens::is_safe_id(&app.appid) {
                self.problem(
                    &format!("{path}.appid"),
                    format!("`{}` is not a valid appid", app.appid),
                );
            }
            if w.apps[..i].iter().any(|a| a.appid == app.appid) {
                self.problem(
                    &format!("{path}.appid"),
                    format!("`{}` is configured twice", app.appid),
                );
            }
            if let Some(secret) = self.secret(
                &format!("{path}.secret"),
                app.secret.as_deref(),
                app.secret_file.as_deref(),
            ) {
                if secret.expose().is_empty() {
                    self.problem(&format!("{path}.secret"), "is empty");
                }
                apps.push(App {
                    appid: app.appid.clone(),
                    secret,
                });
            }
        }
        let max_concurrent_calls =
            self.positive("wechat.max_concurrent_calls", w.max_concurrent_calls as u64);
        let circuit_failures =
            self.positive("wechat.circuit_failures", u64::from(w.circuit_failures));
        let circuit_open_for = self.duration("wechat.circuit_open_for", &w.circuit_open_for);
        for (i, allowed) in w.relay.allow.iter().enumerate() {
            let path = format!("wechat.relay.allow[{i}]");
            if !allowed.starts_with('/')
                || allowed.contains('?')
                || crate::proxy::path::canonicalize(allowed).is_err()
            {
                self.problem(&path, format!("`{allowed}` is not a clean absolute path"));
            } else if RELAY_NEVER
                .iter()
                .any(|p| allowed.trim_end_matches('/') == *p)
            {
                self.problem(
                    &path,
                    format!("`{allowed}` deals in secrets or tokens and is never relayed"),
                );
            }
        }
        Some(WechatSettings {
            api_base: api_base?,
            timeout: timeout?,
            apps,
            relay: RelaySettings {
                enabled: w.relay.enabled,
                allow: w.relay.allow.clone(),
            },
            check_session_key: w.check_session_key,
            gate: GateSettings {
                max_concurrent_calls: usize::try_from(max_concurrent_calls?).ok()?,
                circuit_failures: u32::try_from(circuit_failures?).ok()?,
                circuit_open_for: circuit_open_for?,
            },
        })
    }
}
