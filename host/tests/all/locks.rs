//! `examples/locks`: locks with a token, a fence and a TTL enforced by alarm.

use std::time::Duration;

use serde_json::{Value, json};

use crate::support::{Options, Server, eventually};

const NAMESPACE: &str = "/objects/locks/jobs";

async fn call(server: &Server, key: &str, action: &str, body: Value) -> (u16, Value) {
    server
        .post_json(&format!("{NAMESPACE}/locks/{key}/{action}"), body)
        .await
}

async fn acquire(server: &Server, key: &str, owner: &str, ttl_ms: u64) -> (u16, Value) {
    call(
        server,
        key,
        "acquire",
        json!({ "owner": owner, "ttl_ms": ttl_ms }),
    )
    .await
}

/// The log, oldest first, as (key, event, owner).
async fn log(server: &Server) -> Vec<(String, String, String)> {
    let (status, body) = server.get_json(&format!("{NAMESPACE}/log")).await;
    assert_eq!(status, 200, "{body}");
    let mut entries: Vec<_> = body
        .as_array()
        .expect("a list")
        .iter()
        .map(|e| {
            let field = |name: &str| e[name].as_str().expect("a string field").to_string();
            (field("key"), field("event"), field("owner"))
        })
        .collect();
    entries.reverse();
    entries
}

fn entry(key: &str, event: &str, owner: &str) -> (String, String, String) {
    (key.into(), event.into(), owner.into())
}

#[tokio::test(flavor = "multi_thread")]
async fn only_the_token_releases_and_fences_grow() {
    let (server, _dir) = Server::start(Options::default()).await;
    let (status, first) = acquire(&server, "report", "worker-1", 60_000).await;
    assert_eq!(status, 200, "{first}");
    let token = first["token"].as_str().expect("a token").to_string();
    assert_eq!(token.len(), 32);

    let (status, busy) = acquire(&server, "report", "worker-2", 60_000).await;
    assert_eq!(status, 409, "{busy}");
    assert_eq!(busy["owner"], "worker-1");
    assert_eq!(busy["expires_at_ms"], first["expires_at_ms"]);

    let (status, state) = server.get_json(&format!("{NAMESPACE}/locks/report")).await;
    assert_eq!(status, 200);
    assert_eq!(state["held"], true);
    assert!(
        state["lock"].get("token").is_none(),
        "the token is never shown to others: {state}"
    );

    let (status, wrong) = call(&server, "report", "release", json!({ "token": "guess" })).await;
    assert_eq!(status, 409, "{wrong}");
    let (status, released) = call(&server, "report", "release", json!({ "token": token })).await;
    assert_eq!(status, 200, "{released}");
    let (status, again) = call(&server, "report", "release", json!({ "token": token })).await;
    assert_eq!(status, 409, "a released lock is not held: {again}");

    let (status, second) = acquire(&server, "report", "worker-2", 60_000).await;
    assert_eq!(status, 200, "{second}");
    assert!(second["fence"].as_i64() > first["fence"].as_i64());
    let (status, other) = acquire(&server, "other-key", "worker-1", 60_000).await;
    assert_eq!(status, 200, "locks on other keys are independent: {other}");
    assert_eq!(
        log(&server).await,
        [
            entry("report", "acquired", "worker-1"),
            entry("report", "released", "worker-1"),
            entry("report", "acquired", "worker-2"),
            entry("other-key", "acquired", "worker-1"),
        ]
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_lock_frees_itself_at_its_ttl() {
    let (server, _dir) = Server::start(Options {
        idle_timeout: "200ms",
        ..Options::default()
    })
    .await;
    let (status, held) = acquire(&server, "cron", "crashed-worker", 800).await;
    assert_eq!(status, 200, "{held}");
    let stale_token = held["token"].clone();

    assert!(
        eventually(Duration::from_secs(10), || async {
            log(&server).await.len() == 2
        })
        .await,
        "the lock expired by alarm: {:?}",
        log(&server).await
    );
    assert_eq!(
        log(&server).await,
        [
            entry("cron", "acquired", "crashed-worker"),
            entry("cron", "expired", "crashed-worker"),
        ]
    );
    let (status, state) = server.get_json(&format!("{NAMESPACE}/locks/cron")).await;
    assert_eq!((status, &state["held"]), (200, &json!(false)), "{state}");
    let (status, _) = call(&server, "cron", "release", json!({ "token": stale_token })).await;
    assert_eq!(status, 409, "the stale token releases nothing");
    let (status, next) = acquire(&server, "cron", "worker-2", 60_000).await;
    assert_eq!(status, 200, "{next}");
}

#[tokio::test(flavor = "multi_thread")]
async fn extending_moves_the_expiry() {
    let (server, _dir) = Server::start(Options::default()).await;
    let (_, held) = acquire(&server, "long-job", "worker-1", 700).await;
    let token = held["token"].clone();
    // The positive control: a lock taken with the same TTL and left alone,
    // in the same object (on the same alarm).
    let (status, control) = acquire(&server, "control", "worker-3", 700).await;
    assert_eq!(status, 200, "{control}");
    let (status, extended) = call(
        &server,
        "long-job",
        "extend",
        json!({ "token": token, "ttl_ms": 60_000 }),
    )
    .await;
    assert_eq!(status, 200, "{extended}");
    assert!(extended["expires_at_ms"].as_i64() > held["expires_at_ms"].as_i64());
    assert!(extended.get("token").is_none());

    // Once the control has expired by alarm, the first TTL has passed and
    // the alarm has run: an expiry of the extended lock would show now.
    assert!(
        eventually(Duration::from_secs(10), || async {
            log(&server).await.len() == 3
        })
        .await,
        "the control lock expired by alarm: {:?}",
        log(&server).await
    );
    let (_, state) = server
        .get_json(&format!("{NAMESPACE}/locks/long-job"))
        .await;
    assert_eq!(
        state["held"], true,
        "still held past the first TTL: {state}"
    );
    assert_eq!(
        log(&server).await,
        [
            entry("long-job", "acquired", "worker-1"),
            entry("control", "acquired", "worker-3"),
            entry("control", "expired", "worker-3"),
        ],
        "only the control expired"
    );

    let (status, wrong) = call(
        &server,
        "long-job",
        "extend",
        json!({ "token": "not-it", "ttl_ms": 1_000 }),
    )
    .await;
    assert_eq!(status, 409, "{wrong}");
    for bad in [json!({ "ttl_ms": 0 }), json!({ "owner": "x" })] {
        let (status, error) = call(&server, "new", "acquire", bad.clone()).await;
        assert_eq!(status, 400, "{bad} -> {error}");
    }
}
