//! The Redis deployments wxgate supports, made of real `redis-server` processes: a TLS
//! server with ACL users, a primary with a replica watched by three Sentinels, and a
//! three-primary Cluster. Every wait is a readiness poll with a generous bound, so a
//! loaded CI machine is slow, not flaky.

use std::path::Path;
use std::time::{Duration, Instant};

use super::certs::{Ca, TempDir};
use super::redis::{base_args, server_binary, Redis};

/// The longest any setup step (a replica syncing, Sentinels agreeing, a cluster forming,
/// a failover) may take.
pub const SETUP_WAIT: Duration = Duration::from_secs(60);

/// Polls `ready` every 50 ms until it holds; panics with `what` after [`SETUP_WAIT`].
pub fn wait_for(what: &str, mut ready: impl FnMut() -> bool) {
    let deadline = Instant::now() + SETUP_WAIT;
    while !ready() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Runs one command on the plain port of a local server, as `user` when given.
pub fn command<T: redis::FromRedisValue>(
    port: u16,
    user: Option<(&str, &str)>,
    args: &[&str],
) -> redis::RedisResult<T> {
    let url = match user {
        Some((name, password)) => format!("redis://{name}:{password}@127.0.0.1:{port}/"),
        None => format!("redis://127.0.0.1:{port}/"),
    };
    let client = redis::Client::open(url)?;
    let mut conn = client.get_connection_with_timeout(Duration::from_secs(2))?;
    conn.set_read_timeout(Some(Duration::from_secs(5)))?;
    let mut cmd = redis::cmd(args[0]);
    for arg in &args[1..] {
        cmd.arg(*arg);
    }
    cmd.query(&mut conn)
}

/// A server with a TLS port (certificates from a CA made here, client certificates
/// required) and ACL users: `default` may only PING, `wxgate` may do anything under the
/// `key_prefix` [`TlsRedis::PREFIX`]. The plain port stays open for the test's own looks.
pub struct TlsRedis {
    pub server: Redis,
    pub ca: Ca,
    pub dir: TempDir,
}

impl TlsRedis {
    pub const USER: &'static str = "wxgate";
    pub const PASSWORD: &'static str = "acl-password-for-wxgate";
    pub const PREFIX: &'static str = "tls:";

    pub fn start(test: &str) -> Option<Self> {
        let binary = server_binary(test)?;
        let dir = TempDir::new("redis-tls");
        let ca = Ca::new();
        let (cert, key) = ca.write_leaf(dir.path(), "server");
        let path = |p: &Path| p.display().to_string();
        let mut args = base_args(dir.path());
        let tls = [
            ("--tls-port", "{extra_port}".to_string()),
            ("--tls-cert-file", path(&cert)),
            ("--tls-key-file", path(&key)),
            ("--tls-ca-cert-file", path(&dir.path().join("ca.pem"))),
            ("--tls-auth-clients", "yes".into()),
        ];
        for (name, value) in tls {
            args.extend([name.to_string(), value]);
        }
        let wxgate = format!(
            "{} on >{} ~{p}* &{p}* +@all",
            Self::USER,
            Self::PASSWORD,
            p = Self::PREFIX
        );
        // A rule is several words; redis-server joins the words after `--user` into one line.
        for rule in ["default on nopass -@all +ping", &wxgate] {
            args.push("--user".into());
            args.extend(rule.split(' ').map(String::from));
        }
        let server = Redis::launch(&binary, args);
        Some(Self { server, ca, dir })
    }

    /// The TLS address wxgate is given.
    pub fn tls_url(&self, with_user: bool) -> String {
        let user = if with_user {
            format!("{}@", Self::USER)
        } else {
            String::new()
        };
        format!("rediss://{user}127.0.0.1:{}/0", self.server.extra_port)
    }

    /// Writes a client certificate signed by this server's CA; its two paths.
    pub fn client_cert(&self) -> (std::path::PathBuf, std::path::PathBuf) {
        self.ca.write_leaf(self.dir.path(), "client")
    }
}
