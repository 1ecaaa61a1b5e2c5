//! The `wxgate` binary: parses the command line and hands over to the library.
#![forbid(unsafe_code)]

/// jemalloc rather than glibc's allocator: each request makes a few multi-KiB temporary
/// allocations (hyper's header tables, the request's future), which glibc serves through
/// its slow paths and which leave idle connections fragmented. Measured with
/// `bench/run.sh`'s tools: about 0.8 µs less CPU per proxied request and 2.7 KiB less per
/// idle keep-alive connection (24.7 → 21.9).
#[global_allocator]
static GLOBAL: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

use std::process::ExitCode;
use std::sync::Arc;

use clap::Parser;
use tokio::net::TcpListener;
use wxgate::cli::{self, Cli, Command, LogFormat};
use wxgate::{Gateway, Listeners};

fn main() -> ExitCode {
    let code = dispatch();
    // Batched log lines still waiting are written before the process ends.
    wxgate::flush_logs();
    code
}

fn dispatch() -> ExitCode {
    let cli = Cli::parse();
    // One worker thread per CPU this process may run on (affinity respected). On a single
    // CPU the current-thread scheduler does the same work without cross-thread handoffs.
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    let mut builder = if cpus == 1 {
        tokio::runtime::Builder::new_current_thread()
    } else {
        tokio::runtime::Builder::new_multi_thread()
    };
    let runtime = match builder.enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("wxgate: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let json_logs = matches!(cli.log_format, Some(LogFormat::Json));
    match cli.command.unwrap_or(Command::Run) {
        Command::Run => runtime.block_on(run(&cli.config, cli.log_format)),
        Command::Check => cli::check(&cli.config),
        Command::Token {
            openid,
            unionid,
            appid,
            ttl,
        } => cli::token(
            &cli.config,
            &openid,
            unionid.as_deref(),
            appid.as_deref(),
            ttl.as_deref(),
        ),
        Command::Keygen { alg, public } => cli::keygen(&alg, public),
        Command::MockWechat { listen, slow_delay } => {
            cli::init_tracing(json_logs);
            runtime.block_on(wxgate::devtools::demo::mock_wechat(&listen, &slow_delay))
        }
        Command::Demo => {
            cli::init_tracing(json_logs);
            runtime.block_on(wxgate::devtools::demo::run())
        }
    }
}

async fn run(path: &std::path::Path, log_format: Option<LogFormat>) -> ExitCode {
    // jemalloc returns freed pages to the kernel only when an allocation passes by, and
    // an idle gateway allocates nothing: the buffers freed when idle connections are
    // parked would stay resident for ever. A background thread purges them (after
    // jemalloc's 10 s decay): measured, 5.4 -> 3.7 KiB per parked connection.
    if tikv_jemalloc_ctl::background_thread::write(true).is_err() {
        eprintln!(
            "wxgate: jemalloc's background purging is unavailable; freed memory stays resident"
        );
    }
    wxgate::set_heap_probe(heap_stats);
    let settings = match cli::load_or_report(path) {
        Ok(s) => s,
        Err(code) => return code,
    };
    let json = match log_format {
        Some(format) => matches!(format, LogFormat::Json),
        None => settings.log.json,
    };
    cli::init_tracing(json);
    let (public, tls, admin) = match bind(&settings).await {
        Ok(listeners) => listeners,
        Err(e) => {
            tracing::error!("{e}");
            return ExitCode::FAILURE;
        }
    };
    let gateway = match Gateway::new(settings) {
        Ok(g) => g,
        Err(e) => {
            tracing::error!(error = %e, "cannot start the gateway");
            return ExitCode::FAILURE;
        }
    };
    tokio::spawn(reload_on_sighup(Arc::clone(&gateway)));
    // On a worker thread, not the main thread, so that accepting and serving share one
    // scheduler's local queue instead of crossing threads for every new connection.
    let served = tokio::spawn(wxgate::run(
        Listeners {
            public,
            tls,
            admin: Some(admin),
        },
        gateway,
        cli::shutdown_signal(),
    ));
    if served.await.is_err() {
        tracing::error!("the server task ended abnormally");
        return ExitCode::FAILURE;
    }
    tracing::info!("stopped");
    ExitCode::SUCCESS
}

type Bound = (TcpListener, Option<TcpListener>, TcpListener);

async fn bind(settings: &wxgate::settings::Settings) -> Result<Bound, String> {
    let listen = |addr: std::net::SocketAddr, name: &'static str| async move {
        let listener = TcpListener::bind(addr)
            .await
            .map_err(|e| format!("cannot listen on {addr} ({name}): {e}"))?;
        if let Ok(addr) = listener.local_addr() {
            tracing::info!(%addr, listener = name, "listening");
        }
        Ok::<_, String>(listener)
    };
    let public = listen(settings.server.listen, "public").await?;
    let tls = match &settings.server.tls {
        Some(tls) => Some(listen(tls.listen, "https").await?),
        None => None,
    };
    let admin = listen(settings.admin_listen, "admin").await?;
    Ok((public, tls, admin))
}

/// SIGHUP re-reads the config file; an invalid file is reported and the old one kept.
async fn reload_on_sighup(gateway: Arc<Gateway>) {
    use tokio::signal::unix::{signal, SignalKind};
    let Ok(mut hup) = signal(SignalKind::hangup()) else {
        return;
    };
    while hup.recv().await.is_some() {
        match gateway.reload() {
            Ok(()) => tracing::info!("configuration reloaded"),
            Err(e) => tracing::error!("reload failed, keeping the running configuration: {e}"),
        }
    }
}

/// jemalloc's own figures for `/metrics`: refreshed (its epoch advanced) at each scrape.
fn heap_stats() -> Option<wxgate::HeapStats> {
    use tikv_jemalloc_ctl::{epoch, stats};
    epoch::advance().ok()?;
    Some(wxgate::HeapStats {
        allocated: stats::allocated::read().ok()? as u64,
        resident: stats::resident::read().ok()? as u64,
    })
}
