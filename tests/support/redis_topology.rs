//! The Redis deployments wxgate supports, made of real `redis-server` processes: a TLS
//! server with ACL users, a primary with a replica watched by three Sentinels, and a
//! three-primary Cluster. Every wait is a readiness poll with a generous bound, so a
//! loaded CI machine is slow, not flaky.

use std::path::Path;
use std::time::{Duration, Instant};

use super::certs::{Ca, TempDir};
use super::redis::{base_args, cli_binary, server_binary, Redis};

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

/// A primary with one replica, watched by three Sentinels (quorum 2) that call the
/// primary down after a second without answers.
pub struct SentinelSetup {
    pub primary: Redis,
    pub replica: Redis,
    pub sentinels: Vec<Redis>,
    pub dir: TempDir,
}

impl SentinelSetup {
    pub const MASTER: &'static str = "wxgate-primary";

    pub fn start(test: &str) -> Option<Self> {
        let binary = server_binary(test)?;
        let dir = TempDir::new("redis-sentinel");
        let sub = |name: &str| {
            let path = dir.path().join(name);
            std::fs::create_dir_all(&path).expect("dir");
            path
        };
        let primary = Redis::launch(&binary, base_args(&sub("primary")));
        let mut args = base_args(&sub("replica"));
        args.extend([
            "--replicaof".into(),
            "127.0.0.1".into(),
            primary.port.to_string(),
        ]);
        let replica = Redis::launch(&binary, args);
        wait_for("the replica to sync", || {
            command::<String>(replica.port, None, &["INFO", "replication"])
                .is_ok_and(|info| info.contains("master_link_status:up"))
        });
        let sentinels = (0..3)
            .map(|i| {
                let conf = dir.path().join(format!("sentinel-{i}.conf"));
                let text = format!(
                    "sentinel monitor {m} 127.0.0.1 {port} 2\n\
                     sentinel down-after-milliseconds {m} 1000\n\
                     sentinel failover-timeout {m} 5000\n",
                    m = Self::MASTER,
                    port = primary.port
                );
                std::fs::write(&conf, text).expect("sentinel conf");
                let mut args = vec![conf.display().to_string(), "--sentinel".into()];
                args.extend(["--bind", "127.0.0.1", "--port", "{port}"].map(String::from));
                args.extend([
                    "--dir".into(),
                    sub(&format!("sentinel-{i}")).display().to_string(),
                ]);
                Redis::launch(&binary, args)
            })
            .collect::<Vec<_>>();
        let setup = Self {
            primary,
            replica,
            sentinels,
            dir,
        };
        wait_for("the Sentinels to find each other and the replica", || {
            setup.settled()
        });
        Some(setup)
    }

    /// Every Sentinel sees the quorum and the replica, so a failover can happen.
    fn settled(&self) -> bool {
        self.sentinels.iter().all(|s| {
            let quorum: redis::RedisResult<String> =
                command(s.port, None, &["SENTINEL", "CKQUORUM", Self::MASTER]);
            let replicas: redis::RedisResult<Vec<redis::Value>> =
                command(s.port, None, &["SENTINEL", "REPLICAS", Self::MASTER]);
            quorum.is_ok_and(|q| q.starts_with("OK 3")) && replicas.is_ok_and(|r| r.len() == 1)
        })
    }

    /// The `[store]` lines that point wxgate at these Sentinels.
    pub fn target(&self) -> String {
        let list: Vec<String> = self
            .sentinels
            .iter()
            .map(|s| format!("\"{}\"", s.addr()))
            .collect();
        format!(
            "sentinels = [{}]\nmaster_name = \"{}\"",
            list.join(", "),
            Self::MASTER
        )
    }

    /// The primary's port as the first Sentinel that answers names it.
    pub fn named_primary(&self) -> Option<u16> {
        self.sentinels.iter().find_map(|s| {
            command::<Option<(String, u16)>>(
                s.port,
                None,
                &["SENTINEL", "GET-MASTER-ADDR-BY-NAME", Self::MASTER],
            )
            .ok()
            .flatten()
            .map(|(_, port)| port)
        })
    }

    /// Waits until the replica has everything the primary acknowledged so far.
    pub fn replicate(&self) {
        let acked: redis::RedisResult<i64> =
            command(self.primary.port, None, &["WAIT", "1", "5000"]);
        assert_eq!(acked.ok(), Some(1), "the replica did not acknowledge");
    }

    /// Kills the primary; returns once the Sentinels have promoted the replica.
    pub fn fail_over(&mut self) -> Duration {
        let old = self.primary.port;
        let started = Instant::now();
        self.primary.kill();
        wait_for("the Sentinels to promote the replica", || {
            self.named_primary() == Some(self.replica.port)
        });
        assert_ne!(old, self.replica.port);
        started.elapsed()
    }
}

/// Three primaries in one Redis Cluster (no replicas), formed with `redis-cli --cluster
/// create`; a node is failed after three seconds without answers.
pub struct ClusterSetup {
    pub nodes: Vec<Redis>,
    pub dir: TempDir,
}

impl ClusterSetup {
    pub fn start(test: &str) -> Option<Self> {
        let binary = server_binary(test)?;
        let cli = cli_binary(test)?;
        let dir = TempDir::new("redis-cluster");
        let nodes: Vec<Redis> = (0..3)
            .map(|i| {
                let node_dir = dir.path().join(format!("node-{i}"));
                std::fs::create_dir_all(&node_dir).expect("dir");
                let mut args = base_args(&node_dir);
                let cluster = [
                    "--cluster-enabled",
                    "yes",
                    "--cluster-config-file",
                    "nodes.conf",
                    "--cluster-node-timeout",
                    "3000",
                    "--cluster-port",
                    "{extra_port}",
                ];
                args.extend(cluster.map(String::from));
                Redis::launch(&binary, args)
            })
            .collect();
        let mut create = std::process::Command::new(&cli);
        create.arg("--cluster").arg("create");
        for node in &nodes {
            create.arg(node.addr());
        }
        let output = create.arg("--cluster-yes").output().expect("redis-cli");
        assert!(
            output.status.success(),
            "redis-cli --cluster create failed:\n{}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
        let setup = Self { nodes, dir };
        wait_for("the cluster to be ok on every node", || setup.healthy());
        Some(setup)
    }

    /// Every live node says the cluster is ok and knows all three nodes.
    pub fn healthy(&self) -> bool {
        self.nodes.iter().all(|n| {
            command::<String>(n.port, None, &["CLUSTER", "INFO"]).is_ok_and(|info| {
                info.contains("cluster_state:ok") && info.contains("cluster_known_nodes:3")
            })
        })
    }

    /// The `[store]` lines that point wxgate at the cluster's nodes.
    pub fn target(&self) -> String {
        let list: Vec<String> = self
            .nodes
            .iter()
            .map(|n| format!("\"{}\"", n.addr()))
            .collect();
        format!("cluster = [{}]", list.join(", "))
    }

    /// How many keys each node holds.
    pub fn key_counts(&self) -> Vec<i64> {
        self.nodes
            .iter()
            .map(|n| command(n.port, None, &["DBSIZE"]).unwrap_or(-1))
            .collect()
    }
}
