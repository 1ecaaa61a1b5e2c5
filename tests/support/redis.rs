//! A real `redis-server` on an ephemeral loopback port, started and stopped by the test.
//!
//! Without the binary a test is skipped with a message on a developer machine, and fails
//! in CI (`CI` set), where `.ci/run` installs it.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use super::ChildGuard;

pub struct Redis {
    pub port: u16,
    binary: PathBuf,
    child: Option<ChildGuard>,
}

/// `redis-server` from `WXGATE_REDIS_SERVER` or the `PATH`.
fn find_binary() -> Option<PathBuf> {
    if let Some(path) = std::env::var_os("WXGATE_REDIS_SERVER") {
        return Some(PathBuf::from(path));
    }
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join("redis-server"))
        .find(|candidate| candidate.is_file())
}

impl Redis {
    /// Starts a server, or returns `None` (after saying so) when there is no binary and
    /// this is not CI. `test` names the caller in the skip message.
    pub fn start(test: &str) -> Option<Self> {
        let Some(binary) = find_binary() else {
            if std::env::var_os("CI").is_some() {
                panic!("redis-server is not installed; CI must install it (see .ci/run)");
            }
            eprintln!(
                "SKIPPED {test}: redis-server not found (install it or set WXGATE_REDIS_SERVER)"
            );
            return None;
        };
        for _ in 0..5 {
            let port = free_port();
            let mut redis = Self {
                port,
                binary: binary.clone(),
                child: None,
            };
            if redis.spawn() {
                return Some(redis);
            }
        }
        panic!("redis-server did not start on any of 5 ports");
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/0", self.port)
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

    /// Starts the server again on the same port.
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
        let child = Command::new(&self.binary)
            .args(["--bind", "127.0.0.1", "--port"])
            .arg(self.port.to_string())
            .args(["--save", "", "--appendonly", "no", "--protected-mode", "no"])
            .arg("--dir")
            .arg(std::env::temp_dir())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn redis-server");
        let mut guard = ChildGuard(child);
        let deadline = Instant::now() + Duration::from_secs(10);
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

fn free_port() -> u16 {
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
