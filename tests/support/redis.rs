//! Real `redis-server` processes on ephemeral loopback ports, started and stopped by the
//! test: a plain server, and the building block the TLS server, Sentinel and Cluster
//! setups in [`super::redis_topology`] are made of.
//!
//! Without the binary a test is skipped with a message on a developer machine, and fails
//! in CI (`CI` set), where `.ci/run` installs it.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use super::ChildGuard;

/// How long a server may take to answer its first PING on a loaded machine.
const START_WAIT: Duration = Duration::from_secs(20);

pub struct Redis {
    pub port: u16,
    /// A second free port, for a TLS listener or a cluster bus.
    pub extra_port: u16,
    binary: PathBuf,
    /// Everything after the binary; `{port}` and `{extra_port}` are replaced by the ports.
    args: Vec<String>,
    child: Option<ChildGuard>,
}

/// A program from `env` or the `PATH`.
fn find(program: &str, env: &str) -> Option<PathBuf> {
    if let Some(path) = std::env::var_os(env) {
        return Some(PathBuf::from(path));
    }
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(program))
        .find(|candidate| candidate.is_file())
}

/// `redis-server` (from `WXGATE_REDIS_SERVER` or the `PATH`), or `None` after saying so when
/// it is missing outside CI. `test` names the caller in the skip message.
pub fn server_binary(test: &str) -> Option<PathBuf> {
    let found = find("redis-server", "WXGATE_REDIS_SERVER");
    if found.is_none() {
        if std::env::var_os("CI").is_some() {
            panic!("redis-server is not installed; CI must install it (see .ci/run)");
        }
        eprintln!("SKIPPED {test}: redis-server not found (install it or set WXGATE_REDIS_SERVER)");
    }
    found
}

/// `redis-cli` (from `WXGATE_REDIS_CLI` or the `PATH`), for `--cluster create`.
pub fn cli_binary(test: &str) -> Option<PathBuf> {
    let found = find("redis-cli", "WXGATE_REDIS_CLI");
    if found.is_none() {
        if std::env::var_os("CI").is_some() {
            panic!("redis-cli is not installed; CI must install it (see .ci/run)");
        }
        eprintln!(
            "SKIPPED {test}: redis-cli not found (install redis-tools or set WXGATE_REDIS_CLI)"
        );
    }
    found
}

/// The arguments every test server gets: loopback only, no persistence, data files (and
/// a cluster's `nodes.conf`) in `dir`.
pub fn base_args(dir: &Path) -> Vec<String> {
    let mut args: Vec<String> = [
        "--bind",
        "127.0.0.1",
        "--port",
        "{port}",
        "--save",
        "",
        "--appendonly",
        "no",
        "--protected-mode",
        "no",
        "--dir",
    ]
    .map(String::from)
    .to_vec();
    args.push(dir.display().to_string());
    args
}

impl Redis {
    /// A plain server, or `None` (after saying so) when there is no binary and this is not CI.
    pub fn start(test: &str) -> Option<Self> {
        let binary = server_binary(test)?;
        Some(Self::launch(&binary, base_args(&std::env::temp_dir())))
    }

    /// Starts `binary` with `args` on a free port (five tries), waiting until it answers PING.
    pub fn launch(binary: &Path, args: Vec<String>) -> Self {
        for _ in 0..5 {
            let mut redis = Self {
                port: free_port(),
                extra_port: free_port(),
                binary: binary.to_path_buf(),
                args: args.clone(),
                child: None,
            };
            if redis.spawn() {
                return redis;
            }
        }
        panic!("redis-server did not start on any of 5 ports: {args:?}");
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/0", self.port)
    }

    pub fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// Kills the server (no persistence: its data is gone).
    pub fn kill(&mut self) {
        self.child = None;
        let deadline = Instant::now() + Duration::from_secs(10);
        while ping(self.port) {
            assert!(Instant::now() < deadline, "redis-server did not stop");
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Starts the server again on the same port, with the same arguments.
    pub fn restart(&mut self) {
        self.kill();
        assert!(
            self.spawn(),
            "redis-server did not restart on port {}",
            self.port
        );
    }

    /// Spawns the server and waits until it answers PING; false if it exits first.
    fn spawn(&mut self) -> bool {
        let (port, extra) = (self.port.to_string(), self.extra_port.to_string());
        let args: Vec<String> = self
            .args
            .iter()
            .map(|a| a.replace("{port}", &port).replace("{extra_port}", &extra))
            .collect();
        let child = Command::new(&self.binary)
            .args(&args)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn redis-server");
        let mut guard = ChildGuard(child);
        let deadline = Instant::now() + START_WAIT;
        while Instant::now() < deadline {
            if ping(self.port) {
                self.child = Some(guard);
                return true;
            }
            if matches!(guard.0.try_wait(), Ok(Some(_))) {
                return false;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        false
    }
}

/// A port nothing listens on right now (bound, then released).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port")
}

/// Whether a Redis answers `PING` on the port.
pub fn ping(port: u16) -> bool {
    let Ok(mut stream) = TcpStream::connect(("127.0.0.1", port)) else {
        return false;
    };
    let _ = stream.set_read_timeout(Some(Duration::from_secs(1)));
    if stream.write_all(b"PING\r\n").is_err() {
        return false;
    }
    let mut buf = [0u8; 7];
    stream.read_exact(&mut buf).is_ok() && &buf == b"+PONG\r\n"
}
