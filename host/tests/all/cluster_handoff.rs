//! Graceful handoff: a node sent SIGTERM hands its objects over (last
//! batch committed and shipped, owner key released) before it exits, so a
//! rolling restart of every node under load fails no request and loses no
//! write, its WebSockets close with 1012 and reconnect elsewhere, and its
//! event streams end.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use serde_json::json;
use tokio::task::JoinSet;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;

use crate::cluster_support::{
    Etcd, PREFIX, address, file_store, node_options_via, owner_key, post_forwarded,
};
use crate::support::{Options, Server, eventually};

/// Longer than any test here takes to stop a node: an owner key or node
/// key that goes was released, not expired.
const LEASE_TTL: &str = "60s";

/// A node shipping every commit before acknowledging it, listening on
/// `listen` (`127.0.0.1:0` the first time, its own port on a restart).
fn replicated(etcd: &Etcd, node: &str, store: &str, listen: &'static str) -> Options {
    Options {
        durability: "replicated",
        listen,
        ..node_options_via(&etcd.url(PREFIX), node, LEASE_TTL, store)
    }
}

#[tokio::test]
async fn sigterm_releases_a_nodes_objects_at_once_and_another_node_serves_their_data() {
    let etcd = Etcd::start().await;
    let (_store, store) = file_store();
    let (a, _a) = Server::start(replicated(&etcd, "a", &store, "127.0.0.1:0")).await;
    let (b, _b) = Server::start(replicated(&etcd, "b", &store, "127.0.0.1:0")).await;
    let names = ["h0", "h1", "h2", "h3"];
    for name in names {
        for expected in 1..=3 {
            assert_eq!(
                a.post(&format!("/objects/counter/{name}"), "").await,
                (200, expected.to_string())
            );
        }
        assert_eq!(
            etcd.get(&owner_key("counter", name)).await.as_deref(),
            Some("a")
        );
    }
    // Event streams held through a: one of a's own objects, one b owns.
    assert_eq!(a.get("/objects/chat/here/presence").await.0, 200);
    assert_eq!(b.get("/objects/chat/there/presence").await.0, 200);
    let mut own_events = a.events("/objects/chat/here/_events", None).await;
    let mut forwarded_events = a.events("/objects/chat/there/_events", None).await;
    // Stops within 30 s (`stop` asserts it) although the streams never
    // end on their own.
    a.stop().await;
    assert!(own_events.ends().await, "a's own stream ended");
    assert!(forwarded_events.ends().await, "the forwarded stream ended");
    // The lease lives a minute: keys gone now were released by the drain.
    assert_eq!(etcd.get(&format!("/{PREFIX}/nodes/a")).await, None);
    for name in names {
        let key = owner_key("counter", name);
        assert_eq!(etcd.get(&key).await, None, "{name} was let go");
        let last_owner = key.replace("/owners/", "/last-owner/");
        assert_eq!(etcd.get(&last_owner).await.as_deref(), Some("a"));
    }
    for name in names {
        assert_eq!(
            b.post(&format!("/objects/counter/{name}"), "").await,
            (200, "4".to_string()),
            "b restores {name} with a's three hits"
        );
    }
}

/// What the load saw: each acknowledged value by object, and failures.
#[derive(Default)]
struct Load {
    values: Vec<Vec<u64>>,
    failures: Vec<String>,
}

/// Posts to counters `c0..c<objects>` round-robin over `bases` until
/// `stop`, like a load balancer: a node that refuses the connection
/// (nothing was sent) is skipped for the next; anything else but 200 is a
/// failure.
async fn load(
    worker: usize,
    objects: usize,
    bases: Arc<Vec<String>>,
    stop: Arc<AtomicBool>,
) -> Load {
    // A new connection per request: a kept-alive one to a stopping node
    // could be closed under a request, which no load balancer retries.
    let client = reqwest::Client::builder()
        .no_proxy()
        .pool_max_idle_per_host(0)
        .timeout(Duration::from_secs(30))
        .build()
        .expect("http client");
    let mut seen = Load {
        values: vec![Vec::new(); objects],
        failures: Vec::new(),
    };
    let mut turn = worker;
    while !stop.load(Ordering::Acquire) {
        turn += 1;
        let object = turn % objects;
        let mut answered = false;
        for attempt in 0..bases.len() * 3 {
            let base = &bases[(turn + attempt) % bases.len()];
            let sent = client
                .post(format!("{base}/objects/counter/c{object}"))
                .body("")
                .send()
                .await;
            match sent {
                Err(error) if error.is_connect() => {
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
                Err(error) => {
                    seen.failures
                        .push(format!("{} c{object} via {base}: {error:?}", clock()));
                    answered = true;
                    break;
                }
                Ok(response) => {
                    let status = response.status();
                    let body = response.text().await.unwrap_or_default();
                    match body.parse::<u64>() {
                        Ok(value) if status == 200 => seen.values[object].push(value),
                        _ => seen
                            .failures
                            .push(format!("{} c{object} via {base}: {status} {body}", clock())),
                    }
                    answered = true;
                    break;
                }
            }
        }
        if !answered {
            seen.failures
                .push(format!("c{object}: every node refused the connection"));
        }
    }
    seen
}

/// The time of day in UTC as the servers' logs write it, to find a
/// failure's moment in them.
fn clock() -> String {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    let seconds = now.as_secs() % 86_400;
    format!(
        "{:02}:{:02}:{:02}.{:03}",
        seconds / 3600,
        seconds / 60 % 60,
        seconds % 60,
        now.subsec_millis()
    )
}

/// Reads `socket` until its close frame; its code.
async fn close_code(socket: &mut crate::support::Ws) -> Option<CloseCode> {
    loop {
        match socket.next().await {
            Some(Ok(Message::Close(frame))) => return frame.map(|frame| frame.code),
            Some(Ok(_)) => continue,
            _ => return None,
        }
    }
}

#[tokio::test]
async fn a_rolling_restart_of_every_node_under_load_fails_no_request_and_loses_no_write() {
    const OBJECTS: usize = 20;
    const WORKERS: usize = 6;
    let etcd = Etcd::start().await;
    let (_store, store) = file_store();
    let names = ["a", "b", "c"];
    let mut nodes = Vec::new();
    let mut dirs = Vec::new();
    for name in names {
        let (server, dir) = Server::start(replicated(&etcd, name, &store, "127.0.0.1:0")).await;
        nodes.push(Some(server));
        dirs.push(dir);
    }
    let bases: Arc<Vec<String>> = Arc::new(
        nodes
            .iter()
            .flatten()
            .map(|server| server.base.clone())
            .collect(),
    );
    let listens: Vec<&'static str> = nodes
        .iter()
        .flatten()
        .map(|server| &*Box::leak(address(server).into_boxed_str()))
        .collect();

    // A chat room a owns, and a socket to it through a.
    let a = nodes[0].as_ref().expect("a runs");
    assert_eq!(a.get("/objects/chat/hall/presence").await.0, 200);
    assert_eq!(
        etcd.get(&owner_key("chat", "hall")).await.as_deref(),
        Some("a")
    );
    let mut socket = a
        .ws("/objects/chat/hall/ws?name=ada")
        .await
        .expect("ada joins through a");
    let socket_closed = tokio::spawn(async move { close_code(&mut socket).await });

    let stop = Arc::new(AtomicBool::new(false));
    let mut workers = JoinSet::new();
    for worker in 0..WORKERS {
        workers.spawn(load(worker, OBJECTS, Arc::clone(&bases), Arc::clone(&stop)));
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    for (index, name) in names.iter().enumerate() {
        let server = nodes[index].take().expect("the node runs");
        eprintln!("{} stopping {name} ({})", clock(), server.base);
        server.stop().await;
        eprintln!("{} {name} stopped", clock());
        let options = replicated(&etcd, name, &store, listens[index]);
        nodes[index] = Some(Server::start_in(dirs[index].path(), &options).await);
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    stop.store(true, Ordering::Release);
    let mut values = vec![Vec::new(); OBJECTS];
    let mut failures = Vec::new();
    for seen in workers.join_all().await {
        for (object, acknowledged) in seen.values.into_iter().enumerate() {
            values[object].extend(acknowledged);
        }
        failures.extend(seen.failures);
    }
    assert!(failures.is_empty(), "failed requests: {failures:#?}");
    let c = nodes[2].as_ref().expect("c runs");
    for (object, mut acknowledged) in values.into_iter().enumerate() {
        acknowledged.sort_unstable();
        let count = acknowledged.len() as u64;
        assert!(count > 0, "c{object} got requests");
        assert_eq!(
            acknowledged,
            (1..=count).collect::<Vec<_>>(),
            "c{object}: every acknowledged value exactly once"
        );
        assert_eq!(
            c.get(&format!("/objects/counter/c{object}")).await,
            (200, count.to_string()),
            "c{object} holds every acknowledged increment"
        );
    }

    let code = tokio::time::timeout(Duration::from_secs(10), socket_closed)
        .await
        .expect("the socket through a ended")
        .expect("the reader task");
    assert_eq!(code, Some(CloseCode::Restart), "closed with 1012");
    let b = nodes[1].as_ref().expect("b runs");
    let mut again = b
        .ws("/objects/chat/hall/ws?name=ada")
        .await
        .expect("ada reconnects through b");
    again
        .send(Message::text(
            json!({ "text": "back", "client_id": "m1" }).to_string(),
        ))
        .await
        .expect("sent");
    let heard = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            match again.next().await {
                Some(Ok(Message::Text(text))) if text.contains("back") => return,
                Some(Ok(_)) => continue,
                other => panic!("the reconnected socket ended: {other:?}"),
            }
        }
    })
    .await;
    assert!(heard.is_ok(), "the room works again after the restart");
}

#[tokio::test]
async fn nodes_draining_together_send_new_objects_to_a_node_that_is_not_and_never_to_each_other() {
    let etcd = Etcd::start().await;
    let options = |name| {
        node_options_via(
            &etcd.url(PREFIX),
            name,
            LEASE_TTL,
            "drain_timeout = \"30s\"\n",
        )
    };
    let (a, _a) = Server::start(options("a")).await;
    let (b, _b) = Server::start(options("b")).await;
    let (c, _c) = Server::start(options("c")).await;
    // An object busy for 20 s on a and on b keeps each draining (its
    // listener open) that long after SIGTERM.
    let mut sleeps = JoinSet::new();
    for (server, name) in [(&a, "busy-a"), (&b, "busy-b")] {
        let request = server
            .client
            .post(server.url(&format!("/objects/probe/{name}/sleep?ms=20000")))
            .send();
        sleeps.spawn(async move { request.await.map(|response| response.status().as_u16()) });
    }
    for (name, owner) in [("busy-a", "a"), ("busy-b", "b")] {
        let key = owner_key("probe", name);
        let owned = eventually(Duration::from_secs(5), || {
            let etcd = &etcd;
            let key = key.clone();
            async move { etcd.get(&key).await.as_deref() == Some(owner) }
        })
        .await;
        assert!(owned, "{owner} serves {name}");
    }
    a.terminate();
    b.terminate();
    for (server, node) in [(&a, "a"), (&b, "b")] {
        assert!(marked_draining(&etcd, node, true).await, "{node} drains");
        // The mark goes first; the drain begins as its put returns.
        let draining = eventually(Duration::from_secs(10), || async {
            server
                .log()
                .contains("draining: handing this node's objects over")
        })
        .await;
        assert!(draining, "{node} drains");
    }

    // Each draining node sends an object nobody owns to c, whichever of
    // a and b rendezvous hashing would prefer; none bounces between them.
    for object in 0..16 {
        let name = format!("fresh{object}");
        for (via, expected) in [(&a, "1"), (&b, "2")] {
            assert_eq!(
                via.post(&format!("/objects/counter/{name}"), "").await,
                (200, expected.to_string()),
                "{name} through {}",
                via.base
            );
        }
        assert_eq!(
            etcd.get(&owner_key("counter", &name)).await.as_deref(),
            Some("c")
        );
    }

    // A request that comes back to a draining node it passed (had a
    // mark been missing) goes to none of the nodes it passed: to c, or,
    // once it has passed c too, nowhere.
    assert_eq!(
        post_forwarded(&a, "/objects/counter/around", "b, a").await,
        (200, String::new())
    );
    assert_eq!(
        etcd.get(&owner_key("counter", "around")).await.as_deref(),
        Some("c")
    );
    assert_eq!(
        post_forwarded(&a, "/objects/counter/nowhere", "c, b, a").await,
        (503, "cluster_unavailable".into())
    );

    // With c gone too, nobody takes a new object: 503 at once.
    c.stop().await;
    let (status, body) = a.post("/objects/counter/nobody", "").await;
    assert_eq!(status, 503, "{body}");
    assert!(body.contains("cluster_unavailable"), "{body}");
    assert_eq!(etcd.get(&owner_key("counter", "nobody")).await, None);

    // The busy requests finish where they began, then the nodes leave.
    while let Some(status) = sleeps.join_next().await {
        assert_eq!(status.expect("joined").expect("answered"), 200);
    }
    for node in ["a", "b"] {
        let gone = !marked_draining(&etcd, node, false).await;
        assert!(gone, "{node}'s mark went with its lease");
    }
}

/// Whether `node`'s draining mark is in etcd, once it is `expected` (or
/// 10 s passed).
async fn marked_draining(etcd: &Etcd, node: &str, expected: bool) -> bool {
    let key = format!("/{PREFIX}/draining/{node}");
    let marked = || async { etcd.get(&key).await.is_some() };
    eventually(Duration::from_secs(10), || async {
        marked().await == expected
    })
    .await;
    marked().await
}
