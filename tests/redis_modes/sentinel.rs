//! A primary and a replica behind three Sentinels: two instances share sessions through
//! whichever is primary, and when the primary is killed during a stream of logins and
//! refreshes, everything works again after the failover without a restart: commands go
//! to the promoted replica and the revocation feed resubscribes there.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::scenario;
use crate::support::instances::{Instances, PROPAGATION};
use crate::support::redis_topology::{SentinelSetup, SETUP_WAIT};
use crate::support::{unique, RunningGateway};

/// Logins on one instance and refreshes of them on the other, alternating, as fast as
/// they come back, until stopped; every request's outcome counted.
struct Stream {
    /// (endpoint, status) → how many answers.
    answers: Mutex<BTreeMap<(&'static str, u16), u64>>,
    /// Successes in a row since the last failure.
    streak: AtomicU64,
    stop: AtomicBool,
    /// When the first and the last failure happened.
    outage: Mutex<Option<(Instant, Instant)>>,
}

impl Stream {
    fn start(p: &Instances) -> (Arc<Self>, tokio::task::JoinHandle<()>) {
        let stream = Arc::new(Self {
            answers: Mutex::new(BTreeMap::new()),
            streak: AtomicU64::new(0),
            stop: AtomicBool::new(false),
            outage: Mutex::new(None),
        });
        let (http, urls) = (p.http.clone(), [p.a.url(""), p.b.url("")]);
        let task = tokio::spawn({
            let stream = stream.clone();
            async move {
                let mut i = 0usize;
                while !stream.stop.load(Ordering::Relaxed) {
                    let (here, there) = (&urls[i % 2], &urls[(i + 1) % 2]);
                    let code = format!("stream{}", unique());
                    let login = post(&http, here, "/auth/login", json!({ "code": code })).await;
                    let refreshed = match stream.count("login", login) {
                        Some(login) => {
                            let body = json!({ "refresh_token": login["refresh_token"] });
                            let answer = post(&http, there, "/auth/refresh", body).await;
                            stream.count("refresh", answer)
                        }
                        None => None,
                    };
                    if refreshed.is_none() {
                        tokio::time::sleep(Duration::from_millis(20)).await;
                    }
                    i += 1;
                }
            }
        });
        (stream, task)
    }

    /// Counts one answer; the body of a 200.
    fn count(&self, endpoint: &'static str, answer: (u16, Value)) -> Option<Value> {
        *self
            .answers
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .entry((endpoint, answer.0))
            .or_default() += 1;
        if answer.0 == 200 {
            self.streak.fetch_add(1, Ordering::Relaxed);
            return Some(answer.1);
        }
        self.streak.store(0, Ordering::Relaxed);
        let now = Instant::now();
        let mut outage = self.outage.lock().unwrap_or_else(|e| e.into_inner());
        *outage = Some(outage.map_or((now, now), |(first, _)| (first, now)));
        None
    }

    /// Waits until `n` requests in a row have succeeded; panics after [`SETUP_WAIT`].
    async fn until_streak(&self, n: u64) {
        let deadline = Instant::now() + SETUP_WAIT;
        while self.streak.load(Ordering::Relaxed) < n {
            assert!(Instant::now() < deadline, "requests did not succeed again");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

async fn post(http: &reqwest::Client, base: &str, path: &str, body: Value) -> (u16, Value) {
    match http.post(format!("{base}{path}")).json(&body).send().await {
        Ok(response) => {
            let status = response.status().as_u16();
            (status, response.json().await.unwrap_or(Value::Null))
        }
        Err(_) => (0, Value::Null),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sentinel_instances_share_sessions_and_carry_on_after_the_primary_fails_over() {
    let Some(mut setup) = SentinelSetup::start("sentinel_failover") else {
        return;
    };
    let prefix = format!("s{}:", unique());
    let p = crate::ready_instances(&setup.target(), &prefix).await;
    scenario::sessions_are_shared(&p, "sentinel").await;
    scenario::users_are_revoked_and_blocked_everywhere(&p, "sentinel").await;

    // Before the failover: a live session and a logged-out one, both replicated.
    let kept = p.login(&p.a, "sentinel-kept").await;
    let ended = p.login(&p.a, "sentinel-ended").await;
    assert_eq!(p.logout(&p.b, &ended["access_token"]).await, 204);
    setup.replicate();

    let (stream, task) = Stream::start(&p);
    stream.until_streak(10).await;
    let took = setup.fail_over();
    assert_eq!(
        p.call(&p.b, &kept["access_token"]).await,
        200,
        "tokens need no Redis"
    );
    stream.until_streak(20).await;
    stream.stop.store(true, Ordering::Relaxed);
    task.await.expect("stream");
    let answers = stream.answers.lock().map(|a| a.clone()).unwrap_or_default();
    let outage = stream
        .outage
        .lock()
        .map(|o| o.map(|(first, last)| last - first));
    let total: u64 = answers.values().sum();
    let failed: u64 = answers
        .iter()
        .filter(|((_, s), _)| *s != 200)
        .map(|(_, n)| n)
        .sum();
    eprintln!(
        "sentinel failover: the Sentinels promoted the replica {took:?} after the primary was \
         killed; {failed} of {total} requests in the stream failed, over {:?}; answers by \
         (endpoint, status): {answers:?}",
        outage.ok().flatten()
    );
    // A failover fails requests clearly (503, at once), never with a hang or a success
    // that is not one; a 400 would be a refresh of a login the old primary took to its end.
    for ((endpoint, status), n) in &answers {
        assert!(
            matches!(status, 200 | 503) || (*endpoint == "refresh" && *status == 400),
            "{n} {endpoint} answers were {status}"
        );
    }
    p.until_ready(&p.a, SETUP_WAIT).await;

    // Everything works again, on the promoted replica, without a restart.
    scenario::sessions_are_shared(&p, "failedover").await;
    let (status, renewed) = p.refresh(&p.b, &kept["refresh_token"]).await;
    assert_eq!(
        status, 200,
        "a session from before the failover refreshes: {renewed}"
    );
    assert_eq!(p.call(&p.a, &ended["access_token"]).await, 401);
    let late = RunningGateway::start(&p.config).await;
    p.until_ready(&late, SETUP_WAIT).await;
    assert!(
        p.until_refused(&late, &ended["access_token"], PROPAGATION * 5)
            .await
            .is_some(),
        "an instance started after the failover learns the revocation from before it"
    );
}
