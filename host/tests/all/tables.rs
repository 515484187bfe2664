//! The SDK's `Table`: a column declared in a later version of a class is
//! added to the objects' existing tables as they wake, their rows kept. In
//! process (`podhost::testing`): each deploy is a runtime on the same data.

use serde_json::json;

use crate::support::{guest_variant, harness_with};

#[tokio::test]
async fn columns_declared_in_a_new_version_are_added_and_old_rows_kept() {
    let dir = tempfile::tempdir().expect("temp dir");
    let deploy = |feature: Option<&'static str>| {
        let dir = dir.path().to_path_buf();
        async move { harness_with(&[("notes", guest_variant("tables", feature))], Some(&dir)).await }
    };

    let harness = deploy(None).await;
    let notes = harness.object("notes", "desk");
    let created = notes
        .post("/notes", r#"{"text": "old"}"#)
        .await
        .expect("a response");
    assert_eq!(created.status, 201, "{}", created.text());
    harness.shut_down().await;

    let harness = deploy(Some("v2")).await;
    let notes = harness.object("notes", "desk");
    let created = notes
        .post("/notes", r#"{"text": "new", "pinned": true, "due": 5}"#)
        .await
        .expect("a response");
    assert_eq!(created.status, 201, "{}", created.text());
    let listed = notes.get("/notes").await.expect("a response");
    assert_eq!(listed.status, 200, "{}", listed.text());
    let rows: Vec<_> = listed
        .json()
        .expect("JSON")
        .as_array()
        .expect("a list")
        .iter()
        .map(|note| json!([note["text"], note["pinned"], note["due"]]))
        .collect();
    assert_eq!(
        rows,
        [json!(["old", false, null]), json!(["new", true, 5])],
        "the old row got the new columns' defaults"
    );
    let wrong = notes
        .post("/notes", r#"{"text": "x", "pinned": "yes"}"#)
        .await
        .expect("a response");
    assert_eq!(wrong.status, 400, "{}", wrong.text());
    let indexes = notes
        .sql(
            "SELECT name FROM sqlite_schema WHERE type = 'index' AND tbl_name = 'notes' ORDER BY name",
            &[],
        )
        .await
        .expect("read-only SQL");
    assert_eq!(
        indexes,
        [
            json!({ "name": "notes_by_created_at" }),
            json!({ "name": "notes_by_pinned" })
        ]
    );
    harness.shut_down().await;
}
