//! The in-process harness itself (`podhost::testing`): what an app
//! author's `cargo test` of a class does, on the example classes.

use std::time::Duration;

use podhost::testing::SocketFrame;
use serde_json::json;

use crate::support::harness;

#[tokio::test]
async fn a_class_is_tested_without_a_server() {
    let harness = harness().await;
    let counter = harness.object("counter", "alice");
    assert_eq!(counter.post("/", "").await.expect("a response").text(), "1");
    assert_eq!(counter.post("/", "").await.expect("a response").text(), "2");
    // The gateway's own answers come through the router too.
    let missing = harness
        .object("nope", "x")
        .get("/")
        .await
        .expect("a response");
    assert_eq!(missing.status, 404);
    assert!(missing.json().expect("JSON")["error"]["code"].is_string());

    // The object's tables, read between its events.
    let tables = counter
        .sql(
            "SELECT name FROM sqlite_schema WHERE type = 'table' AND name NOT LIKE '\\_%' ESCAPE '\\'",
            &[],
        )
        .await
        .expect("the schema");
    assert!(!tables.is_empty(), "the counter has a table: {tables:?}");
    let refused = counter.sql("DELETE FROM sqlite_schema", &[]).await;
    assert!(refused.is_err(), "the harness only reads");
    // The object opens again after being read.
    assert_eq!(counter.post("/", "").await.expect("a response").text(), "3");
    assert!(
        harness
            .object("counter", "never")
            .sql("SELECT 1", &[])
            .await
            .is_err(),
        "an object without a database has nothing to read"
    );
    harness.shut_down().await;
}

#[tokio::test]
async fn sql_reads_what_the_object_wrote() {
    let harness = harness().await;
    let probe = harness.object("probe", "notes");
    assert_eq!(
        probe.post("/write", "hello").await.expect("write").status,
        200
    );
    let rows = probe
        .sql("SELECT body FROM notes WHERE body = ?1", &[json!("hello")])
        .await
        .expect("rows");
    assert_eq!(rows, vec![json!({ "body": "hello" })]);
    harness.shut_down().await;
}

#[tokio::test]
async fn alarms_fire_when_the_test_advances_them() {
    let harness = harness().await;
    let probe = harness.object("probe", "sleeper");
    let set = probe
        .post("/alarm/set?in_ms=3600000", "")
        .await
        .expect("set");
    assert_eq!(set.status, 200, "{}", set.text());
    let state = probe
        .get("/alarm")
        .await
        .expect("state")
        .json()
        .expect("JSON");
    assert!(state["at_ms"].is_u64(), "the alarm is set: {state}");
    assert_eq!(state["fires"], json!([]));

    // Not due yet: nothing fires now.
    assert_eq!(harness.fire_due_alarms().await.expect("fired"), 0);
    assert_eq!(
        probe
            .get("/alarm")
            .await
            .expect("state")
            .json()
            .expect("JSON")["fires"],
        json!([])
    );
    // An hour and a bit later, without waiting for it.
    let fired = harness
        .advance_alarms_by(Duration::from_secs(3601))
        .await
        .expect("fired");
    assert_eq!(fired, 1);
    let state = probe
        .get("/alarm")
        .await
        .expect("state")
        .json()
        .expect("JSON");
    assert_eq!(state, json!({ "at_ms": null, "fires": [0] }));
    assert_eq!(harness.fire_due_alarms().await.expect("fired"), 0, "once");
    harness.shut_down().await;
}

#[tokio::test]
async fn sockets_open_exchange_messages_and_close() {
    let harness = harness().await;
    let room = harness.object("chat", "lobby");
    let refused = room.socket("/elsewhere").await.expect("socket-open ran");
    let Err(response) = refused else {
        panic!("the chat refuses sockets off /ws");
    };
    assert_eq!(response.status, 404);

    let Ok(mut ada) = room.socket("/ws?name=ada").await.expect("socket-open ran") else {
        panic!("ada joins");
    };
    let Some(SocketFrame::Text(history)) = ada.recv().await else {
        panic!("the history comes first");
    };
    let history: serde_json::Value = serde_json::from_str(&history).expect("JSON");
    assert_eq!(history["type"], "history");

    ada.send_text(r#"{"text": "hi", "client_id": "c1"}"#)
        .await
        .expect("delivered");
    // Its own join may come first (the room is announced to its members).
    let mut echo = serde_json::Value::Null;
    for _ in 0..3 {
        let Some(SocketFrame::Text(frame)) = ada.recv().await else {
            panic!("the message comes back");
        };
        echo = serde_json::from_str(&frame).expect("JSON");
        if echo["type"] == "message" {
            break;
        }
    }
    assert_eq!(
        (echo["text"].as_str(), echo["client_id"].as_str()),
        (Some("hi"), Some("c1"))
    );
    // The host's auto-response.
    ada.send_text("ping").await.expect("answered");
    assert_eq!(ada.recv().await, Some(SocketFrame::Text("pong".into())));

    let presence = room
        .get("/presence")
        .await
        .expect("presence")
        .json()
        .expect("JSON");
    assert!(presence.to_string().contains("ada"), "{presence}");
    ada.close(1000, "bye").await.expect("closed");
    let presence = room
        .get("/presence")
        .await
        .expect("presence")
        .json()
        .expect("JSON");
    assert!(!presence.to_string().contains("ada"), "{presence}");
    let stored = room
        .sql("SELECT text FROM messages", &[])
        .await
        .expect("rows");
    assert_eq!(stored, vec![json!({ "text": "hi" })]);
    harness.shut_down().await;
}

#[tokio::test]
async fn a_class_gets_its_vars_and_secrets_and_a_client_address_in_the_harness() {
    let dir = tempfile::tempdir().expect("temp dir");
    let key_file = dir.path().join("key");
    std::fs::write(&key_file, "harness-secret\n").expect("secret file");
    let harness = podhost::testing::Harness::builder()
        .class_with(
            "probe",
            podhost::config::ClassConfig {
                path: crate::support::guest("probe"),
                vars: [("MODE".to_string(), "test".to_string())].into(),
                secrets: [(
                    "KEY".to_string(),
                    podhost::config::SecretSource::File(key_file),
                )]
                .into(),
                ..Default::default()
            },
        )
        .start()
        .await
        .expect("the harness starts");
    let probe = harness.object("probe", "cfg");
    let read = async |path: &str| {
        probe
            .get(path)
            .await
            .expect("a response")
            .json()
            .expect("JSON")
    };
    assert_eq!(read("/config/MODE").await["value"], "test");
    assert_eq!(read("/config/KEY").await["value"], "harness-secret");
    assert_eq!(
        read("/client-address").await["client_address"],
        "127.0.0.1",
        "the harness's requests come from 127.0.0.1"
    );
    harness.shut_down().await;
}
