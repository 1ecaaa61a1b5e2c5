//! The real `wxgate` binary as a child process: spawned with its arguments and environment,
//! one of its outputs read line by line on a thread of its own, lines awaited with a deadline
//! (never a sleep), the addresses of its `listening` lines, its memory, and a kill when the
//! handle drops.
//! Also a config file in a folder of its own, for `wxgate run -c`.

use std::io::{BufRead, BufReader, Read};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::time::{Duration, Instant};

use super::ChildGuard;

pub const BIN: &str = env!("CARGO_BIN_EXE_wxgate");

/// How long a line is awaited unless a test says otherwise.
const WAIT: Duration = Duration::from_secs(10);

/// The output of the child that is read; the other one is discarded.
#[derive(Clone, Copy)]
pub enum Output {
    /// The log.
    Stderr,
    /// What the demo prints for people.
    Stdout,
}

/// A running `wxgate`, killed when dropped so that a failing test leaks nothing.
pub struct Binary {
    child: ChildGuard,
    lines: Receiver<String>,
    /// Every line read so far, in order.
    seen: Vec<String>,
}

/// A child's memory, from `/proc/PID/status`.
#[derive(Debug, Clone, Copy)]
pub struct Memory {
    pub rss_kib: u64,
    pub peak_kib: u64,
}

/// Where a `wxgate run` listens, from its `listening` lines.
#[derive(Debug)]
pub struct Listening {
    pub public: SocketAddr,
    pub https: Option<SocketAddr>,
    pub admin: SocketAddr,
}

impl Binary {
    /// `wxgate <args>` with `env` added to the environment.
    pub fn spawn(args: &[&str], env: &[(&str, &str)], read: Output) -> Self {
        let mut command = Command::new(BIN);
        command.args(args).envs(env.iter().copied());
        match read {
            Output::Stderr => command.stderr(Stdio::piped()).stdout(Stdio::null()),
            Output::Stdout => command.stdout(Stdio::piped()).stderr(Stdio::null()),
        };
        let mut child = ChildGuard(command.spawn().expect("spawn wxgate"));
        let output: Box<dyn Read + Send> = match read {
            Output::Stderr => Box::new(child.0.stderr.take().expect("stderr")),
            Output::Stdout => Box::new(child.0.stdout.take().expect("stdout")),
        };
        let (tx, lines) = mpsc::channel();
        // Reads to the end, so the child never writes into a closed pipe while it runs.
        std::thread::spawn(move || {
            for line in BufReader::new(output).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    return;
                }
            }
        });
        Self {
            child,
            lines,
            seen: Vec::new(),
        }
    }

    /// `wxgate run -c <config>` with `env` added, reading its log.
    pub fn run(config: &Path, env: &[(&str, &str)]) -> Self {
        let config = config.to_str().expect("utf8");
        Self::spawn(&["run", "-c", config], env, Output::Stderr)
    }

    /// The value `pick` finds in the next line it finds one in, within `limit`. Panics with
    /// every line read so far when the child closes its output or the time passes first.
    pub fn find<T>(
        &mut self,
        what: &str,
        limit: Duration,
        mut pick: impl FnMut(&str) -> Option<T>,
    ) -> T {
        let deadline = Instant::now() + limit;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let line = match self.lines.recv_timeout(left) {
                Ok(line) => line,
                Err(RecvTimeoutError::Timeout) => {
                    panic!("no {what} within {limit:?}:\n{}", self.seen.join("\n"))
                }
                Err(RecvTimeoutError::Disconnected) => {
                    panic!("wxgate ended before {what}:\n{}", self.seen.join("\n"))
                }
            };
            let found = pick(&line);
            self.seen.push(line);
            if let Some(value) = found {
                return value;
            }
        }
    }

    /// The next line containing `needle` (10 s at most).
    pub fn line_with(&mut self, needle: &str) -> String {
        let what = format!("line with `{needle}`");
        self.find(&what, WAIT, |line| {
            line.contains(needle).then(|| line.into())
        })
    }

    /// Waits for the `listening` lines up to the admin listener's, which is bound last.
    pub fn listening(&mut self) -> Listening {
        let (mut public, mut https) = (None, None);
        loop {
            let (name, addr): (String, SocketAddr) = self.find("`listening` line", WAIT, |line| {
                let field = |key: &str| {
                    let word = line.split_whitespace().find(|w| w.starts_with(key))?;
                    Some(word[key.len()..].trim_matches('"').to_string())
                };
                line.contains("listening").then_some(())?;
                let name = field("listener=")?;
                let addr = field("addr=").and_then(|a| a.parse().ok());
                Some((name, addr.unwrap_or_else(|| panic!("no address in {line}"))))
            });
            match name.as_str() {
                "public" => public = Some(addr),
                "https" => https = Some(addr),
                "admin" => {
                    return Listening {
                        public: public.expect("the public listener comes first"),
                        https,
                        admin: addr,
                    }
                }
                other => panic!("an unknown listener {other}"),
            }
        }
    }

    /// The child's resident memory now and at its peak so far (`VmRSS`, `VmHWM` in
    /// `/proc/PID/status`).
    pub fn memory(&self) -> Memory {
        let path = format!("/proc/{}/status", self.child.0.id());
        let status = std::fs::read_to_string(&path).expect("read /proc/PID/status");
        let kib = |key: &str| -> u64 {
            let line = status.lines().find(|l| l.starts_with(key));
            let value = line.and_then(|l| l[key.len()..].trim().strip_suffix(" kB"));
            value
                .and_then(|v| v.trim().parse().ok())
                .unwrap_or_else(|| panic!("no {key} in {path}"))
        };
        Memory {
            rss_kib: kib("VmRSS:"),
            peak_kib: kib("VmHWM:"),
        }
    }

    /// Sends `signal` (`TERM`, `HUP`...) with `kill`.
    pub fn signal(&self, signal: &str) {
        let status = Command::new("kill")
            .args([format!("-{signal}"), self.child.0.id().to_string()])
            .status()
            .expect("kill");
        assert!(status.success(), "kill -{signal}");
    }

    /// SIGTERM, then how the child exited and every line it wrote on the output read.
    pub async fn stop(mut self) -> (ExitStatus, String) {
        self.signal("TERM");
        let mut child = self.child;
        let status = tokio::task::spawn_blocking(move || child.0.wait())
            .await
            .expect("join")
            .expect("wait");
        // The reader ends at the end of the output, after the last line.
        let deadline = Instant::now() + WAIT;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) => self.seen.push(line),
                Err(RecvTimeoutError::Disconnected) => break,
                Err(RecvTimeoutError::Timeout) => panic!("the output stayed open after exit"),
            }
        }
        (status, self.seen.join("\n") + "\n")
    }
}

/// A config file in a folder of its own, removed with the folder when dropped.
pub struct ConfigFile(PathBuf);

impl ConfigFile {
    pub fn new(text: &str) -> Self {
        let dir = std::env::temp_dir().join(format!(
            "wxgate-test-{}-{}",
            std::process::id(),
            super::unique()
        ));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let path = dir.join("gateway.toml");
        std::fs::write(&path, text).expect("write config");
        Self(path)
    }
}

impl std::ops::Deref for ConfigFile {
    type Target = Path;
    fn deref(&self) -> &Path {
        &self.0
    }
}

impl AsRef<Path> for ConfigFile {
    fn as_ref(&self) -> &Path {
        &self.0
    }
}

impl Drop for ConfigFile {
    fn drop(&mut self) {
        if let Some(dir) = self.0.parent() {
            let _ = std::fs::remove_dir_all(dir);
        }
    }
}
