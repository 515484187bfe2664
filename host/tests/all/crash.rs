//! Crash safety: a host killed with SIGKILL in the middle of a write load
//! loses no acknowledged write, in either durability mode.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use crate::support::{Options, Server, eventually};

const OBJECTS: usize = 4;
const CLIENTS: usize = 16;
const ROUNDS: usize = 3;

#[derive(Default)]
struct Tally {
    /// Requests sent, per object: an upper bound on what may be stored.
    sent: [AtomicU64; OBJECTS],
    /// Requests answered 200, per object: all of these must be stored.
    acknowledged: [AtomicU64; OBJECTS],
}

impl Tally {
    fn total_acknowledged(&self) -> u64 {
        self.acknowledged
            .iter()
            .map(|a| a.load(Ordering::SeqCst))
            .sum()
    }
}

async fn kill_mid_load_and_check(durability: &'static str) {
    let dir = tempfile::tempdir().expect("temp dir");
    let options = Options {
        durability,
        ..Options::default()
    };
    let tally = Arc::new(Tally::default());
    for round in 0..=ROUNDS {
        let server = Server::start_in(dir.path(), &options).await;
        for object in 0..OBJECTS {
            let (status, body) = server
                .get(&format!("/objects/counter/crash-{object}"))
                .await;
            assert_eq!(status, 200, "{body}");
            let stored: u64 = body.parse().expect("a count");
            let acknowledged = tally.acknowledged[object].load(Ordering::SeqCst);
            let sent = tally.sent[object].load(Ordering::SeqCst);
            assert!(
                stored >= acknowledged,
                "{durability}, after crash {round}: object {object} has {stored} but {acknowledged} increments were acknowledged"
            );
            assert!(
                stored <= sent,
                "{durability}: object {object} has {stored} but only {sent} were sent"
            );
        }
        if round == ROUNDS {
            server.stop().await;
            break;
        }

        let acknowledged_before = tally.total_acknowledged();
        let stop = Arc::new(AtomicBool::new(false));
        let mut clients = tokio::task::JoinSet::new();
        for client in 0..CLIENTS {
            let (http, tally, stop) =
                (server.client.clone(), Arc::clone(&tally), Arc::clone(&stop));
            let object = client % OBJECTS;
            let url = server.url(&format!("/objects/counter/crash-{object}"));
            clients.spawn(async move {
                while !stop.load(Ordering::SeqCst) {
                    tally.sent[object].fetch_add(1, Ordering::SeqCst);
                    match http.post(&url).send().await {
                        Ok(response) if response.status() == 200 => {
                            tally.acknowledged[object].fetch_add(1, Ordering::SeqCst);
                        }
                        // The server is gone: this request may or may not
                        // have been applied.
                        _ => break,
                    }
                }
            });
        }
        // Kill only once this round has acknowledged writes to lose: on a
        // slow machine a fixed wait may end before the first one.
        tokio::time::sleep(Duration::from_millis(500)).await;
        assert!(
            eventually(Duration::from_secs(30), || async {
                tally.total_acknowledged() >= acknowledged_before + CLIENTS as u64
            })
            .await,
            "{durability}, round {round}: the load was acknowledged before the kill"
        );
        server.kill().await;
        stop.store(true, Ordering::SeqCst);
        tokio::time::timeout(Duration::from_secs(30), clients.join_all())
            .await
            .expect("clients stop once the server is gone");
    }
}

#[tokio::test]
async fn sigkill_mid_load_loses_no_acknowledged_write_in_full_mode() {
    kill_mid_load_and_check("full").await;
}

#[tokio::test]
async fn sigkill_mid_load_loses_no_acknowledged_write_in_normal_mode() {
    kill_mid_load_and_check("normal").await;
}
