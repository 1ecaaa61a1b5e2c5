//! The processes under test: one `redis-server` with an append-only file, and the wxgate
//! release binary, each a child of the soak, stopped when its handle drops.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

/// How long a child gets to come up (or to answer a readiness check) before the soak fails.
const START_LIMIT: Duration = Duration::from_secs(30);

/// A `redis-server` on a free loopback port, its log in `dir` and its AOF in `data`.
pub struct Redis {
    pub port: u16,
    dir: PathBuf,
    data: PathBuf,
    child: Option<Child>,
}

impl Redis {
    pub fn start(dir: &Path) -> Result<Self> {
        // The AOF goes to tmpfs where there is one: a SIGKILL of Redis loses nothing it
        // wrote there, and an fsync costs nothing, so a disk busy with other work cannot
        // stall a write past the store's timeout (a 503 no fault was injected for).
        let shm = Path::new("/dev/shm");
        let data = if shm.is_dir() {
            shm.join(format!("wxgate-soak-redis-{}", std::process::id()))
        } else {
            dir.join("redis-data")
        };
        std::fs::create_dir_all(&data).context("redis data dir")?;
        let mut redis = Self {
            port: free_port()?,
            dir: dir.to_owned(),
            data,
            child: None,
        };
        redis.spawn()?;
        Ok(redis)
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/0", self.port)
    }

    /// Starts the server on its port and waits until it answers PING (after loading the AOF).
    pub fn spawn(&mut self) -> Result<()> {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.join("redis.log"))?;
        let data = self.data.to_str().context("temp dir is not UTF-8")?;
        // Every acknowledged write is in the AOF before the reply, so a SIGKILL loses nothing
        // a client was told had been stored: the soak can then demand that no session is lost.
        let child = Command::new("redis-server")
            .args(["--port", &self.port.to_string(), "--bind", "127.0.0.1"])
            .args(["--dir", data, "--save", ""])
            .args(["--appendonly", "yes", "--appendfsync", "always"])
            .stdout(log)
            .stderr(Stdio::null())
            .spawn()
            .context("spawn redis-server")?;
        self.child = Some(child);
        let deadline = Instant::now() + START_LIMIT;
        while !ping(self.port) {
            if Instant::now() > deadline {
                bail!("redis-server did not answer PING on port {}", self.port);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Ok(())
    }

    /// SIGKILL: no shutdown save, no goodbye to the clients.
    pub fn kill(&mut self) -> Result<()> {
        if let Some(mut child) = self.child.take() {
            child.kill()?;
            child.wait()?;
        }
        Ok(())
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        let _ = self.kill();
        let _ = std::fs::remove_dir_all(&self.data);
    }
}

fn ping(port: u16) -> bool {
    let Ok(mut stream) = TcpStream::connect(("127.0.0.1", port)) else {
        return false;
    };
    let _ = stream.set_read_timeout(Some(Duration::from_secs(1)));
    let mut answer = [0u8; 7];
    stream.write_all(b"PING\r\n").is_ok()
        && stream.read_exact(&mut answer).is_ok()
        && &answer == b"+PONG\r\n"
}

pub fn free_port() -> Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

/// One `wxgate run -c <config>`, its log copied to a file.
pub struct Gateway {
    pub name: &'static str,
    pub public: SocketAddr,
    pub admin: SocketAddr,
    child: Child,
    reloads: Arc<AtomicU64>,
}

impl Gateway {
    pub fn spawn(name: &'static str, bin: &Path, config: &Path, log: &Path) -> Result<Self> {
        let mut child = Command::new(bin)
            .args(["run", "-c"])
            .arg(config)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .with_context(|| format!("spawn {}", bin.display()))?;
        let stderr = child.stderr.take().context("no stderr")?;
        let mut file = std::fs::File::create(log)?;
        let reloads = Arc::new(AtomicU64::new(0));
        let counter = reloads.clone();
        let (tx, listening) = mpsc::channel();
        // Reads to the end, so that the child never blocks on a full pipe.
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                let _ = writeln!(file, "{line}");
                if line.contains("configuration reloaded") {
                    counter.fetch_add(1, Ordering::SeqCst);
                }
                if line.contains("listening") {
                    let _ = tx.send(line);
                }
            }
        });
        let (public, admin) = listening_addrs(&listening)
            .with_context(|| format!("{name}: no listening lines (see {})", log.display()))?;
        Ok(Self {
            name,
            public,
            admin,
            child,
            reloads,
        })
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn reloads(&self) -> u64 {
        self.reloads.load(Ordering::SeqCst)
    }

    /// SIGHUP, then waits for the `configuration reloaded` line it causes.
    pub async fn reload(&self) -> Result<()> {
        let before = self.reloads();
        signal("HUP", self.pid())?;
        let deadline = Instant::now() + START_LIMIT;
        while self.reloads() == before {
            if Instant::now() > deadline {
                bail!("{}: no `configuration reloaded` after SIGHUP", self.name);
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        Ok(())
    }

    /// VmRSS in KiB and the number of open file descriptors, from /proc.
    pub fn usage(&self) -> Option<(u64, u64)> {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid())).ok()?;
        let rss = status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))?
            .trim()
            .trim_end_matches("kB")
            .trim()
            .parse()
            .ok()?;
        let fds = std::fs::read_dir(format!("/proc/{}/fd", self.pid()))
            .ok()?
            .count();
        Some((rss, fds as u64))
    }

    /// SIGTERM and the exit status (killed after 30 s).
    pub fn stop(mut self) -> Result<std::process::ExitStatus> {
        signal("TERM", self.pid())?;
        let deadline = Instant::now() + START_LIMIT;
        loop {
            if let Some(status) = self.child.try_wait()? {
                return Ok(status);
            }
            if Instant::now() > deadline {
                self.child.kill()?;
                bail!("{} did not exit within 30 s of SIGTERM", self.name);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Gateway {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

fn signal(name: &str, pid: u32) -> Result<()> {
    let status = Command::new("kill")
        .arg(format!("-{name}"))
        .arg(pid.to_string())
        .status()?;
    if !status.success() {
        bail!("kill -{name} {pid} failed");
    }
    Ok(())
}

/// The public and admin addresses from `listening` lines (the admin listener is bound last).
fn listening_addrs(lines: &mpsc::Receiver<String>) -> Result<(SocketAddr, SocketAddr)> {
    let deadline = Instant::now() + START_LIMIT;
    let mut public = None;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let line = lines.recv_timeout(left)?;
        let field = |key: &str| {
            let word = line.split_whitespace().find(|w| w.starts_with(key))?;
            Some(word[key.len()..].trim_matches('"').to_owned())
        };
        let addr: Option<SocketAddr> = field("addr=").and_then(|a| a.parse().ok());
        match (field("listener=").as_deref(), addr) {
            (Some("public"), Some(addr)) => public = Some(addr),
            (Some("admin"), Some(addr)) => {
                return Ok((public.context("admin listening before public")?, addr))
            }
            _ => {}
        }
    }
}
