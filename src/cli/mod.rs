//! The command line: `run` (the default), `check`, `token`, `keygen`, `mock-wechat`, `demo`.
//! The parser and what `run` and the dev tools share are here; `check` prints the
//! configuration, `mint` has `token` and `keygen`.

mod check;
mod mint;

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand, ValueEnum};

use crate::config::{self, duration};
use crate::settings::Settings;

pub use check::{check, describe};
pub use mint::{keygen, token};

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
