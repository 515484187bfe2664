//! Alarms and activation in a cluster: an alarm of a dead node's object
//! runs on the node that takes the object (the alarm index every node
//! reads is in etcd), an alarm of a live node's object runs only there,
//! and an object runs only on its owner whatever activates it (another
//! object's call, a message on a socket held by another node).

use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use podhost::object::ObjectAddr;
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;

use crate::cluster_support::{Etcd, PREFIX, file_store, node_options, owner_key};
use crate::support::{Options, Server, eventually, parse_json};

/// `<prefix>/alarms/<class>/<id>`: the object's alarm entry in etcd.
fn alarm_key(class: &str, name: &str) -> String {
    format!(
        "/{PREFIX}/alarms/{class}/{}",
        ObjectAddr::new(class, name).id()
    )
}

/// Nodes a and b on `etcd` sharing a `file://` store, each with the
/// options `options` makes of its own; the store and the nodes' data
/// directories live as long as the result.
struct Pair {
    a: Server,
    b: Server,
    _dirs: [tempfile::TempDir; 3],
}

async fn pair(etcd: &Etcd, options: impl Fn(Options) -> Options) -> Pair {
    let (store, replication) = file_store();
    let (a, a_dir) = Server::start(options(node_options(etcd, "a", &replication))).await;
    let (b, b_dir) = Server::start(options(node_options(etcd, "b", &replication))).await;
    Pair {
        a,
        b,
        _dirs: [store, a_dir, b_dir],
    }
}

/// Commits durable in the store before they are acknowledged.
fn replicated(options: Options) -> Options {
    Options {
        durability: "replicated",
        ..options
    }
}

async fn alarm_state(server: &Server, name: &str) -> Value {
    let (status, body) = server.get(&format!("/objects/probe/{name}/alarm")).await;
    assert_eq!(status, 200, "{body}");
    parse_json(&body)
}

#[tokio::test]
async fn an_alarm_set_on_an_object_whose_node_dies_fires_once_on_the_node_that_takes_it() {
    let etcd = Etcd::start().await;
    let Pair { a, b, _dirs } = pair(&etcd, replicated).await;
    let (status, body) = a
        .post("/objects/probe/orphan/alarm/set?in_ms=4000", "")
        .await;
    assert_eq!(status, 200, "{body}");
    let at_ms = parse_json(&body)["at_ms"].clone();
    assert!(at_ms.is_u64(), "{body}");
    // Every node can read the alarm: its entry was in etcd before the
    // commit that set it.
    let key = alarm_key("probe", "orphan");
    let entry = etcd.get(&key).await.expect("the alarm's entry in etcd");
    assert_eq!(
        parse_json(&entry),
        json!({ "name": "orphan", "at_ms": at_ms })
    );
    a.kill().await;
    // Nobody asks for the object: only the entry in etcd can wake it.
    // Once a's lease (3 s) has expired, b takes the object, restores it
    // from the store and runs the alarm, which clears the entry.
    let ran = eventually(Duration::from_secs(30), || async {
        etcd.get(&key).await.is_none()
    })
    .await;
    assert!(ran, "the alarm ran within 30 s of its node's death");
    assert_eq!(b.metric("podhost_alarms_fired_total").await, 1);
    let last_owner = owner_key("probe", "orphan").replace("/owners/", "/last-owner/");
    assert_eq!(etcd.get(&last_owner).await.as_deref(), Some("b"));
    let state = alarm_state(&b, "orphan").await;
    assert_eq!(state["fires"], json!([0]), "it ran once, on a's state");
    assert!(
        state["at_ms"].is_null(),
        "a fired alarm is cleared: {state}"
    );
}

#[tokio::test]
async fn an_alarm_due_on_an_object_another_live_node_owns_runs_only_on_that_node() {
    let etcd = Etcd::start().await;
    let Pair { a, b, _dirs } = pair(&etcd, replicated).await;
    // The handler runs 4 s: its entry stays due in etcd (it is cleared
    // only after the commit) long past the second other nodes wait, so
    // b looks at it several times while a runs it.
    let (status, body) = a
        .post(
            "/objects/probe/homebody/alarm/set?in_ms=1000&sleep_ms=4000",
            "",
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let key = alarm_key("probe", "homebody");
    assert!(etcd.get(&key).await.is_some(), "the entry is in etcd");
    assert!(
        a.metric_becomes("podhost_alarms_fired_total", Duration::from_secs(20), |n| n
            == 1)
            .await,
        "the alarm ran on a, its object's owner"
    );
    let cleared = eventually(Duration::from_secs(10), || async {
        etcd.get(&key).await.is_none()
    })
    .await;
    assert!(cleared, "the entry is cleared once the alarm ran");
    assert_eq!(b.metric("podhost_alarms_fired_total").await, 0);
    assert_eq!(
        b.metric("podhost_activations_total").await,
        0,
        "b never activated the object"
    );
    assert_eq!(alarm_state(&a, "homebody").await["fires"], json!([0]));
    assert_eq!(
        etcd.get(&owner_key("probe", "homebody")).await.as_deref(),
        Some("a")
    );
}

#[tokio::test]
async fn a_call_to_an_object_another_node_owns_is_refused_rather_than_run_a_second_time() {
    let etcd = Etcd::start().await;
    let (a, _a) = Server::start(node_options(&etcd, "a", "")).await;
    let (b, _b) = Server::start(node_options(&etcd, "b", "")).await;
    assert_eq!(
        a.post("/objects/relay/target/count", "").await,
        (200, "1".into())
    );
    // The caller is b's (nobody owned it); its callee is a's.
    let (status, body) = b.post("/objects/relay/caller/call/relay/target", "").await;
    assert_eq!(status, 503, "{body}");
    let answer = parse_json(&body);
    assert_eq!(answer["failed_status"], 503, "{body}");
    let message = answer["message"].as_str().unwrap_or_default();
    assert!(message.contains("runs on node a"), "{body}");
    assert_eq!(
        etcd.get(&owner_key("relay", "caller")).await.as_deref(),
        Some("b")
    );
    assert_eq!(
        etcd.get(&owner_key("relay", "target")).await.as_deref(),
        Some("a")
    );
    // The target was not run on b: a's copy has the only count.
    assert_eq!(
        a.post("/objects/relay/target/count", "").await,
        (200, "2".into())
    );
}

#[tokio::test]
async fn a_socket_whose_object_moved_to_another_node_is_closed_for_its_client_to_reconnect() {
    let etcd = Etcd::start().await;
    let hibernating = |options| Options {
        idle_timeout: "1s",
        ..options
    };
    let Pair { a, b, _dirs } = pair(&etcd, hibernating).await;
    let mut socket = a
        .ws("/objects/probe/wanderer")
        .await
        .expect("a socket through a");
    let key = owner_key("probe", "wanderer");
    assert_eq!(etcd.get(&key).await.as_deref(), Some("a"));
    // It hibernates on a (whose host keeps the socket) and is let go;
    // then b takes it.
    let released = eventually(Duration::from_secs(10), || async {
        etcd.get(&key).await.is_none()
    })
    .await;
    assert!(released, "a let the object go after it hibernated");
    assert_eq!(b.get("/objects/probe/wanderer/alarm").await.0, 200);
    assert_eq!(etcd.get(&key).await.as_deref(), Some("b"));
    let activations = a.metric("podhost_activations_total").await;
    socket
        .send(Message::text("publish:hello"))
        .await
        .expect("sent");
    // a does not wake its own copy for the message: it closes the
    // socket with 1012, and a reconnect (through any node) reaches b.
    let code = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            match socket.next().await {
                Some(Ok(Message::Close(Some(frame)))) => return u16::from(frame.code),
                Some(Ok(_)) => continue,
                other => panic!("the socket ended without a close frame: {other:?}"),
            }
        }
    })
    .await
    .expect("the socket is closed within 10 s");
    assert_eq!(code, 1012);
    assert_eq!(a.metric("podhost_activations_total").await, activations);
    assert_eq!(etcd.get(&key).await.as_deref(), Some("b"));
}
