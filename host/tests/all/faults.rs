//! Events that fail: traps and error responses roll back, and hurt nobody
//! else.

use crate::support::{Options, Server, parse_json};

#[tokio::test]
async fn a_trap_rolls_back_its_writes_and_the_object_recovers() {
    let (server, _dir) = Server::start(Options::default()).await;
    assert_eq!(server.post("/objects/probe/t/write", "kept").await.0, 200);
    assert_eq!(
        server.post("/objects/counter/bystander", "").await,
        (200, "1".into())
    );
    let activations = server.metric("podhost_activations_total").await;

    let (status, body) = server
        .post("/objects/probe/t/write-then-trap", "lost")
        .await;
    assert_eq!(status, 500, "{body}");
    let error = parse_json(&body);
    assert_eq!(error["error"]["code"], "object_trapped");
    assert!(
        !body.contains("on purpose"),
        "the trap's message stays in the host log: {body}"
    );
    assert_eq!(server.metric("podhost_event_failures_total").await, 1);

    let (status, body) = server.post("/objects/probe/t/write", "after").await;
    assert_eq!(status, 200);
    let state = parse_json(&body);
    assert_eq!(
        state["notes"],
        serde_json::json!(["kept", "after"]),
        "the trapped writes are gone"
    );
    assert_eq!(state["last"], "after");
    assert_eq!(
        server.metric("podhost_activations_total").await,
        activations + 1,
        "the trapped instance was replaced by a new one"
    );
    assert_eq!(
        server.post("/objects/counter/bystander", "").await,
        (200, "2".into())
    );
    assert!(
        server.log().contains("trapping on purpose"),
        "the guest's panic message reaches the host log"
    );
    server.stop().await;
}

#[tokio::test]
async fn an_error_response_rolls_back_sql_and_kv_together() {
    let (server, _dir) = Server::start(Options::default()).await;
    let (status, body) = server.post("/objects/probe/f/write", "first").await;
    assert_eq!(status, 200);
    let state = parse_json(&body);
    assert_eq!(state["notes"], serde_json::json!(["first"]));
    assert_eq!(state["last"], "first");

    let (status, body) = server
        .post("/objects/probe/f/write-then-fail", "second")
        .await;
    assert_eq!(status, 409);
    assert_eq!(parse_json(&body)["error"], "failing on purpose");

    let (status, body) = server.get("/objects/probe/f/state").await;
    assert_eq!(status, 200);
    let state = parse_json(&body);
    assert_eq!(
        state["notes"],
        serde_json::json!(["first"]),
        "the SQL write rolled back"
    );
    assert_eq!(state["last"], "first", "the KV write rolled back with it");
    server.stop().await;
}

#[tokio::test]
async fn failures_inside_a_group_commit_roll_back_only_their_own_writes() {
    let (server, _dir) = Server::start(Options::default()).await;
    let mut requests = tokio::task::JoinSet::new();
    for i in 0..90 {
        let (route, expected) = match i % 3 {
            0 => ("write", 200),
            1 => ("write-then-fail", 409),
            _ => ("write-then-trap", 500),
        };
        let request = server
            .client
            .post(server.url(&format!("/objects/probe/batch/{route}")))
            .body(format!("{route}-{i}"))
            .send();
        requests.spawn(async move {
            let response = request.await.expect("request sent");
            assert_eq!(response.status().as_u16(), expected, "{route}-{i}");
        });
    }
    requests.join_all().await;

    let (status, body) = server.get("/objects/probe/batch/state").await;
    assert_eq!(status, 200, "{body}");
    let state = parse_json(&body);
    let mut notes: Vec<String> = serde_json::from_value(state["notes"].clone()).expect("notes");
    notes.sort();
    let mut expected: Vec<String> = (0..90).step_by(3).map(|i| format!("write-{i}")).collect();
    expected.sort();
    assert_eq!(
        notes, expected,
        "exactly the successful events' writes were kept"
    );
    assert!(
        state["last"]
            .as_str()
            .is_some_and(|last| last.starts_with("write-")),
        "{state}"
    );
    server.stop().await;
}
