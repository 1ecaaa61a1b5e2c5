//! `rediss://` with an ACL user: the server is verified against the configured CA, wxgate
//! presents a client certificate, and the password comes from a file.

use std::time::Duration;

use crate::scenario;
use crate::store_section;
use crate::support::instances::Instances;
use crate::support::redis_topology::{command, TlsRedis};

/// The `[store]` lines for `redis`: its TLS address, the ACL user's password file, and the
/// CA and client certificate given (paths as written into the config).
fn target(redis: &TlsRedis, ca: &str, client: bool) -> String {
    let password = redis.dir.path().join("redis-password");
    std::fs::write(&password, format!("{}\n", TlsRedis::PASSWORD)).expect("password file");
    let mut lines = format!(
        "url = \"{}\"\npassword_file = \"{}\"\nca_file = \"{ca}\"\n",
        redis.tls_url(true),
        password.display()
    );
    if client {
        let (cert, key) = redis.client_cert();
        lines.push_str(&format!(
            "cert_file = \"{}\"\nkey_file = \"{}\"\n",
            cert.display(),
            key.display()
        ));
    }
    lines
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_with_an_acl_user_carries_every_session_operation() {
    let Some(redis) = TlsRedis::start("tls_with_an_acl_user") else {
        return;
    };
    let ca = redis.dir.path().join("ca.pem").display().to_string();
    let store = store_section(&target(&redis, &ca, true), TlsRedis::PREFIX);
    let p = Instances::start(&store, crate::generous_limits).await;
    scenario::sessions_are_shared(&p, "tls").await;
    scenario::users_are_revoked_and_blocked_everywhere(&p, "tls").await;

    // Everything went through the ACL user, whose keys are all under the prefix.
    let user = Some((TlsRedis::USER, TlsRedis::PASSWORD));
    let keys: Vec<String> =
        command(redis.server.port, user, &["KEYS", "*"]).expect("keys as the ACL user");
    assert!(!keys.is_empty());
    assert!(
        keys.iter().all(|k| k.starts_with(TlsRedis::PREFIX)),
        "{keys:?}"
    );
    let anonymous: redis::RedisResult<Vec<String>> =
        command(redis.server.port, None, &["KEYS", "*"]);
    assert!(anonymous.is_err(), "the default user may only PING");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_from_another_ca_a_missing_client_certificate_or_a_wrong_password_is_refused() {
    let Some(redis) = TlsRedis::start("tls_refusals") else {
        return;
    };
    let other = crate::support::certs::Ca::new();
    let other_ca = redis.dir.path().join("other-ca.pem");
    std::fs::write(&other_ca, other.pem()).expect("other ca");
    let ca = redis.dir.path().join("ca.pem").display().to_string();
    let wrong_password = format!(
        "url = \"{}\"\npassword = \"not-the-password\"\nca_file = \"{ca}\"\n",
        redis.tls_url(true)
    );
    let cases = [
        (
            "another CA",
            target(&redis, &other_ca.display().to_string(), true),
        ),
        ("no client certificate", target(&redis, &ca, false)),
        ("a wrong password", wrong_password),
    ];
    for (case, lines) in cases {
        let p = Instances::start(
            &store_section(&lines, TlsRedis::PREFIX),
            crate::generous_limits,
        )
        .await;
        // Give the connection every chance to come up before concluding it does not.
        tokio::time::sleep(Duration::from_millis(500)).await;
        assert_eq!(p.ready(&p.a).await, 503, "{case}: /readyz");
        let (status, body) = p
            .post(
                &p.a,
                "/auth/login",
                serde_json::json!({"code": format!("refused-{}", case.len())}),
            )
            .await;
        assert_eq!(
            (status, body["error"].as_str()),
            (503, Some("store_unavailable")),
            "{case}"
        );
    }
}
