//! `[auth]`: token lifetimes, where tokens come from, the identity headers, the endpoint
//! prefix and the login rate limit; its keys and hook are in `keys` and `hook`.

use std::time::Duration;

use http::HeaderName;

use super::{fold_header_name, hook, Builder};
use crate::config::duration;
use crate::config::file::AuthSection;
use crate::settings::{AuthSettings, IdentityHeaders, RateLimit};

/// Headers wxgate injects in the Cloud Run style; always stripped from clients.
const CLOUDRUN_HEADERS: [&str; 4] = ["X-WX-OPENID", "X-WX-APPID", "X-WX-UNIONID", "X-WX-SOURCE"];

impl Builder<'_> {
    pub(super) fn auth(&mut self, a: &AuthSection) -> Option<AuthSettings> {
        for (path, value) in [("auth.issuer", &a.issuer), ("auth.audience", &a.audience)] {
            if value.is_empty() {
                self.problem(path, "must not be empty");
            }
        }
        let access_ttl = self.duration("auth.access_ttl", &a.access_ttl);
        let refresh_ttl = self.duration("auth.refresh_ttl", &a.refresh_ttl);
        let leeway = match duration::parse(&a.leeway) {
            Ok(d) if d <= Duration::from_secs(300) => Some(d),
            Ok(_) => {
                self.problem("auth.leeway", "must be at most 5m");
                None
            }
            Err(e) => {
                self.problem("auth.leeway", e);
                None
            }
        };
        if a.token_headers.is_empty() {
            self.problem("auth.token_headers", "must name at least one header");
        }
        let token_headers: Vec<HeaderName> = a
            .token_headers
            .iter()
            .enumerate()
            .filter_map(|(i, h)| self.header_name(&format!("auth.token_headers[{i}]"), h))
            .collect();
        let identity = self.identity(a, &token_headers);
        let endpoint_prefix = self.endpoint_prefix(&a.endpoint_prefix);
        let rate = &a.login_rate_limit;
        let per_minute = self.positive(
            "auth.login_rate_limit.per_minute",
            u64::from(rate.per_minute),
        );
        let burst = self.positive("auth.login_rate_limit.burst", u64::from(rate.burst));
        let ipv4_prefix =
            self.prefix_len("auth.login_rate_limit.ipv4_prefix", rate.ipv4_prefix, 32);
        let ipv6_prefix =
            self.prefix_len("auth.login_rate_limit.ipv6_prefix", rate.ipv6_prefix, 128);
        let keys = self.keys(a);
        let on_login = a.on_login.as_ref().map(|hook| self.on_login(hook));
        let claim_headers = self.claim_headers(a, identity.as_ref(), &token_headers);
        let identity = identity.map(|mut identity| {
            identity.strip.extend(
                claim_headers
                    .iter()
                    .map(|(_, h)| fold_header_name(h.as_str())),
            );
            identity.strip.sort();
            identity.strip.dedup();
            identity
        });
        Some(AuthSettings {
            issuer: a.issuer.clone(),
            audience: a.audience.clone(),
            access_ttl: access_ttl?,
            refresh_ttl: refresh_ttl?,
            leeway: leeway?,
            token_headers,
            identity: identity?,
            forward_token: a.forward_token,
            endpoint_prefix: endpoint_prefix?,
            login_rate_limit: RateLimit {
                per_minute: u32::try_from(per_minute?).ok()?,
                burst: u32::try_from(burst?).ok()?,
                ipv4_prefix: ipv4_prefix?,
                ipv6_prefix: ipv6_prefix?,
            },
            keys: keys?,
            on_login: match on_login {
                None => None,
                Some(hook) => Some(hook?),
            },
            claim_headers,
        })
    }

    fn identity(
        &mut self,
        a: &AuthSection,
        token_headers: &[HeaderName],
    ) -> Option<IdentityHeaders> {
        let cloudrun = match a.header_style.as_str() {
            "default" => false,
            "cloudrun" => true,
            other => {
                self.problem(
                    "auth.header_style",
                    format!("`{other}` is not \"default\" or \"cloudrun\""),
                );
                return None;
            }
        };
        let openid = self.header_name("auth.identity_header", &a.identity_header);
        let unionid = self.header_name("auth.unionid_header", &a.unionid_header);
        let appid = self.header_name("auth.appid_header", &a.appid_header);
        let (openid, unionid, appid) = (openid?, unionid?, appid?);
        self.distinct_identity_headers(
            [
                ("auth.identity_header", &openid),
                ("auth.unionid_header", &unionid),
                ("auth.appid_header", &appid),
            ],
            token_headers,
        );
        let mut strip: Vec<String> = [openid.as_str(), unionid.as_str(), appid.as_str()]
            .into_iter()
            .chain(CLOUDRUN_HEADERS)
            .map(fold_header_name)
            .collect();
        strip.sort();
        strip.dedup();
        let cloud = |i: usize| HeaderName::from_static(cloudrun_lower(i));
        Some(if cloudrun {
            IdentityHeaders {
                openid: cloud(0),
                appid: cloud(1),
                unionid: cloud(2),
                source: Some(cloud(3)),
                strip,
            }
        } else {
            IdentityHeaders {
                openid,
                unionid,
                appid,
                source: None,
                strip,
            }
        })
    }

    /// Each identity header is its own (two would make one identity value overwrite
    /// another) and none is a header wxgate reads, frames with or writes: as
    /// `Content-Length` or `Transfer-Encoding` it would reframe the request upstream, as a
    /// token header it would be stripped and injected at once.
    fn distinct_identity_headers(
        &mut self,
        named: [(&str, &HeaderName); 3],
        token_headers: &[HeaderName],
    ) {
        let owned: Vec<String> = hook::owned_headers(token_headers).collect();
        for (i, (path, name)) in named.iter().enumerate() {
            let folded = fold_header_name(name.as_str());
            if owned.contains(&folded) {
                self.problem(
                    path,
                    format!("`{name}` is a header wxgate sets, reads or frames the request with"),
                );
            } else if let Some((other, _)) = named[..i]
                .iter()
                .find(|(_, n)| fold_header_name(n.as_str()) == folded)
            {
                self.problem(path, format!("`{name}` is already `{other}`"));
            }
        }
    }

    fn endpoint_prefix(&mut self, prefix: &str) -> Option<String> {
        let trimmed = prefix.trim_end_matches('/');
        let canonical = crate::proxy::path::canonicalize(prefix).is_ok_and(|c| c == prefix);
        if !prefix.starts_with('/') || trimmed.is_empty() || !canonical {
            self.problem(
                "auth.endpoint_prefix",
                format!("`{prefix}` must be a clean path like \"/auth\""),
            );
            return None;
        }
        Some(trimmed.to_string())
    }
}

fn cloudrun_lower(i: usize) -> &'static str {
    ["x-wx-openid", "x-wx-appid", "x-wx-unionid", "x-wx-source"][i]
}
