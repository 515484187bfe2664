//! Several nodes (`podhost serve --cluster etcd://...`) on one real etcd:
//! membership under leases, one owner per object, requests forwarded to
//! the owner (HTTP, WebSocket, SSE).

use std::sync::Arc;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use podhost::object::ObjectAddr;
use serde_json::json;
use tokio::task::JoinSet;
use tokio_tungstenite::tungstenite::Message;

use crate::cluster_support::{
    Etcd, PREFIX, address, file_store, node, node_options, node_with, owner_key, post_forwarded,
    stored_epochs,
};
use crate::support::{Options, Server, eventually};

#[tokio::test]
async fn each_node_registers_its_address_under_a_lease_and_objects_get_one_owner() {
    let etcd = Etcd::start().await;
    let (a, _a) = node(&etcd, "a").await;
    let (b, _b) = node(&etcd, "b").await;
    assert_eq!(
        etcd.get(&format!("/{PREFIX}/nodes/a")).await,
        Some(address(&a))
    );
    assert_eq!(
        etcd.get(&format!("/{PREFIX}/nodes/b")).await,
        Some(address(&b))
    );

    // The node that first serves an object owns it; the other forwards.
    assert_eq!(a.post("/objects/counter/x", "").await, (200, "1".into()));
    assert_eq!(
        etcd.get(&owner_key("counter", "x")).await.as_deref(),
        Some("a")
    );
    assert_eq!(b.post("/objects/counter/x", "").await, (200, "2".into()));
    assert_eq!(b.get("/objects/counter/y").await, (200, "0".into()));
    assert_eq!(
        etcd.get(&owner_key("counter", "y")).await.as_deref(),
        Some("b")
    );
    assert_eq!(a.post("/objects/counter/y", "").await, (200, "1".into()));
    assert_eq!(
        etcd.get(&owner_key("counter", "x")).await.as_deref(),
        Some("a")
    );
}

#[tokio::test]
async fn a_forwarded_request_for_an_object_the_node_does_not_own_is_refused_not_forwarded_again() {
    let etcd = Etcd::start().await;
    let (a, _a) = node(&etcd, "a").await;
    let (b, _b) = node(&etcd, "b").await;
    assert_eq!(a.post("/objects/counter/loop", "").await, (200, "1".into()));
    assert_eq!(
        post_forwarded(&b, "/objects/counter/loop", "someone").await,
        (503, "not_owner".into())
    );
    // Nothing was counted by the refused request.
    assert_eq!(b.get("/objects/counter/loop").await, (200, "1".into()));
}

#[tokio::test]
async fn rendezvous_placement_spreads_objects_over_the_nodes_whichever_node_their_traffic_reaches()
{
    let etcd = Etcd::start().await;
    let rendezvous = "placement = \"rendezvous\"\n";
    let (a, _a) = node_with(&etcd, "a", rendezvous).await;
    let (_b, _b_dir) = node_with(&etcd, "b", rendezvous).await;
    let (_c, _c_dir) = node_with(&etcd, "c", rendezvous).await;
    // c registered before it listened; a's watch of the nodes hears of
    // it at once (and the first objects may place before: a test over 30
    // objects fails only if a never heard of some node).
    let names: Vec<String> = (0..30).map(|i| format!("spread-{i}")).collect();
    let mut owners = std::collections::BTreeMap::<String, usize>::new();
    for name in &names {
        // All traffic reaches a; the object goes where hashing prefers.
        assert_eq!(
            a.post(&format!("/objects/counter/{name}"), "").await,
            (200, "1".into())
        );
        let owner = etcd
            .get(&owner_key("counter", name))
            .await
            .expect("an owner");
        *owners.entry(owner).or_default() += 1;
    }
    assert_eq!(owners.len(), 3, "owners per node: {owners:?}");
    // Each served by its owner through a again.
    for name in &names {
        assert_eq!(
            a.post(&format!("/objects/counter/{name}"), "").await,
            (200, "2".into())
        );
    }
}

#[tokio::test]
async fn a_node_refuses_unknown_classes_and_announced_oversized_bodies_before_asking_etcd() {
    let etcd = Etcd::start().await;
    let small = |name| Options {
        max_body_bytes: 1024,
        ..node_options(&etcd, name, "")
    };
    let (a, _a) = Server::start(small("a")).await;
    let (b, _b) = Server::start(small("b")).await;
    assert_eq!(a.post("/objects/counter/big", "").await, (200, "1".into()));

    // Through the non-owner: refused there, never forwarded.
    let (status, body) = b.post("/objects/counter/big", "x".repeat(4096)).await;
    assert_eq!(status, 413, "{body}");
    assert_eq!(b.get("/objects/counter/big").await, (200, "1".into()));
    // Refused before the cluster is asked: nobody takes the object.
    let (status, _) = b.post("/objects/counter/unowned", "x".repeat(4096)).await;
    assert_eq!(status, 413);
    assert_eq!(etcd.get(&owner_key("counter", "unowned")).await, None);

    // A class nobody deployed gets no owner key.
    let (status, _) = b.post("/objects/no-such-class/x", "").await;
    assert_eq!(status, 404);
    assert_eq!(etcd.get(&owner_key("no-such-class", "x")).await, None);
}

#[tokio::test]
async fn concurrent_posts_round_robin_over_three_nodes_count_each_value_exactly_once() {
    const OBJECTS: usize = 8;
    const POSTS: usize = 60;
    let etcd = Etcd::start().await;
    let mut nodes = Vec::new();
    let mut dirs = Vec::new();
    for name in ["a", "b", "c"] {
        let (server, dir) = node(&etcd, name).await;
        nodes.push(Arc::new(server));
        dirs.push(dir);
    }
    let mut requests = JoinSet::new();
    for object in 0..OBJECTS {
        for post in 0..POSTS {
            let server = Arc::clone(&nodes[(object + post) % nodes.len()]);
            requests.spawn(async move {
                let (status, body) = server
                    .post(&format!("/objects/counter/o{object}"), "")
                    .await;
                assert_eq!(status, 200, "{body}");
                (object, body.parse::<usize>().expect("a count"))
            });
        }
    }
    let mut seen = vec![Vec::new(); OBJECTS];
    for (object, count) in requests.join_all().await {
        seen[object].push(count);
    }
    for (object, mut counts) in seen.into_iter().enumerate() {
        counts.sort_unstable();
        assert_eq!(
            counts,
            (1..=POSTS).collect::<Vec<_>>(),
            "object o{object}: every value exactly once"
        );
    }
    let mut owners = Vec::new();
    for object in 0..OBJECTS {
        let owner = etcd.get(&owner_key("counter", &format!("o{object}"))).await;
        assert!(owner.is_some(), "o{object} has an owner");
        owners.push(owner);
    }
    // Every node answers the final count, whoever owns the object.
    for server in &nodes {
        assert_eq!(
            server.get("/objects/counter/o0").await,
            (200, POSTS.to_string())
        );
    }
}

#[tokio::test]
async fn a_websocket_and_an_event_stream_opened_through_other_nodes_reach_the_owner() {
    let etcd = Etcd::start().await;
    let (a, _a) = node(&etcd, "a").await;
    let (b, _b) = node(&etcd, "b").await;
    let (c, _c) = node(&etcd, "c").await;
    assert_eq!(a.get("/objects/chat/room/presence").await.0, 200);
    assert_eq!(
        etcd.get(&owner_key("chat", "room")).await.as_deref(),
        Some("a")
    );

    let mut events = b.events("/objects/chat/room/_events", None).await;
    let mut ada = c
        .ws("/objects/chat/room/ws?name=ada")
        .await
        .expect("ada joins via c");
    let mut bob = b
        .ws("/objects/chat/room/ws?name=bob")
        .await
        .expect("bob joins via b");
    ada.send(Message::text(
        json!({ "text": "hello", "client_id": "m1" }).to_string(),
    ))
    .await
    .expect("sent");
    let heard = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            match bob.next().await {
                Some(Ok(Message::Text(text))) if text.contains("hello") => return text.to_string(),
                Some(Ok(_)) => continue,
                other => panic!("bob's socket ended: {other:?}"),
            }
        }
    })
    .await
    .expect("bob hears ada within 10 s");
    assert!(
        heard.contains("\"message\"") || heard.contains("hello"),
        "{heard}"
    );
    let event = events.next().await;
    assert_eq!(event.event, "message");
    assert!(event.data.contains("hello"), "{}", event.data);

    // A close from the client reaches the owner: bob's presence ends.
    ada.close(None).await.expect("closed");
    let left = eventually(Duration::from_secs(10), || async {
        let (_, presence) = a.get_json("/objects/chat/room/presence").await;
        !presence.to_string().contains("ada")
    })
    .await;
    assert!(left, "ada's close reached the owner");
}

#[tokio::test]
async fn a_node_that_loses_etcd_stops_serving_its_objects_once_its_lease_may_have_expired() {
    let mut etcd = Etcd::start().await;
    let (a, _a) = node(&etcd, "a").await;
    assert_eq!(
        a.post("/objects/counter/fenced", "").await,
        (200, "1".into())
    );
    etcd.kill().await;
    // lease_ttl is 3 s: within it the node may still serve; past it, never.
    let refused = eventually(Duration::from_secs(10), || async {
        let response = a
            .client
            .post(a.url("/objects/counter/fenced"))
            .send()
            .await
            .expect("a response");
        if response.status() != 503 {
            return false;
        }
        let body: serde_json::Value = response.json().await.expect("JSON");
        body["error"]["code"] == "cluster_unavailable"
    })
    .await;
    assert!(
        refused,
        "the node refused the object after losing its lease"
    );
    // Nor does it take new objects without a lease.
    assert_eq!(a.get("/objects/counter/new").await.0, 503);
}

#[tokio::test]
async fn every_segment_an_owner_ships_carries_its_ownerships_revision_as_the_fencing_epoch() {
    let etcd = Etcd::start().await;
    let (store, replication) = file_store();
    let (a, _a) = node_with(&etcd, "a", &replication).await;
    let (b, _b) = node_with(&etcd, "b", &replication).await;
    for expected in 1..=3 {
        assert_eq!(
            b.post("/objects/counter/fenced", "").await,
            (200, expected.to_string())
        );
    }
    let key = owner_key("counter", "fenced");
    assert_eq!(etcd.get(&key).await.as_deref(), Some("b"));
    let epoch = etcd.create_revision(&key).await.expect("an owner key");
    assert!(epoch > 0);
    // Shipping is asynchronous: wait for the snapshot and the segments.
    let object_dir = store
        .path()
        .join("counter")
        .join(ObjectAddr::new("counter", "fenced").id());
    let shipped = eventually(Duration::from_secs(10), || {
        let object_dir = object_dir.clone();
        async move { object_dir.exists() && stored_epochs(&object_dir).len() >= 2 }
    })
    .await;
    assert!(shipped, "the owner shipped its commits");
    let epochs = stored_epochs(&object_dir);
    assert!(
        epochs.iter().all(|stored| *stored == epoch),
        "every piece carries epoch {epoch}: {epochs:?}"
    );
    // Through the other node, the same object and the same epoch.
    assert_eq!(
        a.post("/objects/counter/fenced", "").await,
        (200, "4".into())
    );
    assert_eq!(etcd.create_revision(&key).await, Some(epoch));
}

#[tokio::test]
async fn an_object_that_hibernates_is_let_go_and_the_next_node_restores_it_from_the_store() {
    let etcd = Etcd::start().await;
    let (_store, replication) = file_store();
    let hibernating = |node| Options {
        idle_timeout: "1s",
        ..node_options(&etcd, node, &replication)
    };
    let (a, _a) = Server::start(hibernating("a")).await;
    let (b, _b) = Server::start(hibernating("b")).await;
    for expected in 1..=3 {
        assert_eq!(
            a.post("/objects/counter/nomad", "").await,
            (200, expected.to_string())
        );
    }
    let key = owner_key("counter", "nomad");
    let released = eventually(Duration::from_secs(10), || async {
        etcd.get(&key).await.is_none()
    })
    .await;
    assert!(released, "a let the object go after it hibernated");
    // b restores a's three hits, adds one.
    assert_eq!(
        b.post("/objects/counter/nomad", "").await,
        (200, "4".into())
    );
    let last_owner = key.replace("/owners/", "/last-owner/");
    assert_eq!(etcd.get(&last_owner).await.as_deref(), Some("b"));
    let released = eventually(Duration::from_secs(10), || async {
        etcd.get(&key).await.is_none()
    })
    .await;
    assert!(released, "b let the object go after it hibernated");
    // Back to a, which restores b's history rather than serve its own
    // older copy (3).
    assert_eq!(
        a.post("/objects/counter/nomad", "").await,
        (200, "5".into())
    );
    assert_eq!(etcd.get(&last_owner).await.as_deref(), Some("a"));
}
