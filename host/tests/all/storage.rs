//! Guest SQL: what works, and what the authorizer refuses. In process
//! (`podhost::testing`).

use serde_json::json;

use podhost::testing::Harness;

use crate::support::harness;

/// POSTs `body` as JSON to `path` on probe object `name`.
async fn post_json(
    harness: &Harness,
    name: &str,
    path: &str,
    body: serde_json::Value,
) -> (u16, serde_json::Value) {
    let response = harness
        .object("probe", name)
        .post_json(path, &body)
        .await
        .expect("a response");
    (response.status.as_u16(), response.json().expect("JSON"))
}

#[tokio::test]
async fn guest_sql_cannot_reach_host_tables_other_files_or_transactions() {
    let harness = harness().await;
    // Something in the KV store, so a leak would show.
    let written = harness.object("probe", "s").post("/write", "secret").await;
    assert_eq!(written.expect("a response").status, 200);
    for query in [
        "SELECT * FROM _podhost_kv",
        "SELECT * FROM _PODHOST_KV",
        "DELETE FROM _podhost_kv",
        "ATTACH DATABASE '/tmp/podhost-attack.sqlite' AS other",
        "DETACH DATABASE main",
        "BEGIN",
        "COMMIT",
        "SAVEPOINT s",
        "PRAGMA journal_mode = DELETE",
        "PRAGMA synchronous = OFF",
        "PRAGMA writable_schema = ON",
        "SELECT load_extension('/tmp/x')",
    ] {
        let (status, body) = post_json(&harness, "s", "/sql", json!({ "query": query })).await;
        assert_eq!(status, 400, "{query}: {body}");
        assert_eq!(body["error"]["code"], "not-authorized", "{query}: {body}");
        assert!(
            !body.to_string().contains("secret"),
            "{query} leaked data: {body}"
        );
    }
    assert!(!std::path::Path::new("/tmp/podhost-attack.sqlite").exists());
    harness.shut_down().await;
}

#[tokio::test]
async fn guest_sql_runs_with_parameters_and_reports_typed_errors() {
    let harness = harness().await;
    let (status, body) = post_json(
        &harness,
        "q",
        "/sql",
        json!({ "query": "SELECT ?1 + 1 AS answer, ?2 AS name", "params": [41, "x"] }),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["rows"], json!([{ "answer": 42, "name": "x" }]));

    let (status, body) = post_json(
        &harness,
        "q",
        "/sql",
        json!({ "query": "INSERT INTO notes (body) VALUES (?)", "params": ["n"] }),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["rows_written"], 1);

    let (status, body) = post_json(
        &harness,
        "q",
        "/sql",
        json!({ "query": "PRAGMA table_info(notes)" }),
    )
    .await;
    assert_eq!(status, 200, "harmless pragmas work: {body}");
    assert_eq!(body["rows"].as_array().map(Vec::len), Some(2));

    for (query, code) in [
        ("SELEC 1", "invalid"),
        ("SELECT * FROM missing", "invalid"),
        ("SELECT 1; SELECT 2", "invalid"),
        ("SELECT ?", "invalid"),
        (
            "INSERT INTO notes (id, body) VALUES (1, NULL)",
            "constraint",
        ),
    ] {
        let (status, body) = post_json(&harness, "q", "/sql", json!({ "query": query })).await;
        assert_eq!(status, 400, "{query}: {body}");
        assert_eq!(body["error"]["code"], code, "{query}: {body}");
    }
    harness.shut_down().await;
}

#[tokio::test]
async fn overlong_statements_and_too_many_parameters_are_refused() {
    let harness = harness().await;
    let long = format!("SELECT 1 -- {}", "x".repeat(200_000));
    let (status, body) = post_json(&harness, "big", "/sql", json!({ "query": long })).await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(body["error"]["code"], "too-big", "{body}");

    let placeholders = vec!["?"; 1000].join(", ");
    let query = format!("SELECT {placeholders}");
    let params = vec![1; 1000];
    let (status, body) = post_json(
        &harness,
        "big",
        "/sql",
        json!({ "query": query, "params": params }),
    )
    .await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(body["error"]["code"], "invalid", "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("too many SQL variables")),
        "{body}"
    );
    harness.shut_down().await;
}
