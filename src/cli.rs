//! The command line: `run` (the default), `check`, `token`, `keygen`, `mock-wechat`, `demo`.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand, ValueEnum};

use crate::config::{self, duration};
use crate::settings::{Settings, StoreSettings};
use crate::tokens::{self, Claims};

/// Exit status for an invalid configuration (and other usage errors).
pub const EXIT_CONFIG: u8 = 2;

#[derive(Debug, Parser)]
#[command(
    name = "wxgate",
    version,
    about = "Authentication gateway for WeChat mini-programs"
)]
pub struct Cli {
    /// Configuration file.
    #[arg(
        short,
        long,
        global = true,
        env = "WXGATE_CONFIG",
        default_value = "gateway.toml"
    )]
    pub config: PathBuf,
    /// Log format on stderr (overrides `[log] format`).
    #[arg(long, global = true, value_enum)]
    pub log_format: Option<LogFormat>,
    #[command(subcommand)]
    pub command: Option<Command>,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the gateway (the default command).
    Run,
    /// Validate a configuration and print the effective routes and keys, secrets redacted.
    Check,
    /// Mint an access token with the configured signing key, for testing upstreams.
    Token {
        #[arg(long)]
        openid: String,
        #[arg(long)]
        unionid: Option<String>,
        #[arg(long)]
        appid: Option<String>,
        /// Lifetime, e.g. `10m` (default: `[auth] access_ttl`).
        #[arg(long)]
        ttl: Option<String>,
    },
    /// Print a new HMAC secret, or a PKCS#8 PEM private key (RS256, ES256, EdDSA).
    Keygen {
        /// HS256, HS384, HS512, RS256, ES256 or EdDSA.
        #[arg(long, default_value = "HS256")]
        alg: String,
        /// Also print the public key PEM (RS256, ES256, EdDSA), after the private key.
        #[arg(long)]
        public: bool,
    },
    /// Run a fake WeChat API for local development and tests.
    MockWechat {
        #[arg(long, default_value = "127.0.0.1:9100")]
        listen: String,
        /// How long `slow` codes wait before answering.
        #[arg(long, default_value = "10s")]
        slow_delay: String,
    },
    /// Start mock-wechat, an echo upstream and the gateway on loopback, with a walkthrough.
    Demo,
}

/// Sets up `tracing` on stderr; `RUST_LOG` filters (default `info`).
pub fn init_tracing(json: bool) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    use std::io::IsTerminal;
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        // Colour only for people: log files and collectors get plain text.
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(crate::ops::logwriter::BatchedStderr);
    let installed = if json {
        builder.json().flatten_event(true).try_init()
    } else {
        builder.try_init()
    };
    if installed.is_ok() {
        crate::ops::logwriter::install(if json {
            crate::ops::logwriter::Format::Json
        } else {
            crate::ops::logwriter::Format::Text
        });
    }
}

/// Loads the config or prints why not (to stderr) and gives the exit code.
pub fn load_or_report(path: &Path) -> Result<Settings, ExitCode> {
    config::load(path).map_err(|e| {
        eprintln!("wxgate: {}: {e}", path.display());
        ExitCode::from(EXIT_CONFIG)
    })
}

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

/// Resolves on SIGTERM or SIGINT.
pub async fn shutdown_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    let (Ok(mut term), Ok(mut int)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) else {
        tracing::error!("cannot install signal handlers; stop with SIGKILL");
        return std::future::pending().await;
    };
    tokio::select! {
        _ = term.recv() => tracing::info!("SIGTERM received"),
        _ = int.recv() => tracing::info!("SIGINT received"),
    }
}

/// Parses a duration flag for the dev tools.
pub fn flag_duration(name: &str, text: &str) -> Result<Duration, ExitCode> {
    duration::parse(text).map_err(|e| {
        eprintln!("wxgate: --{name}: {e}");
        ExitCode::from(EXIT_CONFIG)
    })
}
