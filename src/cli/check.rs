//! `wxgate check`: load the configuration and print what it means, secrets redacted.

use std::path::Path;
use std::process::ExitCode;

use super::load_or_report;
use crate::config::duration;
use crate::settings::{Settings, StoreSettings};
use crate::tokens;

pub fn check(path: &Path) -> ExitCode {
    let settings = match load_or_report(path) {
        Ok(s) => s,
        Err(code) => return code,
    };
    println!("{}: configuration is valid", path.display());
    print!("{}", describe(&settings));
    ExitCode::SUCCESS
}

/// A URL with its password masked (all of it masked when it does not parse).
fn redacted_url(text: &str) -> String {
    match url::Url::parse(text) {
        Ok(mut url) => {
            if url.password().is_some() {
                let _ = url.set_password(Some("***"));
            }
            url.to_string()
        }
        Err(_) => "***".into(),
    }
}

/// Where the Redis is, with TLS and the ACL user; passwords are never shown.
fn redis_target(r: &crate::settings::RedisSettings) -> String {
    use crate::settings::RedisTarget;
    let list = |nodes: &[(String, u16)]| {
        let text: Vec<String> = nodes
            .iter()
            .map(|(h, p)| match h.contains(':') {
                true => format!("[{h}]:{p}"),
                false => format!("{h}:{p}"),
            })
            .collect();
        text.join(",")
    };
    let mut text = match &r.target {
        RedisTarget::Url(url) => format!("url={}", redacted_url(url.expose())),
        RedisTarget::Sentinel {
            sentinels,
            master_name,
            db,
            ..
        } => format!(
            "sentinels={} master_name={master_name} db={db}",
            list(sentinels)
        ),
        RedisTarget::Cluster { nodes } => format!("cluster={}", list(nodes)),
    };
    if let Some(user) = &r.auth.username {
        text.push_str(&format!(" username={user}"));
    }
    if r.auth.password.is_some() {
        text.push_str(" password=***");
    }
    if let Some(tls) = &r.tls {
        let roots = if tls.ca.is_some() {
            "ca_file"
        } else {
            "system roots"
        };
        let client = if tls.client.is_some() {
            ", client certificate"
        } else {
            ""
        };
        text.push_str(&format!(" tls=({roots}{client})"));
    }
    text
}

/// A URL whose query (which may hold a shared secret) is shown as `?***`.
fn without_query(text: &str) -> String {
    match text.split_once('?') {
        Some((base, _)) => format!("{base}?***"),
        None => text.to_string(),
    }
}

/// The effective configuration, secrets redacted.
pub fn describe(s: &Settings) -> String {
    use std::fmt::Write;
    let mut out = String::new();
    let _ = writeln!(out, "listen        {}", s.server.listen);
    if let Some(tls) = &s.server.tls {
        let _ = writeln!(
            out,
            "https         {} cert={} key=(not shown) alpn=h2,http/1.1",
            tls.listen,
            tls.cert_file.display()
        );
    }
    let guarded = match s.admin_token {
        Some(_) => " (session and user endpoints need the token_file bearer token)",
        None => "",
    };
    let _ = writeln!(out, "admin         {}{guarded}", s.admin_listen);
    let _ = writeln!(
        out,
        "wechat        {} (timeout {})",
        s.wechat.api_base,
        duration::display(s.wechat.timeout)
    );
    for app in &s.wechat.apps {
        let _ = writeln!(out, "  app         {} secret={}", app.appid, app.secret);
    }
    let a = &s.auth;
    let _ = writeln!(
        out,
        "tokens        iss={} aud={} access={} refresh={} leeway={}",
        a.issuer,
        a.audience,
        duration::display(a.access_ttl),
        duration::display(a.refresh_ttl),
        duration::display(a.leeway)
    );
    for (i, key) in a.keys.iter().enumerate() {
        let _ = writeln!(out, "  key         {}", describe_key(i, key));
    }
    let _ = writeln!(
        out,
        "endpoints     {}/{{login,refresh,logout,session}}",
        a.endpoint_prefix
    );
    if let Some(hook) = &a.on_login {
        let _ = writeln!(
            out,
            "login hook    POST {} (timeout {})",
            without_query(&hook.url),
            duration::display(hook.timeout)
        );
    }
    for (claim, header) in &a.claim_headers {
        let _ = writeln!(out, "  claim       {claim} -> {header}");
    }
    let _ = match &s.store {
        StoreSettings::Memory => writeln!(out, "store         memory (this instance only)"),
        StoreSettings::Redis(r) => writeln!(
            out,
            "store         redis {} key_prefix={} pool_size={} timeout={} connect_timeout={}",
            redis_target(r),
            r.key_prefix,
            r.pool_size,
            duration::display(r.timeout),
            duration::display(r.connect_timeout)
        ),
    };
    let _ = writeln!(out, "routes");
    for r in s.routes.iter() {
        let targets: Vec<String> = r.upstreams.iter().map(ToString::to_string).collect();
        let mut line = format!(
            "  {:<12}-> {} auth={}",
            r.prefix,
            targets.join(", "),
            r.auth.as_str()
        );
        if r.strip_prefix {
            line.push_str(" strip_prefix");
        }
        if let Some(host) = &r.host {
            let _ = write!(line, " host={host}");
        }
        if let Some(methods) = &r.methods {
            let names: Vec<&str> = methods.iter().map(|m| m.as_str()).collect();
            let _ = write!(line, " methods={}", names.join(","));
        }
        if let Some(apps) = &r.apps {
            let _ = write!(line, " apps={}", apps.join(","));
        }
        let _ = writeln!(out, "{line}");
    }
    out
}

/// One key for `check`: what it is and what it does, never its material.
fn describe_key(index: usize, key: &tokens::Key) -> String {
    let role = match (index, key.is_published()) {
        (0, false) => "signs and verifies",
        (0, true) => "signs and verifies, in JWKS",
        (_, false) => "verifies only",
        (_, true) => "verifies only, in JWKS",
    };
    let material = match key.kind {
        tokens::KeyKind::Secret => "secret=***".to_string(),
        kind if key.can_sign() => format!("{kind} private key"),
        kind => format!("{kind} public key"),
    };
    format!(
        "kid={} alg={} {material} ({role})",
        key.kid,
        tokens::alg_name(key.alg)
    )
}
