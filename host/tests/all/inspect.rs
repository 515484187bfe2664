//! The operator looks inside objects, queries them read-only, exports and
//! imports their databases: a real server, a real HTTP client, and the
//! exported files opened with SQLite itself.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use futures_util::SinkExt as _;
use parking_lot::Mutex;
use reqwest::Method;
use serde_json::{Value, json};

use crate::support::{Options, Server, eventually, parse_json, podhost_cli};

const TOKEN: &str = "an-admin-token-of-at-least-32-bytes!";

fn options() -> Options {
    Options {
        admin_token: Some(TOKEN),
        ..Options::default()
    }
}

async fn admin(server: &Server, method: Method, path: &str, body: Option<Value>) -> (u16, Value) {
    server.call(method, path, TOKEN, body).await
}

async fn inspect(server: &Server, path: &str) -> (u16, Value) {
    admin(server, Method::GET, path, None).await
}

async fn query(server: &Server, object: &str, sql: &str) -> (u16, Value) {
    admin(
        server,
        Method::POST,
        &format!("/admin/objects/{object}/query"),
        Some(json!({ "sql": sql })),
    )
    .await
}

async fn export(server: &Server, object: &str) -> Vec<u8> {
    let response = server
        .client
        .get(server.url(&format!("/admin/objects/{object}/export")))
        .bearer_auth(TOKEN)
        .send()
        .await
        .expect("sent");
    assert_eq!(response.status(), 200);
    assert_eq!(
        response.headers()["content-type"],
        "application/vnd.sqlite3"
    );
    response.bytes().await.expect("the file").to_vec()
}

async fn import(server: &Server, object: &str, file: Vec<u8>) -> (u16, Value) {
    let response = server
        .client
        .put(server.url(&format!("/admin/objects/{object}/import")))
        .bearer_auth(TOKEN)
        .body(file)
        .send()
        .await
        .expect("sent");
    let status = response.status().as_u16();
    (status, parse_json(&response.text().await.expect("body")))
}

fn table_rows(inspection: &Value, table: &str) -> Option<i64> {
    inspection["tables"]
        .as_array()?
        .iter()
        .find(|t| t["name"] == table)?["rows"]
        .as_i64()
}

async fn notes(server: &Server, object: &str) -> Vec<String> {
    let (status, state) = server.get_json(&format!("/objects/{object}/state")).await;
    assert_eq!(status, 200, "{state}");
    serde_json::from_value(state["notes"].clone()).expect("notes")
}

/// The notes in an SQLite file, read by SQLite itself.
fn notes_in_file(file: &[u8]) -> Vec<String> {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("export.sqlite");
    std::fs::write(&path, file).expect("write");
    let conn = rusqlite::Connection::open(&path).expect("opens with SQLite");
    let check: String = conn
        .query_row("PRAGMA integrity_check", [], |r| r.get(0))
        .expect("check");
    assert_eq!(check, "ok");
    let mut statement = conn
        .prepare("SELECT body FROM notes ORDER BY id")
        .expect("notes");
    statement
        .query_map([], |r| r.get(0))
        .expect("rows")
        .collect::<Result<_, _>>()
        .expect("rows")
}

#[tokio::test]
async fn an_operator_inspects_live_and_hibernated_objects_and_missing_ones_are_404() {
    let dir = tempfile::tempdir().expect("temp dir");
    let server = Server::start_in(dir.path(), &options()).await;
    for note in ["a", "b", "c"] {
        assert_eq!(server.post("/objects/probe/alice/write", note).await.0, 200);
    }
    let (status, _) = server
        .post("/objects/probe/alice/alarm/set?in_ms=3600000", "")
        .await;
    assert_eq!(status, 200);
    let mut socket = server.ws("/objects/probe/alice").await.expect("socket");
    socket
        .send(tokio_tungstenite::tungstenite::Message::text("hello"))
        .await
        .expect("sent");

    let (status, live) = inspect(&server, "/admin/objects/probe/alice").await;
    assert_eq!(status, 200, "{live}");
    assert_eq!(live["live"], true, "{live}");
    assert_eq!(live["state"], "live");
    assert_eq!(live["class"], "probe");
    assert_eq!(live["name"], "alice");
    assert_eq!(live["class_hash"].as_str().map(str::len), Some(64));
    assert_eq!(table_rows(&live, "notes"), Some(3), "{live}");
    assert!(
        live["internal_tables"]
            .as_array()
            .expect("internal tables")
            .iter()
            .any(|t| t["name"] == "_podhost_kv"),
        "{live}"
    );
    assert!(live["alarm"].as_i64().is_some(), "{live}");
    assert_eq!(live["sockets"], json!({ "count": 1, "tags": { "all": 1 } }));
    assert!(live["size_bytes"].as_u64().expect("size") > 0);
    let created = eventually(Duration::from_secs(10), || async {
        inspect(&server, "/admin/objects/probe/alice").await.1["created_at"].is_i64()
    })
    .await;
    assert!(created, "the catalog's creation time shows");

    // Missing objects, classes and credentials.
    let (status, body) = inspect(&server, "/admin/objects/probe/nobody").await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (404, Some("object_not_found"))
    );
    let (status, body) = admin(&server, Method::DELETE, "/admin/objects/probe/nobody", None).await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (404, Some("object_not_found"))
    );
    let (status, body) = inspect(&server, "/admin/objects/nothing/alice").await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (404, Some("class_not_found"))
    );
    let (status, _) = server.get("/admin/objects/probe/alice").await;
    assert_eq!(status, 401);
    let (status, body) = query(&server, "probe/nobody", "SELECT 1").await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (404, Some("object_not_found"))
    );
    let (status, _) = server
        .client
        .get(server.url("/admin/objects/probe/nobody/export"))
        .bearer_auth(TOKEN)
        .send()
        .await
        .map(|r| (r.status().as_u16(), ()))
        .expect("sent");
    assert_eq!(status, 404);
    drop(socket);

    // After a restart the object is hibernated: inspecting it opens its
    // database but makes no instance.
    server.stop().await;
    let server = Server::start_in(dir.path(), &options()).await;
    let (status, hibernated) = inspect(&server, "/admin/objects/probe/alice").await;
    assert_eq!(status, 200, "{hibernated}");
    assert_eq!(hibernated["live"], false, "{hibernated}");
    assert_eq!(hibernated["state"], "hibernated");
    assert_eq!(table_rows(&hibernated, "notes"), Some(3));
    assert_eq!(hibernated["alarm"], live["alarm"]);
    assert!(hibernated["last_active_at"].is_i64(), "{hibernated}");
    assert_eq!(server.metric("podhost_activations_total").await, 0);
    // A deleted object is gone for inspection too.
    let (status, _) = admin(&server, Method::DELETE, "/admin/objects/probe/alice", None).await;
    assert_eq!(status, 200);
    let (status, _) = inspect(&server, "/admin/objects/probe/alice").await;
    assert_eq!(status, 404);
    server.stop().await;
}

#[tokio::test]
async fn a_query_reads_refuses_writes_and_does_not_wake_a_hibernated_object() {
    let dir = tempfile::tempdir().expect("temp dir");
    let server = Server::start_in(dir.path(), &options()).await;
    for note in ["one", "two"] {
        server.post("/objects/probe/q/write", note).await;
    }
    let (status, live) = query(&server, "probe/q", "SELECT id, body FROM notes ORDER BY id").await;
    assert_eq!(status, 200, "{live}");
    assert_eq!(
        live,
        json!({ "columns": ["id", "body"], "rows": [[1, "one"], [2, "two"]], "truncated": false })
    );
    server.stop().await;

    let server = Server::start_in(dir.path(), &options()).await;
    let (status, result) = admin(
        &server,
        Method::POST,
        "/admin/objects/probe/q/query",
        Some(json!({
            "sql": "SELECT body, ? AS n, ? AS b FROM notes WHERE id = ?",
            "params": [1.5, { "base64": "AAE=" }, 2],
        })),
    )
    .await;
    assert_eq!(status, 200, "{result}");
    assert_eq!(result["rows"], json!([["two", 1.5, { "base64": "AAE=" }]]));
    let (status, capped) = query(
        &server,
        "probe/q",
        "WITH RECURSIVE n(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM n LIMIT 5000) SELECT x FROM n",
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(capped["rows"].as_array().map(Vec::len), Some(1000));
    assert_eq!(capped["truncated"], true);

    let outside = dir.path().join("outside.sqlite");
    let attach = format!("ATTACH DATABASE '{}' AS x", outside.display());
    for sql in [
        "INSERT INTO notes (body) VALUES ('sneaky')",
        "DELETE FROM notes",
        "WITH gone AS (SELECT 1) DELETE FROM notes",
        "UPDATE notes SET body = 'changed'",
        "DROP TABLE notes",
        "CREATE TABLE more (x)",
        attach.as_str(),
        "PRAGMA journal_mode = delete",
        "PRAGMA foreign_keys = off",
        "PRAGMA user_version = 3",
        "PRAGMA query_only = 0",
        "BEGIN",
        "VACUUM",
        "SELECT 1; DELETE FROM notes",
    ] {
        let (status, refused) = query(&server, "probe/q", sql).await;
        assert_eq!(status, 400, "{sql}: {refused}");
        assert_eq!(
            refused["error"]["code"], "query_refused",
            "{sql}: {refused}"
        );
    }
    assert!(!outside.exists(), "ATTACH made no file");
    let (status, endless) = query(
        &server,
        "probe/q",
        "WITH RECURSIVE n(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM n) SELECT count(*) FROM n",
    )
    .await;
    assert_eq!(
        (status, endless["error"]["code"].as_str()),
        (400, Some("query_timeout"))
    );

    let (_, inspection) = inspect(&server, "/admin/objects/probe/q").await;
    assert_eq!(inspection["live"], false, "queries made no instance");
    assert_eq!(server.metric("podhost_activations_total").await, 0);
    assert!(
        server
            .metric_becomes("podhost_objects_active", Duration::from_secs(5), |n| n == 0)
            .await,
        "the object closed again at once"
    );
    let (status, columns) = query(
        &server,
        "probe/q",
        "SELECT name FROM pragma_table_info('notes')",
    )
    .await;
    assert_eq!(status, 200, "{columns}");
    assert_eq!(columns["rows"], json!([["id"], ["body"]]));
    assert_eq!(
        notes(&server, "probe/q").await,
        ["one", "two"],
        "nothing changed"
    );
    assert_eq!(server.post("/objects/probe/q/write", "three").await.0, 200);
    assert_eq!(notes(&server, "probe/q").await, ["one", "two", "three"]);
    server.stop().await;
}

#[tokio::test]
async fn an_export_under_write_load_holds_every_acknowledged_write_and_fails_no_request() {
    let (server, _dir) = Server::start(options()).await;
    let server = Arc::new(server);
    server.post("/objects/probe/busy/write", "first").await;
    let acknowledged = Arc::new(Mutex::new(Vec::<String>::new()));
    let failures = Arc::new(Mutex::new(Vec::<String>::new()));
    let stop = Arc::new(AtomicBool::new(false));
    let mut writers = Vec::new();
    for writer in 0..4 {
        let (server, acknowledged, failures, stop) = (
            Arc::clone(&server),
            Arc::clone(&acknowledged),
            Arc::clone(&failures),
            Arc::clone(&stop),
        );
        writers.push(tokio::spawn(async move {
            for i in 0..100_000 {
                if stop.load(Ordering::Relaxed) {
                    break;
                }
                let note = format!("w{writer}-{i}");
                let result = server
                    .client
                    .post(server.url("/objects/probe/busy/write"))
                    .body(note.clone())
                    .send()
                    .await;
                match result {
                    Ok(response) if response.status() == 200 => acknowledged.lock().push(note),
                    Ok(response) => failures
                        .lock()
                        .push(format!("{note}: {}", response.status())),
                    Err(error) => failures.lock().push(format!("{note}: {error}")),
                }
            }
        }));
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let mut exports = Vec::new();
    for _ in 0..3 {
        let before: Vec<String> = acknowledged.lock().clone();
        let file = export(&server, "probe/busy").await;
        exports.push((before, file));
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let response = server
        .client
        .get(server.url("/admin/objects/probe/busy/export?format=json&tables=notes"))
        .bearer_auth(TOKEN)
        .send()
        .await
        .expect("sent");
    assert_eq!(response.status(), 200);
    let dump: Value = response.json().await.expect("a JSON dump");
    stop.store(true, Ordering::Relaxed);
    for writer in writers {
        writer.await.expect("writer");
    }
    assert!(failures.lock().is_empty(), "failed: {:?}", failures.lock());
    assert!(acknowledged.lock().len() > 20, "the load ran");
    for (before, file) in &exports {
        let kept = notes_in_file(file);
        let missing: Vec<&String> = before.iter().filter(|n| !kept.contains(n)).collect();
        assert!(
            missing.is_empty(),
            "acknowledged before the export but missing: {missing:?}"
        );
    }
    assert_eq!(dump["tables"]["notes"]["columns"], json!(["id", "body"]));
    assert!(
        dump["tables"]["notes"]["rows"]
            .as_array()
            .expect("rows")
            .len()
            > 1
    );
    assert!(
        dump["tables"].get("alarm_fires").is_none(),
        "only the tables asked for"
    );

    // The file opens with the sqlite3 command too, when it is installed.
    let (_, file) = exports.last().expect("an export");
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("busy.sqlite");
    std::fs::write(&path, file).expect("write");
    if let Ok(output) = std::process::Command::new("sqlite3")
        .arg(&path)
        .arg("SELECT count(*) FROM notes")
        .output()
    {
        let count = String::from_utf8_lossy(&output.stdout);
        assert!(
            count.trim().parse::<usize>().is_ok_and(|n| n > 1),
            "sqlite3 read {count:?} ({})",
            String::from_utf8_lossy(&output.stderr)
        );
    }
    let (status, body) = admin(
        &server,
        Method::GET,
        "/admin/objects/probe/busy/export?format=json&tables=nope",
        None,
    )
    .await;
    assert_eq!(status, 400, "{body}");
}

#[tokio::test]
async fn an_import_replaces_the_data_and_a_corrupt_or_newer_file_is_refused() {
    let (server, _dir) = Server::start(Options {
        extra_config: "[inspect]\nimport_max_bytes = 1000000\n",
        ..options()
    })
    .await;
    for note in ["a1", "a2"] {
        server.post("/objects/probe/alice/write", note).await;
    }
    server.post("/objects/probe/bob/write", "b1").await;
    let alice = export(&server, "probe/alice").await;

    let (status, body) = import(&server, "probe/bob", alice.clone()).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(notes(&server, "probe/bob").await, ["a1", "a2"]);
    assert_eq!(server.post("/objects/probe/bob/write", "b2").await.0, 200);
    assert_eq!(notes(&server, "probe/bob").await, ["a1", "a2", "b2"]);

    let (status, body) = import(&server, "probe/bob", vec![0; 2_000_000]).await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (413, Some("body_too_large")),
        "{body}"
    );
    // Not SQLite at all.
    let (status, body) = import(&server, "probe/bob", vec![0x42; 10_000]).await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (422, Some("import_refused")),
        "{body}"
    );
    // SQLite, but damaged: a page in the middle overwritten.
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("big.sqlite");
    {
        let conn = rusqlite::Connection::open(&path).expect("open");
        conn.execute_batch(
            "PRAGMA page_size = 4096; CREATE TABLE notes (id INTEGER PRIMARY KEY, body TEXT NOT NULL);
             CREATE INDEX notes_body ON notes (body);
             WITH RECURSIVE n(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM n LIMIT 2000)
             INSERT INTO notes (body) SELECT printf('note %d', x) FROM n;",
        )
        .expect("fill");
    }
    let mut damaged = std::fs::read(&path).expect("read");
    assert!(damaged.len() > 5 * 4096);
    damaged[3 * 4096..4 * 4096].fill(0x5a);
    let (status, body) = import(&server, "probe/bob", damaged).await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (422, Some("import_refused")),
        "{body}"
    );
    // From a newer schema than the class's migrations.
    let newer = dir.path().join("newer.sqlite");
    std::fs::write(&newer, &alice).expect("write");
    {
        let conn = rusqlite::Connection::open(&newer).expect("open");
        conn.execute(
            "INSERT OR REPLACE INTO _podhost_meta (key, value) VALUES ('migrations', 99)",
            [],
        )
        .expect("a newer version");
    }
    let (status, body) = import(&server, "probe/bob", std::fs::read(&newer).expect("read")).await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (422, Some("import_refused")),
        "{body}"
    );
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap_or_default()
            .contains("newer"),
        "{body}"
    );
    assert_eq!(
        notes(&server, "probe/bob").await,
        ["a1", "a2", "b2"],
        "bob kept his data"
    );

    // A new name gets the imported data as a new object.
    let (status, _) = import(&server, "probe/carol", alice).await;
    assert_eq!(status, 200);
    assert_eq!(notes(&server, "probe/carol").await, ["a1", "a2"]);
    server.stop().await;
}

#[tokio::test]
async fn the_cli_exports_and_imports_a_stopped_servers_objects() {
    let dir = tempfile::tempdir().expect("temp dir");
    let server = Server::start_in(dir.path(), &options()).await;
    for note in ["x1", "x2"] {
        server.post("/objects/probe/xena/write", note).await;
    }
    server.post("/objects/probe/yuri/write", "y1").await;
    let config = dir.path().join("podhost.toml");
    let config = config.to_str().expect("UTF-8 path");
    let out = dir.path().join("xena.sqlite");
    let out = out.to_str().expect("UTF-8 path");
    let (ok, output) = podhost_cli(&[
        "objects", "export", "probe", "xena", "--out", out, "--config", config,
    ]);
    assert!(!ok && output.contains("stop the server first"), "{output}");
    server.stop().await;

    let (ok, output) = podhost_cli(&[
        "objects", "export", "probe", "xena", "--out", out, "--config", config,
    ]);
    assert!(ok, "{output}");
    assert_eq!(
        notes_in_file(&std::fs::read(out).expect("exported")),
        ["x1", "x2"]
    );
    let (ok, output) = podhost_cli(&[
        "objects", "export", "probe", "nobody", "--out", out, "--config", config,
    ]);
    assert!(!ok && output.contains("no database"), "{output}");

    let garbage = dir.path().join("garbage.sqlite");
    std::fs::write(&garbage, vec![1u8; 5000]).expect("write");
    let garbage = garbage.to_str().expect("UTF-8 path");
    let (ok, output) = podhost_cli(&[
        "objects", "import", "probe", "yuri", garbage, "--config", config,
    ]);
    assert!(!ok && output.contains("not imported"), "{output}");
    let (ok, output) = podhost_cli(&[
        "objects", "import", "probe", "yuri", out, "--config", config,
    ]);
    assert!(ok, "{output}");

    let server = Server::start_in(dir.path(), &options()).await;
    assert_eq!(notes(&server, "probe/yuri").await, ["x1", "x2"]);
    assert_eq!(notes(&server, "probe/xena").await, ["x1", "x2"]);
    server.stop().await;
}

#[tokio::test]
async fn a_tenant_inspects_queries_exports_and_imports_only_its_own_objects_within_its_quota() {
    let (server, _dir) = Server::start(Options {
        tenants: vec![("probe", "acme")],
        ..options()
    })
    .await;
    let mut tokens = Vec::new();
    for body in [
        json!({ "name": "acme", "max_storage_bytes": 256 << 10 }),
        json!({ "name": "bolt" }),
    ] {
        let (status, created) = admin(&server, Method::POST, "/admin/tenants", Some(body)).await;
        assert_eq!(status, 201, "{created}");
        tokens.push(created["token"].as_str().expect("a token").to_string());
    }
    let (acme, bolt) = (&tokens[0], &tokens[1]);
    server.post("/objects/probe/t/write", "mine").await;
    let as_tenant = |token: &str, method: Method, path: &str| {
        server
            .client
            .request(method, server.url(path))
            .bearer_auth(token.to_string())
    };

    let response = as_tenant(acme, Method::GET, "/admin/objects/probe/t")
        .send()
        .await
        .expect("sent");
    assert_eq!(response.status(), 200);
    let response = as_tenant(acme, Method::POST, "/admin/objects/probe/t/query")
        .json(&json!({ "sql": "SELECT body FROM notes" }))
        .send()
        .await
        .expect("sent");
    assert_eq!(response.status(), 200);
    let file = as_tenant(acme, Method::GET, "/admin/objects/probe/t/export")
        .send()
        .await
        .expect("sent");
    assert_eq!(file.status(), 200);
    let file = file.bytes().await.expect("the file").to_vec();
    assert_eq!(notes_in_file(&file), ["mine"]);
    for (method, path) in [
        (Method::GET, "/admin/objects/probe/t"),
        (Method::POST, "/admin/objects/probe/t/query"),
        (Method::GET, "/admin/objects/probe/t/export"),
        (Method::PUT, "/admin/objects/probe/t/import"),
    ] {
        let response = as_tenant(bolt, method, path)
            .json(&json!({ "sql": "SELECT 1" }))
            .send()
            .await
            .expect("sent");
        assert_eq!(response.status(), 404, "another tenant's class: {path}");
    }

    // Within its quota a tenant restores its own object; a file larger
    // than what the tenant may hold is refused.
    let response = as_tenant(acme, Method::PUT, "/admin/objects/probe/u/import")
        .body(file)
        .send()
        .await
        .expect("sent");
    assert_eq!(response.status(), 200);
    assert_eq!(notes(&server, "probe/u").await, ["mine"]);
    let dir = tempfile::tempdir().expect("temp dir");
    let big = dir.path().join("big.sqlite");
    {
        let conn = rusqlite::Connection::open(&big).expect("open");
        conn.execute_batch(
            "CREATE TABLE notes (id INTEGER PRIMARY KEY, body TEXT NOT NULL);
             INSERT INTO notes (body) VALUES (printf('%.400000c', 'x'));",
        )
        .expect("fill");
    }
    let response = as_tenant(acme, Method::PUT, "/admin/objects/probe/t/import")
        .body(std::fs::read(&big).expect("read"))
        .send()
        .await
        .expect("sent");
    assert_eq!(response.status(), 422);
    assert_eq!(notes(&server, "probe/t").await, ["mine"]);
}
