//! Idle objects hibernate and wake with their data, and with nothing of
//! their old instance's memory.

use std::time::Duration;

use crate::support::{Options, Server, eventually, parse_json};

#[tokio::test]
async fn idle_objects_hibernate_and_wake_with_their_data() {
    let options = Options {
        idle_timeout: "300ms",
        ..Options::default()
    };
    let (server, _dir) = Server::start(options).await;
    server.post("/objects/counter/sleepy", "").await;
    server.post("/objects/counter/sleepy", "").await;
    assert_eq!(server.metric("podhost_objects_active").await, 1);
    assert_eq!(server.metric("podhost_activations_total").await, 1);

    let hibernated = server
        .metric_becomes("podhost_objects_active", Duration::from_secs(10), |n| {
            n == 0
        })
        .await;
    assert!(hibernated, "the object hibernated after its idle timeout");
    assert_eq!(server.metric("podhost_hibernations_total").await, 1);

    assert_eq!(
        server.get("/objects/counter/sleepy").await,
        (200, "2".into())
    );
    assert_eq!(
        server.metric("podhost_activations_total").await,
        2,
        "it woke as a new instance"
    );
    assert_eq!(server.metric("podhost_objects_active").await, 1);
    server.stop().await;
}

#[tokio::test]
async fn thousands_of_objects_stay_within_max_active_and_keep_their_data() {
    let options = Options {
        max_active: 16,
        ..Options::default()
    };
    let (server, _dir) = Server::start(options).await;
    const OBJECTS: usize = 2000;
    const CONCURRENCY: usize = 8;
    let mut peak_files = 0;
    for wave in 0..OBJECTS / CONCURRENCY {
        let mut requests = tokio::task::JoinSet::new();
        for i in 0..CONCURRENCY {
            let request = server
                .client
                .post(server.url(&format!("/objects/counter/many-{}", wave * CONCURRENCY + i)))
                .send();
            requests.spawn(async move {
                let response = request.await.expect("request sent");
                let status = response.status().as_u16();
                (status, response.text().await.expect("body"))
            });
        }
        for (status, body) in requests.join_all().await {
            assert_eq!((status, body.as_str()), (200, "1"));
        }
        if wave % 25 == 0 {
            peak_files = peak_files.max(server.open_files());
        }
    }
    let active = server.metric("podhost_objects_active").await;
    assert!(
        active <= (16 + CONCURRENCY) as u64,
        "{active} objects active with max_active = 16"
    );
    assert!(server.metric("podhost_evictions_total").await > (OBJECTS / 2) as u64);
    assert!(peak_files < 250, "open files stay bounded: {peak_files}");

    for i in (0..OBJECTS).step_by(97) {
        assert_eq!(
            server.get(&format!("/objects/counter/many-{i}")).await,
            (200, "1".into()),
            "object {i}"
        );
    }
    server.stop().await;
}

/// Freed instances' memory slots are reset in place and reused: what one
/// instance kept in memory must reach neither the next object in its slot
/// nor its own object's next instance. The text is longer than the part
/// reset in place, so both ways of resetting are covered.
#[tokio::test]
async fn a_reused_instance_slot_holds_nothing_of_its_last_object() {
    let options = Options {
        max_active: 1,
        ..Options::default()
    };
    let (server, _dir) = Server::start(options).await;
    let secret = "secret-".repeat(40_000);
    let memory = |text: &str| parse_json(text);
    assert_eq!(
        server
            .post("/objects/probe/first/memory", secret.clone())
            .await,
        (200, "kept".into())
    );
    let (status, kept) = server.get("/objects/probe/first/memory").await;
    assert_eq!(status, 200);
    assert_eq!(memory(&kept)["bytes"], secret.len(), "kept while live");

    // With max_active = 1 each of these evicts the one before; there are
    // more of them than the pool has slots (max_active plus headroom).
    for n in 0..40 {
        let (status, seen) = server
            .get(&format!("/objects/probe/other-{n}/memory"))
            .await;
        assert_eq!(status, 200);
        assert_eq!(memory(&seen)["bytes"], 0, "other-{n} saw {seen}");
    }
    // The last eviction finishes after the request that caused it answers.
    assert!(
        eventually(Duration::from_secs(10), || async {
            server.metric("podhost_evictions_total").await >= 40
        })
        .await
    );
    let (status, seen) = server.get("/objects/probe/first/memory").await;
    assert_eq!(status, 200);
    assert_eq!(
        memory(&seen)["bytes"],
        0,
        "a new instance starts empty: {seen}"
    );
    server.stop().await;
}
