//! A cluster losing a node: one SIGKILLed under write load (its objects
//! move to the survivors with every acknowledged write), and one cut off
//! from etcd (it stops serving before another node may take its objects,
//! and nothing it does afterwards is seen).

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinSet;
use tokio::time::Instant;

use crate::cluster_support::{
    Etcd, PREFIX, file_store, node_options, node_options_via, owner_key, stored_epochs_by_path,
};
use crate::replication::S3Server;
use crate::support::{Options, Server, eventually};

const OBJECTS: usize = 200;

/// What a POST through a node answered.
enum Answer {
    /// 200 with the counter's new value: an acknowledged write.
    Counted(u64),
    /// Refused before anything ran (503 with this code).
    Refused(String),
    /// Anything else: the write may or may not have happened.
    Unknown(String),
}

async fn post(server: &Server, object: &str) -> Answer {
    let response = server
        .client
        .post(server.url(&format!("/objects/counter/{object}")))
        .send()
        .await;
    let response = match response {
        Ok(response) => response,
        Err(error) => return Answer::Unknown(error.to_string()),
    };
    let status = response.status().as_u16();
    let body = response.text().await.unwrap_or_default();
    match (status, body.parse::<u64>()) {
        (200, Ok(value)) => Answer::Counted(value),
        (503, _) => {
            let code = serde_json::from_str::<serde_json::Value>(&body)
                .ok()
                .and_then(|body| body["error"]["code"].as_str().map(str::to_string));
            match code.as_deref() {
                Some("cluster_unavailable" | "not_owner") => {
                    Answer::Refused(code.unwrap_or_default())
                }
                _ => Answer::Unknown(format!("{status} {body}")),
            }
        }
        _ => Answer::Unknown(format!("{status} {body}")),
    }
}

/// Every acknowledged value of every object, and when each object was
/// first acknowledged after `since` (set once the node is killed).
#[derive(Default)]
struct Acknowledged {
    values: HashMap<usize, Vec<u64>>,
    again: HashMap<usize, Instant>,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_killed_under_write_load_loses_no_acknowledged_write_and_no_object_gets_two_owners()
{
    const WORKERS: usize = 24;
    let etcd = Etcd::start().await;
    let s3 = S3Server::start("podhost-cluster").await;
    let replication: &'static str = Box::leak(
        format!(
            "[replication]\nurl = \"s3://podhost-cluster/nodes\"\nendpoint = \"{}\"\n\
             allow_http = true\nregion = \"us-east-1\"\ntimeout = \"10s\"\n",
            s3.endpoint
        )
        .into_boxed_str(),
    );
    let replicated = |name| Options {
        durability: "replicated",
        env: vec![
            ("AWS_ACCESS_KEY_ID", "podhost-test"),
            ("AWS_SECRET_ACCESS_KEY", "podhost-test"),
        ],
        ..node_options(&etcd, name, replication)
    };
    let mut dirs = Vec::new();
    let mut nodes = Vec::new();
    for name in ["a", "b", "c"] {
        let (server, dir) = Server::start(replicated(name)).await;
        nodes.push(Arc::new(server));
        dirs.push(dir);
    }
    // The load goes to the nodes in this list: the killed one leaves it.
    let targets = Arc::new(parking_lot::Mutex::new(nodes.clone()));
    let acknowledged = Arc::new(parking_lot::Mutex::new(Acknowledged::default()));
    let killed_at: Arc<parking_lot::Mutex<Option<Instant>>> = Arc::default();
    let stop = Arc::new(AtomicBool::new(false));
    let sent = Arc::new(AtomicUsize::new(0));
    let mut workers = JoinSet::new();
    for _ in 0..WORKERS {
        let (targets, acknowledged, killed_at, stop, sent) = (
            Arc::clone(&targets),
            Arc::clone(&acknowledged),
            Arc::clone(&killed_at),
            Arc::clone(&stop),
            Arc::clone(&sent),
        );
        workers.spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                let n = sent.fetch_add(1, Ordering::Relaxed);
                let object = n % OBJECTS;
                // Each round of the objects shifts the node, so every
                // object is sent through every node.
                let server = {
                    let targets = targets.lock();
                    Arc::clone(&targets[(n + n / OBJECTS) % targets.len()])
                };
                let since = *killed_at.lock();
                match post(&server, &format!("o{object}")).await {
                    Answer::Counted(value) => {
                        let mut acknowledged = acknowledged.lock();
                        acknowledged.values.entry(object).or_default().push(value);
                        if since.is_some() {
                            acknowledged
                                .again
                                .entry(object)
                                .or_insert_with(Instant::now);
                        }
                    }
                    // Until a dead node's lease expires its objects are
                    // refused; the next round tries again.
                    Answer::Refused(_) | Answer::Unknown(_) => {
                        tokio::time::sleep(Duration::from_millis(50)).await;
                    }
                }
            }
        });
    }
    // Three rounds of every object before the kill.
    let loaded = eventually(Duration::from_secs(120), || async {
        acknowledged
            .lock()
            .values
            .values()
            .map(Vec::len)
            .sum::<usize>()
            >= 3 * OBJECTS
    })
    .await;
    assert!(loaded, "600 writes acknowledged before the kill");
    let victim_objects = count_owned_by(&etcd, "c").await;
    targets.lock().truncate(2);
    let kill_time = Instant::now();
    *killed_at.lock() = Some(kill_time);
    // A worker may hold c for the request it is sending.
    let mut victim = nodes.pop().expect("three nodes");
    let victim = loop {
        match Arc::try_unwrap(victim) {
            Ok(server) => break server,
            Err(shared) => {
                victim = shared;
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        }
    };
    victim.kill().await;
    let served_again = eventually(Duration::from_secs(90), || async {
        acknowledged.lock().again.len() == OBJECTS
    })
    .await;
    stop.store(true, Ordering::Relaxed);
    workers.join_all().await;
    let acknowledged = std::mem::take(&mut *acknowledged.lock());
    let last_back = acknowledged.again.values().max().copied();
    println!(
        "failover: node c (owning {victim_objects} of {OBJECTS} objects) SIGKILLed; every object \
         acknowledged a write again {:?} after the kill",
        last_back.map(|at| at - kill_time)
    );
    assert!(
        served_again,
        "every object acknowledged a write through a survivor within 90 s of the kill \
         ({} of {OBJECTS})",
        acknowledged.again.len()
    );
    assert!(victim_objects > 0, "the killed node owned objects");

    for object in 0..OBJECTS {
        let values = &acknowledged.values[&object];
        let distinct: BTreeSet<u64> = values.iter().copied().collect();
        assert_eq!(
            distinct.len(),
            values.len(),
            "o{object}: no value acknowledged twice (two owners, or a lost write counted again): {values:?}"
        );
        let highest = *distinct.last().expect("acknowledged values");
        for server in &nodes {
            let (status, body) = server.get(&format!("/objects/counter/o{object}")).await;
            assert_eq!(status, 200, "o{object} through {}: {body}", server.base);
            let now: u64 = body.parse().expect("a count");
            assert!(
                now >= highest,
                "o{object}: {now} through {} has every acknowledged write (up to {highest})",
                server.base
            );
        }
    }
    drop(s3);
}

/// How many objects `node` owns in etcd now.
async fn count_owned_by(etcd: &Etcd, node: &str) -> usize {
    let mut owned = 0;
    for object in 0..OBJECTS {
        if etcd
            .get(&owner_key("counter", &format!("o{object}")))
            .await
            .as_deref()
            == Some(node)
        {
            owned += 1;
        }
    }
    owned
}

/// A TCP proxy on 127.0.0.1 in front of `upstream` that the test can cut
/// (every connection dropped, new ones closed at once) and heal.
struct Proxy {
    port: u16,
    cut: watch::Sender<bool>,
    _accepting: tokio::task::JoinHandle<()>,
}

impl Proxy {
    async fn start(upstream: u16) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("a port");
        let port = listener.local_addr().expect("an address").port();
        let (cut, _) = watch::channel(false);
        let cuts = cut.clone();
        let accepting = tokio::spawn(async move {
            while let Ok((mut client, _)) = listener.accept().await {
                if *cuts.borrow() {
                    drop(client);
                    continue;
                }
                let mut cut = cuts.subscribe();
                tokio::spawn(async move {
                    let Ok(mut server) = TcpStream::connect(("127.0.0.1", upstream)).await else {
                        return;
                    };
                    tokio::select! {
                        _ = tokio::io::copy_bidirectional(&mut client, &mut server) => {}
                        _ = cut.wait_for(|cut| *cut) => {}
                    }
                });
            }
        });
        Proxy {
            port,
            cut,
            _accepting: accepting,
        }
    }

    fn url(&self) -> String {
        format!("etcd://127.0.0.1:{}/{PREFIX}", self.port)
    }

    fn cut(&self) {
        self.cut.send_replace(true);
    }

    fn heal(&self) {
        self.cut.send_replace(false);
    }
}

/// What the writer saw of one POST to the partitioned node.
struct Sent {
    at: Instant,
    answered: Instant,
    answer: Answer,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_cut_off_from_etcd_stops_serving_before_another_takes_its_objects_and_is_fenced() {
    const TTL: &str = "6s";
    let etcd = Etcd::start().await;
    let proxy = Proxy::start(etcd.client_port).await;
    let (store, replication) = file_store();
    let replication: &'static str = Box::leak(replication.into_boxed_str());
    let options = |url: &str, name| Options {
        durability: "replicated",
        ..node_options_via(url, name, TTL, replication)
    };
    let (a, _a) = Server::start(options(&proxy.url(), "a")).await;
    let (b, _b) = Server::start(options(&etcd.url(PREFIX), "b")).await;
    let (c, _c) = Server::start(options(&etcd.url(PREFIX), "c")).await;
    let a = Arc::new(a);
    for expected in 1..=3 {
        assert_eq!(
            a.post("/objects/counter/fenced", "").await,
            (200, expected.to_string())
        );
    }
    let key = owner_key("counter", "fenced");
    assert_eq!(etcd.get(&key).await.as_deref(), Some("a"));
    let a_epoch = etcd.create_revision(&key).await.expect("a's ownership");
    // c learns that a owns it.
    assert_eq!(
        c.post("/objects/counter/fenced", "").await,
        (200, "4".into())
    );

    // Writes through a, one after another, before and after the cut.
    let stop = Arc::new(AtomicBool::new(false));
    let writer = {
        let (a, stop) = (Arc::clone(&a), Arc::clone(&stop));
        tokio::spawn(async move {
            let mut sent = Vec::new();
            while !stop.load(Ordering::Relaxed) {
                let at = Instant::now();
                let answer = post(&a, "fenced").await;
                sent.push(Sent {
                    at,
                    answered: Instant::now(),
                    answer,
                });
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            sent
        })
    };
    tokio::time::sleep(Duration::from_millis(500)).await;
    let cut_at = Instant::now();
    proxy.cut();
    // etcd lets a's lease expire (6 s after its last keepalive): its key
    // goes, and another node may take the object.
    let mut gone_at = None;
    let deadline = Instant::now() + Duration::from_secs(30);
    while Instant::now() < deadline {
        if etcd.get(&key).await.as_deref() != Some("a") {
            gone_at = Some(Instant::now());
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let gone_at = gone_at.expect("a's lease expired in etcd within 30 s of the cut");
    let a_pieces_at_expiry = pieces_of_epoch(store.path(), a_epoch);
    tokio::time::sleep(Duration::from_secs(1)).await;
    stop.store(true, Ordering::Relaxed);
    let sent = writer.await.expect("the writer");

    let refused_at = sent
        .iter()
        .find(|sent| matches!(sent.answer, Answer::Refused(_)))
        .map(|sent| sent.answered)
        .expect("a refused writes after the cut");
    let counted_after_cut = sent
        .iter()
        .filter(|sent| sent.at > cut_at && matches!(sent.answer, Answer::Counted(_)))
        .count();
    println!(
        "partition: a counted {counted_after_cut} writes after the cut, refused from {:?} after \
         it; its key went {:?} after the cut",
        refused_at - cut_at,
        gone_at - cut_at
    );
    assert!(
        refused_at < gone_at,
        "a stopped serving before etcd let its lease (and the object) go"
    );
    for sent in sent.iter().filter(|sent| sent.at > refused_at) {
        match &sent.answer {
            Answer::Refused(code) => assert_eq!(code, "cluster_unavailable"),
            Answer::Counted(value) => panic!("a counted {value} after it had refused a write"),
            Answer::Unknown(answer) => panic!("a answered {answer} after it had refused a write"),
        }
    }
    let highest = sent
        .iter()
        .filter_map(|sent| match sent.answer {
            Answer::Counted(value) => Some(value),
            _ => None,
        })
        .max()
        .unwrap_or(4);
    // A write whose answer was lost may have happened; a refused one not.
    let unknown = sent
        .iter()
        .filter(|sent| matches!(sent.answer, Answer::Unknown(_)))
        .count() as u64;

    // b takes the object only now, restoring what a acknowledged.
    let taken = eventually(Duration::from_secs(30), || async {
        b.post("/objects/counter/fenced", "").await.0 == 200
    })
    .await;
    assert!(taken, "b took the object after a's lease expired");
    let (_, now) = b.get("/objects/counter/fenced").await;
    let now: u64 = now.parse().expect("a count");
    assert!(
        (highest + 1..=highest + 1 + unknown).contains(&now),
        "b continues from a's last acknowledged write {highest} (plus its own, plus \
         {unknown} unanswered ones at most): {now}"
    );
    assert_eq!(etcd.get(&key).await.as_deref(), Some("b"));
    let b_epoch = etcd.create_revision(&key).await.expect("b's ownership");
    assert!(b_epoch > a_epoch, "a new epoch: {b_epoch} after {a_epoch}");

    // Healed: a holds a new lease and forwards the object to b.
    proxy.heal();
    let rejoined = eventually(Duration::from_secs(30), || async {
        etcd.get(&format!("/{PREFIX}/nodes/a")).await.is_some()
    })
    .await;
    assert!(rejoined, "a registered again once etcd was reachable");
    let served = eventually(Duration::from_secs(30), || async {
        a.get("/objects/counter/fenced").await.0 == 200
    })
    .await;
    assert!(served, "a serves the object again (through b)");
    assert_eq!(
        a.post("/objects/counter/fenced", "").await,
        (200, (now + 1).to_string()),
        "a forwards to b, not serving its own stale copy"
    );
    assert_eq!(
        c.post("/objects/counter/fenced", "").await,
        (200, (now + 2).to_string())
    );
    assert_eq!(etcd.get(&key).await.as_deref(), Some("b"));
    assert_eq!(etcd.create_revision(&key).await, Some(b_epoch));
    assert_eq!(
        pieces_of_epoch(store.path(), a_epoch),
        a_pieces_at_expiry,
        "a shipped nothing under its old epoch after its lease expired"
    );
}

/// The stored segments and snapshots of fencing epoch `epoch`.
fn pieces_of_epoch(store: &std::path::Path, epoch: u64) -> BTreeSet<std::path::PathBuf> {
    stored_epochs_by_path(store)
        .into_iter()
        .filter(|(_, stored)| *stored == epoch)
        .map(|(path, _)| path)
        .collect()
}
