//! `examples/sessions`: sessions that expire by alarm, through the SDK's
//! `schedule` helper (many timers on one alarm).

use std::time::Duration;

use serde_json::{Value, json};

use crate::support::{Options, Server, eventually};

const STORE: &str = "/objects/sessions/app";

async fn create(server: &Server, ttl_ms: u64, data: Value) -> String {
    let (status, body) = server
        .post_json(
            &format!("{STORE}/sessions"),
            json!({ "ttl_ms": ttl_ms, "data": data }),
        )
        .await;
    assert_eq!(status, 201, "{body}");
    body["id"].as_str().expect("an id").to_string()
}

async fn status_of(server: &Server, id: &str) -> u16 {
    server.get(&format!("{STORE}/sessions/{id}")).await.0
}

/// The ended log, oldest first, as (id, reason).
async fn ended(server: &Server) -> Vec<(String, String)> {
    let (status, body) = server.get_json(&format!("{STORE}/ended")).await;
    assert_eq!(status, 200, "{body}");
    let mut entries: Vec<(String, String)> = body
        .as_array()
        .expect("a list")
        .iter()
        .map(|e| {
            (
                e["id"].as_str().expect("id").to_string(),
                e["reason"].as_str().expect("reason").to_string(),
            )
        })
        .collect();
    entries.reverse();
    entries
}

async fn ended_contains(server: &Server, id: &str, within: Duration) -> bool {
    eventually(within, || async {
        ended(server).await.iter().any(|(ended, _)| ended == id)
    })
    .await
}

#[tokio::test(flavor = "multi_thread")]
async fn a_session_reads_back_then_expires_and_its_cleanup_runs() {
    let (server, _dir) = Server::start(Options::default()).await;
    let short = create(&server, 700, json!({ "user": "ada" })).await;
    let long = create(&server, 3_600_000, json!({ "user": "bob" })).await;
    assert_eq!(short.len(), 32, "ids are 128-bit tokens: {short}");
    assert_ne!(short, long);

    let (status, session) = server.get_json(&format!("{STORE}/sessions/{short}")).await;
    assert_eq!(status, 200, "{session}");
    assert_eq!(session["data"], json!({ "user": "ada" }));

    assert!(
        ended_contains(&server, &short, Duration::from_secs(10)).await,
        "the expired session's cleanup ran"
    );
    assert_eq!(ended(&server).await, [(short.clone(), "expired".into())]);
    assert_eq!(
        status_of(&server, &short).await,
        404,
        "an expired session is gone"
    );
    assert_eq!(status_of(&server, &long).await, 200, "the other one lives");
    let (_, live) = server.get_json(&format!("{STORE}/sessions")).await;
    assert_eq!(live.as_array().map(Vec::len), Some(1), "{live}");
}

#[tokio::test(flavor = "multi_thread")]
async fn sessions_expire_in_order_from_one_alarm() {
    let (server, _dir) = Server::start(Options::default()).await;
    let mut ids = Vec::new();
    // Created out of order: the alarm must follow the earliest each time.
    for ttl in [1_500, 300, 1_200, 600, 900] {
        ids.push((ttl, create(&server, ttl, json!(ttl)).await));
    }
    assert!(
        eventually(Duration::from_secs(15), || async {
            ended(&server).await.len() == ids.len()
        })
        .await,
        "all five expired: {:?}",
        ended(&server).await
    );
    ids.sort();
    let expected: Vec<(String, String)> = ids
        .into_iter()
        .map(|(_, id)| (id, "expired".to_string()))
        .collect();
    assert_eq!(ended(&server).await, expected, "earliest first");
}

#[tokio::test(flavor = "multi_thread")]
async fn touch_extends_and_delete_ends_without_a_later_expiry() {
    let (server, _dir) = Server::start(Options::default()).await;
    let id = create(&server, 800, json!(null)).await;
    let (status, touched) = server
        .post_json(
            &format!("{STORE}/sessions/{id}/touch"),
            json!({ "ttl_ms": 60_000 }),
        )
        .await;
    assert_eq!(status, 200, "{touched}");
    // The positive control: a session made after it with the same TTL and
    // not touched. Once it has expired by alarm, the first expiry was due
    // and the alarm has run.
    let control = create(&server, 800, json!(null)).await;
    assert!(
        ended_contains(&server, &control, Duration::from_secs(10)).await,
        "the untouched session expired"
    );
    assert_eq!(status_of(&server, &id).await, 200, "touch moved the expiry");
    assert_eq!(
        ended(&server).await,
        [(control.clone(), "expired".to_string())],
        "only the untouched session ended"
    );

    let (status, body) = server.delete(&format!("{STORE}/sessions/{id}")).await;
    assert_eq!(status, 204, "{body}");
    assert_eq!(status_of(&server, &id).await, 404);
    assert_eq!(
        ended(&server).await,
        [
            (control, "expired".to_string()),
            (id.clone(), "ended".to_string())
        ]
    );
    let (status, _) = server.delete(&format!("{STORE}/sessions/{id}")).await;
    assert_eq!(status, 404, "ending twice is a 404");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_hibernated_store_wakes_to_expire_its_sessions() {
    let (server, _dir) = Server::start(Options {
        idle_timeout: "200ms",
        ..Options::default()
    })
    .await;
    let id = create(&server, 1_500, json!("sleepy")).await;
    assert!(
        server
            .metric_becomes("podhost_objects_active", Duration::from_secs(5), |n| n == 0)
            .await,
        "the store hibernates before the session expires"
    );
    assert!(
        server
            .metric_becomes("podhost_alarms_fired_total", Duration::from_secs(10), |n| {
                n >= 1
            })
            .await,
        "the alarm woke it"
    );
    assert_eq!(ended(&server).await, [(id, "expired".into())]);
}

#[tokio::test(flavor = "multi_thread")]
async fn bad_requests_get_clear_errors() {
    let (server, _dir) = Server::start(Options::default()).await;
    let path = format!("{STORE}/sessions");
    for (body, what) in [
        (json!({ "ttl_ms": 0 }), "ttl_ms"),
        (json!({ "ttl_ms": -5 }), "ttl_ms"),
        (json!({ "ttl_ms": "soon" }), "invalid JSON"),
    ] {
        let (status, error) = server.post_json(&path, body.clone()).await;
        assert_eq!(status, 400, "{body} -> {error}");
        assert!(
            error["error"]["message"]
                .as_str()
                .is_some_and(|e| e.contains(what)),
            "{body} -> {error}"
        );
    }
    let (status, _) = server.post(&path, "not json").await;
    assert_eq!(status, 400);
    assert_eq!(
        status_of(&server, "0123456789abcdef0123456789abcdef").await,
        404
    );
}
