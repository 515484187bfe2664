//! The catalog, the admin API and `podhost objects`: listing objects,
//! deleting them through a running server or offline, and the lock that
//! keeps two processes off one data directory.

use std::time::Duration;

use podhost::object::ObjectAddr;
use podhost::storage::DataDir;

use crate::support::{Options, Server, eventually, object_names, parse_json, podhost_cli};

const TOKEN: &str = "s3cret-admin-token-of-32-bytes-or-more";

async fn admin_names(server: &Server, query: &str) -> Vec<String> {
    let response = server
        .client
        .get(server.url(&format!("/admin/objects{query}")))
        .bearer_auth(TOKEN)
        .send()
        .await
        .expect("request sent");
    assert_eq!(response.status(), 200);
    let body: serde_json::Value = response.json().await.expect("JSON");
    object_names(&body)
}

#[tokio::test]
async fn objects_are_cataloged_and_deleted_through_the_api_or_offline() {
    let dir = tempfile::tempdir().expect("temp dir");
    let options = Options {
        admin_token: Some(TOKEN),
        ..Options::default()
    };
    let server = Server::start_in(dir.path(), &options).await;
    server.post("/objects/counter/alice", "").await;
    server.post("/objects/counter/alice", "").await;
    server.post("/objects/counter/bob", "").await;
    server.post("/objects/probe/carol/write", "note").await;

    let (status, body) = server.get("/admin/objects").await;
    assert_eq!(status, 401, "{body}");
    assert_eq!(parse_json(&body)["error"]["code"], "unauthorized");
    let wrong = server
        .client
        .get(server.url("/admin/objects"))
        .bearer_auth("guess")
        .send()
        .await;
    assert_eq!(wrong.expect("sent").status(), 401);

    let listed = eventually(Duration::from_secs(10), || async {
        admin_names(&server, "").await.len() == 3
    })
    .await;
    assert!(
        listed,
        "all three objects reach the catalog: {:?}",
        admin_names(&server, "").await
    );
    assert_eq!(
        admin_names(&server, "?class=counter").await,
        ["counter/alice", "counter/bob"]
    );

    let alice_file = DataDir::new(dir.path().join("data"))
        .object_database("counter", ObjectAddr::new("counter", "alice").id());
    assert!(alice_file.exists());
    let response = server
        .client
        .delete(server.url("/admin/objects/counter/alice"))
        .bearer_auth(TOKEN)
        .send()
        .await
        .expect("sent");
    assert_eq!(response.status(), 200);
    assert_eq!(
        response.json::<serde_json::Value>().await.expect("JSON")["deleted"],
        true
    );
    assert!(!alice_file.exists(), "the database file is gone");
    let forgotten = eventually(Duration::from_secs(10), || async {
        !admin_names(&server, "")
            .await
            .contains(&"counter/alice".to_string())
    })
    .await;
    assert!(forgotten, "the catalog forgot alice");
    assert_eq!(
        server.get("/objects/counter/alice").await,
        (200, "0".into()),
        "a new alice starts empty"
    );

    let config = dir.path().join("podhost.toml");
    let config = config.to_str().expect("UTF-8 path");
    let (started, output) = podhost_cli(&["serve", "--config", config]);
    assert!(
        !started && output.contains("another podhost process"),
        "{output}"
    );
    let (deleted, output) =
        podhost_cli(&["objects", "delete", "counter", "bob", "--config", config]);
    assert!(
        !deleted && output.contains("stop the server first"),
        "{output}"
    );
    server.stop().await;

    let (ok, output) = podhost_cli(&["objects", "list", "--config", config]);
    assert!(
        ok && output.contains("bob") && output.contains("carol"),
        "{output}"
    );
    let (ok, output) = podhost_cli(&["objects", "delete", "counter", "bob", "--config", config]);
    assert!(ok && output.contains("deleted counter/bob"), "{output}");
    let (ok, output) = podhost_cli(&["objects", "list", "--class", "counter", "--config", config]);
    assert!(
        ok && !output.contains("bob") && output.contains("alice"),
        "{output}"
    );
}

#[tokio::test]
async fn the_admin_api_is_off_without_a_token() {
    let (server, _dir) = Server::start(Options::default()).await;
    let (status, body) = server.get("/admin/objects").await;
    assert_eq!(status, 404, "{body}");
    assert_eq!(parse_json(&body)["error"]["code"], "admin_disabled");
    server.stop().await;
}
