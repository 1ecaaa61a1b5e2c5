//! The production Redis deployments, each with real `redis-server` processes and two
//! gateway instances: TLS with an ACL user (`tls`), a primary and replica behind three
//! Sentinels, failover included (`sentinel`), and a three-primary Cluster (`cluster`).
//! `scenario` is what every mode must do alike.

#[path = "../support/mod.rs"]
mod support;

mod scenario;
mod tls;

/// The `[store]` section for Redis at `target` (the lines naming it) under `prefix`, with
/// timeouts that leave room on a loaded machine.
fn store_section(target: &str, prefix: &str) -> String {
    format!(
        "[store]\nbackend = \"redis\"\n{target}\nkey_prefix = \"{prefix}\"\ntimeout = \"1s\"\nconnect_timeout = \"1s\"\n"
    )
}
