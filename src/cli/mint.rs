//! `wxgate token` (an access token signed with the configured key, for testing upstreams) and
//! `wxgate keygen` (a new secret or key pair), printed to stdout.

use std::path::Path;
use std::process::ExitCode;

use super::{load_or_report, EXIT_CONFIG};
use crate::config::duration;
use crate::tokens::{self, Claims};

pub fn token(
    path: &Path,
    openid: &str,
    unionid: Option<&str>,
    appid: Option<&str>,
    ttl: Option<&str>,
) -> ExitCode {
    let settings = match load_or_report(path) {
        Ok(s) => s,
        Err(code) => return code,
    };
    let usage = |message: String| {
        eprintln!("wxgate token: {message}");
        ExitCode::from(EXIT_CONFIG)
    };
    let ttl = match ttl.map(duration::parse) {
        None => settings.auth.access_ttl,
        Some(Ok(d)) if !d.is_zero() => d,
        Some(Ok(_)) => return usage("--ttl must be greater than zero".into()),
        Some(Err(e)) => return usage(format!("--ttl: {e}")),
    };
    if !tokens::is_safe_id(openid) || !unionid.is_none_or(tokens::is_safe_id) {
        return usage("--openid and --unionid must match ^[A-Za-z0-9_-]{1,64}$".into());
    }
    let Some(app) = settings.wechat.app(appid) else {
        return usage(format!(
            "--appid {} is not a configured app",
            appid.unwrap_or("")
        ));
    };
    let now = tokens::now_unix();
    let claims = Claims {
        iss: settings.auth.issuer.clone(),
        aud: settings.auth.audience.clone(),
        sub: openid.to_string(),
        iat: now,
        nbf: Some(now),
        exp: now + ttl.as_secs() as i64,
        jti: Some(tokens::random_id(16)),
        sid: Some(tokens::random_id(16)),
        appid: Some(app.appid.clone()),
        unionid: unionid.map(str::to_string),
        ext: None,
        phone: None,
    };
    match tokens::mint(&settings.auth.keys, &claims) {
        Ok(token) => {
            println!("{token}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("wxgate token: signing failed: {e}");
            ExitCode::FAILURE
        }
    }
}

pub fn keygen(alg: &str, public: bool) -> ExitCode {
    let parsed = match tokens::parse_alg(alg) {
        Ok(alg) => alg,
        Err(e) => {
            eprintln!("wxgate keygen: {e}");
            return ExitCode::from(EXIT_CONFIG);
        }
    };
    let generated = match tokens::keygen::generate(parsed) {
        Ok(g) => g,
        Err(e) => {
            eprintln!("wxgate keygen: {e}");
            return ExitCode::FAILURE;
        }
    };
    // The one place a key is meant to leave the process: stdout, for a file or a secret store.
    match (&generated.public, public) {
        (Some(public_pem), true) => print!("{}{public_pem}", generated.private.expose()),
        (Some(_), false) => print!("{}", generated.private.expose()),
        (None, show_public) => {
            if show_public {
                eprintln!("wxgate keygen: {alg} secrets have no public key; --public ignored");
            }
            println!("{}", generated.private.expose());
        }
    }
    ExitCode::SUCCESS
}
