//! The production Redis deployments, each with real `redis-server` processes and two
//! gateway instances: TLS with an ACL user (`tls`), a primary and replica behind three
//! Sentinels, failover included (`sentinel`), and a three-primary Cluster (`cluster`).
//! `scenario` is what every mode must do alike.
// Test code may panic on what it set up, and its helpers are `pub` for the test files.
#![allow(clippy::unwrap_used, clippy::expect_used, unreachable_pub)]

#[path = "../support/mod.rs"]
mod support;

mod cluster;
mod scenario;
mod sentinel;
mod tls;

use support::instances::Instances;
use support::redis_topology::SETUP_WAIT;

/// The `[store]` section for Redis at `target` (the lines naming it) under `prefix`, with
/// timeouts that leave room on a loaded machine.
fn store_section(target: &str, prefix: &str) -> String {
    format!(
        "[store]\nbackend = \"redis\"\n{target}\nkey_prefix = \"{prefix}\"\ntimeout = \"1s\"\nconnect_timeout = \"1s\"\n"
    )
}

/// Two instances on the Redis at `target` (its `[store]` lines) under `prefix`, both ready
/// (their store answering) before the test goes on.
async fn ready_instances(target: &str, prefix: &str) -> Instances {
    let p = Instances::start(&store_section(target, prefix), generous_limits).await;
    p.until_ready(&p.a, SETUP_WAIT).await;
    p.until_ready(&p.b, SETUP_WAIT).await;
    p
}

/// Every test here logs in from 127.0.0.1 many times: the per-client limit would refuse
/// them long before the Redis under test had a say.
fn generous_limits(config: &mut support::ConfigBuilder) {
    config
        .auth_tables
        .push_str("[auth.login_rate_limit]\nper_minute = 100000\nburst = 100000\n");
}
