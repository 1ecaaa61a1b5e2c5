//! A three-primary Redis Cluster: two instances share sessions with each script's keys on
//! one slot (a CROSSSLOT error would fail the request), the keys spread over the nodes,
//! revocations reach both instances through an ordinary PUBLISH, and a node's loss fails
//! session calls fast until it returns.

use std::time::{Duration, Instant};

use serde_json::json;

use crate::scenario;
use crate::support::instances::{Instances, PROPAGATION};
use crate::support::redis_topology::{wait_for, ClusterSetup, SETUP_WAIT};
use crate::support::unique;

async fn start(test: &str) -> Option<(ClusterSetup, Instances, String)> {
    let setup = ClusterSetup::start(test)?;
    let prefix = format!("c{}:", unique());
    let p = crate::ready_instances(&setup.target(), &prefix).await;
    Some((setup, p, prefix))
}

/// Subscribes to `channel` on the node at `port` and returns the first message, if one
/// comes within ten seconds; `ready` is told once the subscription is in place.
fn first_message(port: u16, channel: String, ready: std::sync::mpsc::Sender<()>) -> Option<String> {
    let client = redis::Client::open(format!("redis://127.0.0.1:{port}/")).ok()?;
    let mut conn = client.get_connection().ok()?;
    let mut pubsub = conn.as_pubsub();
    pubsub.subscribe(&channel).ok()?;
    pubsub
        .set_read_timeout(Some(Duration::from_secs(10)))
        .ok()?;
    ready.send(()).ok()?;
    pubsub.get_message().ok()?.get_payload().ok()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cluster_instances_share_sessions_with_each_scripts_keys_on_one_slot() {
    let Some((setup, p, prefix)) = start("cluster_sessions").await else {
        return;
    };
    // A revocation is heard on every node, whichever owns the `revoked` key's slot: the
    // announcement is an ordinary PUBLISH, which a cluster sends to all of its nodes.
    let login = p.login(&p.a, "cluster-heard").await;
    let (ready, subscribed) = std::sync::mpsc::channel();
    let listeners: Vec<_> = setup
        .nodes
        .iter()
        .map(|node| {
            let (port, channel, ready) = (node.port, format!("{prefix}revoked"), ready.clone());
            std::thread::spawn(move || first_message(port, channel, ready))
        })
        .collect();
    for _ in &listeners {
        subscribed.recv_timeout(SETUP_WAIT).expect("subscribed");
    }
    assert_eq!(p.logout(&p.a, &login["access_token"]).await, 204);
    let sid = login["session_id"].as_str().expect("sid");
    for (i, listener) in listeners.into_iter().enumerate() {
        let heard = listener.join().expect("listener");
        assert!(
            heard
                .as_deref()
                .is_some_and(|m| m.starts_with(&format!("{sid} "))),
            "node {i} heard {heard:?}"
        );
    }

    scenario::sessions_are_shared(&p, "cluster").await;
    scenario::users_are_revoked_and_blocked_everywhere(&p, "cluster").await;
    let counts = setup.key_counts();
    eprintln!("cluster: keys per node {counts:?}");
    assert!(
        counts.iter().filter(|n| **n > 0).count() >= 2,
        "the keys spread over the nodes: {counts:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lost_cluster_node_fails_session_calls_fast_and_they_recover_when_it_returns() {
    let Some((mut setup, p, _)) = start("cluster_node_loss").await else {
        return;
    };
    let before = p.login(&p.a, "cluster-before").await;
    setup.nodes[1].kill();
    // Once the cluster marks the node failed, it refuses every command (full coverage).
    wait_for("the cluster to notice the lost node", || !setup.healthy());
    let deadline = Instant::now() + SETUP_WAIT;
    loop {
        let started = Instant::now();
        let (status, body) = p
            .post(
                &p.b,
                "/auth/login",
                json!({ "code": format!("lost{}", unique()) }),
            )
            .await;
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "store calls fail fast"
        );
        if status == 503 {
            assert_eq!(body["error"], "store_unavailable");
            break;
        }
        assert!(
            Instant::now() < deadline,
            "logins kept working without a node"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(
        p.call(&p.a, &before["access_token"]).await,
        200,
        "tokens need no Redis"
    );

    setup.nodes[1].restart();
    wait_for("the cluster to be whole again", || setup.healthy());
    let deadline = Instant::now() + SETUP_WAIT;
    let login = loop {
        let (status, body) = p
            .post(
                &p.b,
                "/auth/login",
                json!({ "code": format!("back{}", unique()) }),
            )
            .await;
        if status == 200 {
            break body;
        }
        assert!(Instant::now() < deadline, "logins did not recover");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let (status, renewed) = p.refresh(&p.a, &login["refresh_token"]).await;
    assert_eq!(status, 200, "{renewed}");
    assert_eq!(p.logout(&p.a, &renewed["access_token"]).await, 204);
    // The feed on B may have been subscribed on the lost node; it moves to another.
    let delay = p
        .until_refused(&p.b, &renewed["access_token"], SETUP_WAIT)
        .await;
    eprintln!("cluster: after the node returned, a logout on A reached B after {delay:?}");
    assert!(delay.is_some_and(|d| d < SETUP_WAIT));
    let quick = p.login(&p.b, "cluster-after").await;
    assert_eq!(p.logout(&p.b, &quick["access_token"]).await, 204);
    assert!(p
        .until_refused(&p.a, &quick["access_token"], PROPAGATION)
        .await
        .is_some());
}
