//! Migrations: run on activation, once, in one transaction; a failing one
//! names itself, keeps the data as it was and is retried; a class deployed
//! with more migrations upgrades its objects as they wake.

use crate::support::{Options, Server, migrating_guest, parse_json};

#[tokio::test]
async fn migrations_upgrade_objects_as_they_wake_and_failures_keep_the_data() {
    let dir = tempfile::tempdir().expect("temp dir");
    let deploy = |feature: Option<&str>| Options {
        extra_classes: vec![("items", migrating_guest(feature))],
        ..Options::default()
    };

    let server = Server::start_in(dir.path(), &deploy(None)).await;
    let (status, body) = server.post("/objects/items/shop", "apple").await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        parse_json(&body),
        serde_json::json!([{ "id": 1, "name": "apple" }])
    );
    server.stop().await;

    let server = Server::start_in(dir.path(), &deploy(Some("broken"))).await;
    for attempt in 0..2 {
        let (status, body) = server.get("/objects/items/shop").await;
        assert_eq!(status, 500, "attempt {attempt}: {body}");
        let error = parse_json(&body);
        assert_eq!(error["error"]["code"], "migration_failed", "{body}");
        let message = error["error"]["message"].as_str().unwrap_or_default();
        assert!(
            message.contains("migration 2 of 2") && message.contains("missing"),
            "{message}"
        );
    }
    server.stop().await;

    let server = Server::start_in(dir.path(), &deploy(Some("v2"))).await;
    let (status, body) = server.get("/objects/items/shop").await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        parse_json(&body),
        serde_json::json!([{ "id": 1, "name": "apple", "tag": "none" }]),
        "the data survived the failed attempt and gained the new column"
    );
    let (status, body) = server.post("/objects/items/new-shop", "pear").await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        parse_json(&body),
        serde_json::json!([{ "id": 1, "name": "pear", "tag": "none" }])
    );
    server.stop().await;
}
