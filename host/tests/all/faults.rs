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
    assert_eq!(parse_json(&body)["error"]["message"], "failing on purpose");

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

/// A guest statement can roll back the whole transaction of a group commit
/// (`INSERT OR ROLLBACK`). Every response must still tell the truth: what
/// was acknowledged is kept, what failed is not there.
#[tokio::test]
async fn a_statement_rolling_back_a_whole_batch_never_leaves_a_lie() {
    let (server, _dir) = Server::start(Options::default()).await;
    assert_eq!(
        server.post("/objects/probe/lost/write", "seed").await.0,
        200
    );
    let mut requests = tokio::task::JoinSet::new();
    for i in 0..90 {
        let client = server.client.clone();
        let (url, body) = if i % 5 == 4 {
            (
                server.url("/objects/probe/lost/sql"),
                serde_json::json!({ "query": "INSERT OR ROLLBACK INTO notes (id, body) VALUES (1, 'clash')" }).to_string(),
            )
        } else {
            (server.url("/objects/probe/lost/write"), format!("w{i}"))
        };
        requests.spawn(async move {
            let response = client
                .post(url)
                .body(body.clone())
                .send()
                .await
                .expect("sent");
            (body, response.status().as_u16())
        });
    }
    let outcomes = requests.join_all().await;
    let (status, body) = server.get("/objects/probe/lost/state").await;
    assert_eq!(status, 200, "{body}");
    let notes: Vec<String> =
        serde_json::from_value(parse_json(&body)["notes"].clone()).expect("notes");
    for (body, status) in outcomes.iter().filter(|(body, _)| body.starts_with('w')) {
        let kept = notes.contains(body);
        match status {
            200 => assert!(kept, "{body} was acknowledged but is missing"),
            _ => assert!(!kept, "{body} was reported failed ({status}) but was kept"),
        }
    }
    assert!(notes.contains(&"seed".to_string()));
    assert!(!notes.contains(&"clash".to_string()));
    server.stop().await;
}

#[tokio::test]
async fn a_deferred_foreign_key_violation_fails_only_its_own_request() {
    let (server, _dir) = Server::start(Options::default()).await;
    for query in [
        "CREATE TABLE parent (id INTEGER PRIMARY KEY)",
        "CREATE TABLE child (p INTEGER REFERENCES parent (id) DEFERRABLE INITIALLY DEFERRED)",
        "INSERT INTO parent VALUES (1)",
    ] {
        let (status, body) = server
            .post_json(
                "/objects/probe/fk/sql",
                serde_json::json!({ "query": query }),
            )
            .await;
        assert_eq!(status, 200, "{query}: {body}");
    }
    let mut requests = tokio::task::JoinSet::new();
    for i in 0..40 {
        let client = server.client.clone();
        let (url, body, expected) = if i % 10 == 0 {
            let orphan =
                serde_json::json!({ "query": "INSERT INTO child VALUES (99)" }).to_string();
            (server.url("/objects/probe/fk/sql"), orphan, 409)
        } else {
            (server.url("/objects/probe/fk/write"), format!("n{i}"), 200)
        };
        requests.spawn(async move {
            let response = client.post(url).body(body).send().await.expect("sent");
            let status = response.status().as_u16();
            let text = response.text().await.unwrap_or_default();
            assert_eq!(status, expected, "{text}");
            if status == 409 {
                assert!(text.contains("constraint_failed"), "{text}");
            }
        });
    }
    requests.join_all().await;
    let (_, body) = server.get("/objects/probe/fk/state").await;
    assert_eq!(
        parse_json(&body)["notes"].as_array().map(Vec::len),
        Some(36),
        "every good write kept: {body}"
    );
    let (_, body) = server
        .post_json(
            "/objects/probe/fk/sql",
            serde_json::json!({ "query": "SELECT count(*) AS n FROM child" }),
        )
        .await;
    assert_eq!(body["rows"][0]["n"], 0, "no orphan kept: {body}");
    server.stop().await;
}
