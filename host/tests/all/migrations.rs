//! Migrations: run on activation, once, in one transaction; a failing one
//! names itself, keeps the data as it was and is retried; a class deployed
//! with more migrations upgrades its objects as they wake. In process
//! (`podhost::testing`): each deploy is a runtime started on the same data.

use crate::support::{harness_with, migrating_guest};

#[tokio::test]
async fn migrations_upgrade_objects_as_they_wake_and_failures_keep_the_data() {
    let dir = tempfile::tempdir().expect("temp dir");
    let deploy = |feature: Option<&'static str>| {
        let dir = dir.path().to_path_buf();
        async move { harness_with(&[("items", migrating_guest(feature))], Some(&dir)).await }
    };

    let harness = deploy(None).await;
    let response = harness
        .object("items", "shop")
        .post("/", "apple")
        .await
        .expect("a response");
    assert_eq!(response.status, 200, "{}", response.text());
    assert_eq!(
        response.json().expect("JSON"),
        serde_json::json!([{ "id": 1, "name": "apple" }])
    );
    harness.shut_down().await;

    let harness = deploy(Some("broken")).await;
    for attempt in 0..2 {
        let response = harness
            .object("items", "shop")
            .get("/")
            .await
            .expect("a response");
        let body = response.text();
        assert_eq!(response.status, 500, "attempt {attempt}: {body}");
        let error = response.json().expect("JSON");
        assert_eq!(error["error"]["code"], "migration_failed", "{body}");
        let message = error["error"]["message"].as_str().unwrap_or_default();
        assert!(
            message.contains("migration 2 of 2") && message.contains("missing"),
            "{message}"
        );
    }
    harness.shut_down().await;

    let harness = deploy(Some("v2")).await;
    let response = harness
        .object("items", "shop")
        .get("/")
        .await
        .expect("a response");
    assert_eq!(response.status, 200, "{}", response.text());
    assert_eq!(
        response.json().expect("JSON"),
        serde_json::json!([{ "id": 1, "name": "apple", "tag": "none" }]),
        "the data survived the failed attempt and gained the new column"
    );
    let response = harness
        .object("items", "new-shop")
        .post("/", "pear")
        .await
        .expect("a response");
    assert_eq!(response.status, 200, "{}", response.text());
    assert_eq!(
        response.json().expect("JSON"),
        serde_json::json!([{ "id": 1, "name": "pear", "tag": "none" }])
    );
    harness.shut_down().await;
}
