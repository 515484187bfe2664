//! Deploys over the admin API: versions, live upgrade with requests,
//! sockets and event streams kept, rollback, validation refusals, restart
//! without a config file, removal, and racing deploys. Real server, real
//! clients; the `versioned` test guest in several builds.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use serde_json::Value;
use tokio_tungstenite::tungstenite::Message;

use crate::support::{Options, Server, Ws, guest_variant, parse_json};

const TOKEN: &str = "deploy-tests-admin-token-0123456789abcdef";
const WAIT: Duration = Duration::from_secs(10);

fn options() -> Options {
    Options {
        admin_token: Some(TOKEN),
        ..Options::default()
    }
}

fn v1() -> PathBuf {
    guest_variant("versioned", None)
}

fn v2() -> PathBuf {
    guest_variant("versioned", Some("v2"))
}

async fn put_bytes(server: &Server, path: &str, bytes: Vec<u8>, token: &str) -> (u16, Value) {
    let response = server
        .client
        .put(server.url(path))
        .bearer_auth(token)
        .header("content-type", "application/wasm")
        .body(bytes)
        .send()
        .await
        .expect("sent");
    let status = response.status().as_u16();
    let text = response.text().await.expect("body");
    (status, parse_json(&text))
}

async fn deploy(server: &Server, class: &str, wasm: &Path, query: &str) -> (u16, Value) {
    let bytes = std::fs::read(wasm).expect("component");
    put_bytes(
        server,
        &format!("/admin/classes/{class}{query}"),
        bytes,
        TOKEN,
    )
    .await
}

async fn admin(server: &Server, method: reqwest::Method, path: &str) -> (u16, Value) {
    server.call(method, path, TOKEN, None).await
}

async fn say(ws: &mut Ws, text: &str) -> String {
    ws.send(Message::text(text)).await.expect("sent");
    loop {
        match tokio::time::timeout(WAIT, ws.next())
            .await
            .expect("a reply in time")
        {
            Some(Ok(Message::Text(reply))) => return reply.to_string(),
            Some(Ok(Message::Ping(_) | Message::Pong(_))) => continue,
            other => panic!("the socket ended: {other:?}"),
        }
    }
}

fn code(body: &Value) -> &str {
    body["error"]["code"].as_str().unwrap_or_default()
}

fn message(body: &Value) -> &str {
    body["error"]["message"].as_str().unwrap_or_default()
}

#[tokio::test]
async fn a_new_version_goes_live_under_load_keeping_sockets_and_streams_then_rolls_back() {
    // Both builds before the load: a build blocks this runtime, and on a
    // cold target dir it outlasts the load's request timeouts.
    let (v1, v2) = (v1(), v2());
    let (server, _dir) = Server::start(options()).await;
    let (status, body) = deploy(&server, "versioned", &v1, "").await;
    assert_eq!(status, 201, "{body}");
    assert_eq!(body["version"], 1);
    assert_eq!(body["deployed_by"], "admin");
    let mut events = server.events("/objects/versioned/old/_events", None).await;
    assert_eq!(
        server.post("/objects/versioned/old/hit", "").await,
        (200, "1".to_string())
    );
    let mut ws = server
        .ws("/objects/versioned/old/ws?name=ada")
        .await
        .expect("socket open");
    assert_eq!(say(&mut ws, "hello").await, "v1 ada 1 hello");

    let server = Arc::new(server);
    let stop = Arc::new(AtomicBool::new(false));
    let (done, failed, saw_v2) = (
        Arc::new(AtomicUsize::new(0)),
        Arc::new(AtomicUsize::new(0)),
        Arc::new(AtomicBool::new(false)),
    );
    let mut load = Vec::new();
    for worker in 0..4 {
        let (server, stop, done, failed, saw_v2) = (
            Arc::clone(&server),
            Arc::clone(&stop),
            Arc::clone(&done),
            Arc::clone(&failed),
            Arc::clone(&saw_v2),
        );
        load.push(tokio::spawn(async move {
            let object = format!("/objects/versioned/load-{worker}");
            for _ in 0..100_000 {
                if stop.load(Ordering::Relaxed) {
                    break;
                }
                let (hit, _) = server.post(&format!("{object}/hit"), "").await;
                let (read, version) = server.get(&format!("{object}/version")).await;
                done.fetch_add(2, Ordering::Relaxed);
                if hit != 200 || read != 200 {
                    failed.fetch_add(1, Ordering::Relaxed);
                }
                if version == "v2" {
                    saw_v2.store(true, Ordering::Relaxed);
                }
            }
        }));
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let (status, body) = deploy(&server, "versioned", &v2, "").await;
    assert_eq!(status, 201, "{body}");
    assert_eq!(body["version"], 2);
    tokio::time::sleep(Duration::from_millis(300)).await;
    stop.store(true, Ordering::Relaxed);
    for worker in load {
        worker.await.expect("load worker");
    }
    assert_eq!(
        failed.load(Ordering::Relaxed),
        0,
        "of {} requests",
        done.load(Ordering::Relaxed)
    );
    assert!(saw_v2.load(Ordering::Relaxed), "the load reached v2");

    assert_eq!(
        say(&mut ws, "again").await,
        "v2 ada 1 again",
        "the socket stayed open, with its attachment and tag, and v2 answers it"
    );
    assert_eq!(
        server.post("/objects/versioned/old/hit", "").await,
        (200, "2".to_string())
    );
    let event = events.next().await;
    assert_eq!((event.event.as_str(), event.data.as_str()), ("hit", "v1"));
    let event = events.next().await;
    assert_eq!(
        (event.event.as_str(), event.data.as_str()),
        ("hit", "v2"),
        "the event stream stayed open across the deploy"
    );
    assert_eq!(
        server.get("/objects/versioned/old/notes").await,
        (200, "0".to_string()),
        "the old object ran v2's migration on its next event"
    );

    let (status, body) = admin(&server, reqwest::Method::GET, "/admin/classes/versioned").await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["active_version"], 2);
    let versions = body["versions"].as_array().expect("versions");
    assert_eq!(versions.len(), 2);
    assert_eq!(versions[0]["hash"].as_str().map(str::len), Some(64));
    assert!(versions[1]["size_bytes"].as_u64().unwrap_or(0) > 0);
    let (status, body) = admin(&server, reqwest::Method::GET, "/admin/classes").await;
    assert_eq!(status, 200, "{body}");
    assert!(
        body["classes"]
            .as_array()
            .is_some_and(|classes| classes.iter().any(|class| class["name"] == "versioned"))
    );

    let (status, body) = admin(
        &server,
        reqwest::Method::POST,
        "/admin/classes/versioned/rollback",
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["version"], 1);
    assert_eq!(
        server.get("/objects/versioned/old/version").await,
        (200, "v1".to_string())
    );
    assert_eq!(server.get("/objects/versioned/old/notes").await.0, 404);
    assert_eq!(say(&mut ws, "back").await, "v1 ada 1 back");
    let (status, body) = admin(
        &server,
        reqwest::Method::POST,
        "/admin/classes/versioned/rollback?version=2",
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        server.get("/objects/versioned/old/version").await,
        (200, "v2".to_string())
    );
    let (status, body) = admin(
        &server,
        reqwest::Method::POST,
        "/admin/classes/versioned/rollback?version=9",
    )
    .await;
    assert_eq!((status, code(&body)), (404, "version_not_found"), "{body}");
}

#[tokio::test]
async fn a_broken_migration_is_refused_with_its_number_and_v1_keeps_serving() {
    let (server, _dir) = Server::start(options()).await;
    let (status, body) = deploy(&server, "versioned", &v1(), "").await;
    assert_eq!(status, 201, "{body}");
    assert_eq!(
        server.post("/objects/versioned/shop/hit", "").await,
        (200, "1".to_string())
    );
    let broken = guest_variant("versioned", Some("broken"));
    let (status, body) = deploy(&server, "versioned", &broken, "").await;
    assert_eq!((status, code(&body)), (400, "migration_failed"), "{body}");
    assert!(
        message(&body).contains("migration 2") && message(&body).contains("missing"),
        "{body}"
    );
    let (status, body) = deploy(&server, "versioned", &broken, "?check=shop").await;
    assert_eq!((status, code(&body)), (400, "migration_failed"), "{body}");
    assert_eq!(
        server.get("/objects/versioned/shop/version").await,
        (200, "v1".to_string())
    );
    assert_eq!(
        server.post("/objects/versioned/shop/hit", "").await,
        (200, "2".to_string())
    );

    let reordered = guest_variant("versioned", Some("reordered"));
    let (status, body) = deploy(&server, "versioned", &reordered, "").await;
    assert_eq!(
        (status, code(&body)),
        (409, "migrations_not_append_only"),
        "{body}"
    );
    assert!(message(&body).contains("migration 1"), "{body}");
    let (status, body) = deploy(&server, "versioned", &v2(), "?check=shop").await;
    assert_eq!(status, 201, "{body}");
    let (status, body) = deploy(&server, "versioned", &v2(), "").await;
    assert_eq!(status, 200, "the same component again: {body}");
    assert_eq!(
        (body["unchanged"].as_bool(), body["version"].as_u64()),
        (Some(true), Some(2))
    );
    let (status, body) = admin(&server, reqwest::Method::GET, "/admin/classes/versioned").await;
    assert_eq!(status, 200);
    assert_eq!(body["versions"].as_array().map(Vec::len), Some(2), "{body}");
}

#[tokio::test]
async fn deployed_classes_and_objects_survive_a_restart_without_a_config_file() {
    let dir = tempfile::tempdir().expect("temp dir");
    let server = Server::start_in(dir.path(), &options()).await;
    let (status, body) = deploy(&server, "versioned", &v1(), "").await;
    assert_eq!(status, 201, "{body}");
    let config = r#"{"access": "public", "limits": {"max_cpu_per_event": "5s"}}"#;
    let response = server
        .client
        .put(server.url("/admin/classes/second"))
        .bearer_auth(TOKEN)
        .header("podhost-class-config", config)
        .body(std::fs::read(v2()).expect("component"))
        .send()
        .await
        .expect("sent");
    assert_eq!(response.status(), 201);
    assert_eq!(
        server.post("/objects/versioned/kept/hit", "").await,
        (200, "1".to_string())
    );
    assert_eq!(
        server.post("/objects/second/kept/hit", "").await,
        (200, "1".to_string())
    );
    server.stop().await;

    let bare = Options {
        without_classes: true,
        ..options()
    };
    let server = Server::start_in(dir.path(), &bare).await;
    assert_eq!(
        server.post("/objects/versioned/kept/hit", "").await,
        (200, "2".to_string())
    );
    assert_eq!(
        server.get("/objects/second/kept/notes").await,
        (200, "0".to_string())
    );
    let (status, body) = admin(&server, reqwest::Method::GET, "/admin/classes/second").await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["config"]["limits"]["max_cpu_per_event"], "5s");
    let (_, body) = admin(&server, reqwest::Method::GET, "/admin/classes").await;
    let listed: Vec<String> = body["classes"]
        .as_array()
        .into_iter()
        .flatten()
        .flat_map(|class| class["versions"].as_array().cloned().unwrap_or_default())
        .filter_map(|version| version["hash"].as_str().map(str::to_string))
        .collect();
    for file in std::fs::read_dir(dir.path().join("data").join("classes")).expect("class files") {
        let name = file
            .expect("entry")
            .file_name()
            .to_string_lossy()
            .to_string();
        let hash = name.split('.').next().unwrap_or_default();
        assert!(
            listed.iter().any(|listed| listed == hash),
            "{name} is listed"
        );
    }
    server.stop().await;

    // No config file at all: the defaults, and what the data holds.
    let data = dir.path().join("data").display().to_string();
    let args = ["serve", "--listen", "127.0.0.1:0", "--data-dir", &data];
    let elsewhere = tempfile::tempdir().expect("a directory without podhost.toml");
    let (base, mut child) = spawn_serving(elsewhere.path(), &args).await;
    let response = reqwest::Client::new()
        .post(format!("{base}/objects/versioned/kept/hit"))
        .send()
        .await
        .expect("sent");
    assert_eq!(response.status(), 200);
    assert_eq!(response.text().await.expect("body"), "3");
    child.start_kill().expect("stopped");
    let _ = child.wait().await;
}

/// Starts `podhost ARGS` in `dir`; returns its address once it listens.
async fn spawn_serving(dir: &Path, args: &[&str]) -> (String, tokio::process::Child) {
    use tokio::io::{AsyncBufReadExt, BufReader};

    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_podhost"))
        .current_dir(dir)
        .args(args)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("podhost starts");
    let mut lines = BufReader::new(child.stdout.take().expect("stdout")).lines();
    let base = tokio::time::timeout(Duration::from_secs(60), async {
        loop {
            let line = lines.next_line().await.expect("stdout").expect("a line");
            if let Some(base) = line.strip_prefix("podhost listening on ") {
                return base.to_string();
            }
        }
    })
    .await
    .expect("podhost listens");
    (base, child)
}

#[tokio::test]
async fn bad_uploads_and_callers_get_clear_errors() {
    let small = Options {
        extra_config: "[deploy]\nmax_component_bytes = 100000\n",
        ..options()
    };
    let (server, _dir) = Server::start(small).await;
    let put = |path: &'static str, bytes: Vec<u8>, token: &'static str| {
        let server = &server;
        async move { put_bytes(server, path, bytes, token).await }
    };
    let (status, body) = put("/admin/classes/junk", b"not wasm at all".to_vec(), TOKEN).await;
    assert_eq!((status, code(&body)), (400, "not_wasm"), "{body}");
    let core = b"\0asm\x01\0\0\0".to_vec();
    let (status, body) = put("/admin/classes/junk", core, TOKEN).await;
    assert_eq!((status, code(&body)), (400, "core_module"), "{body}");
    let (status, body) = put("/admin/classes/Bad.Name", b"\0asm".to_vec(), TOKEN).await;
    assert_eq!((status, code(&body)), (400, "invalid_class_name"), "{body}");
    let wasm = std::fs::read(v1()).expect("component");
    assert!(wasm.len() > 100_000);
    let (status, body) = put("/admin/classes/big", wasm.clone(), TOKEN).await;
    assert_eq!(
        (status, code(&body)),
        (413, "component_too_large"),
        "{body}"
    );
    assert!(message(&body).contains("max_component_bytes"), "{body}");
    let (status, body) = put(
        "/admin/classes/junk",
        b"x".to_vec(),
        "a-wrong-token-of-enough-length-0123456789",
    )
    .await;
    assert_eq!((status, code(&body)), (401, "unauthorized"), "{body}");
    server.stop().await;

    let (server, dir) = Server::start(options()).await;
    // The same component with one import renamed to one podhost lacks.
    let renamed = rename(&wasm, b"podhost:object/events@", b"podhost:object/evento@");
    let (status, body) = put_bytes(&server, "/admin/classes/odd", renamed, TOKEN).await;
    assert_eq!((status, code(&body)), (400, "unknown_import"), "{body}");
    assert!(message(&body).contains("podhost:object/evento"), "{body}");
    let (status, body) = admin(&server, reqwest::Method::GET, "/admin/classes/odd").await;
    assert_eq!((status, code(&body)), (404, "class_not_found"), "{body}");

    let (status, body) = deploy(&server, "gone", &v1(), "").await;
    assert_eq!(status, 201, "{body}");
    let stored = dir.path().join("data").join("classes").join(format!(
        "{}.wasm",
        body["hash"].as_str().unwrap_or_default()
    ));
    assert!(stored.exists(), "stored by its hash");
    assert_eq!(server.post("/objects/gone/a/hit", "").await.0, 200);
    let in_catalog = crate::support::eventually(WAIT, || async {
        let (_, body) = admin(&server, reqwest::Method::GET, "/admin/objects?class=gone").await;
        body["objects"]
            .as_array()
            .is_some_and(|list| !list.is_empty())
    })
    .await;
    assert!(in_catalog);
    let (status, body) = admin(&server, reqwest::Method::DELETE, "/admin/classes/gone").await;
    assert_eq!((status, code(&body)), (409, "objects_exist"), "{body}");
    let (status, body) = admin(
        &server,
        reqwest::Method::DELETE,
        "/admin/classes/gone?objects=delete",
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["objects_deleted"], 1);
    assert_eq!(server.get("/objects/gone/a/version").await.0, 404);
    let (status, _) = admin(&server, reqwest::Method::GET, "/admin/classes/gone").await;
    assert_eq!(status, 404);
    assert!(!stored.exists(), "a component no version lists is removed");
    server.stop().await;
}

/// `from` replaced by `to` (of the same length) throughout `bytes`.
fn rename(bytes: &[u8], from: &[u8], to: &[u8]) -> Vec<u8> {
    let mut out = bytes.to_vec();
    let mut found = 0;
    let mut index = 0;
    while index + from.len() <= out.len() {
        if &out[index..index + from.len()] == from {
            out[index..index + from.len()].copy_from_slice(to);
            found += 1;
        }
        index += 1;
    }
    assert!(found > 0, "the component imports {from:?}");
    out
}

#[tokio::test]
async fn of_two_racing_deploys_of_a_class_one_wins_and_the_other_gets_409() {
    let (server, _dir) = Server::start(options()).await;
    let (first, second) = (
        std::fs::read(v1()).expect("v1"),
        std::fs::read(v2()).expect("v2"),
    );
    let mut raced = false;
    for attempt in 0..5 {
        let path = format!("/admin/classes/race-{attempt}");
        let (a, b) = tokio::join!(
            put_bytes(&server, &path, first.clone(), TOKEN),
            put_bytes(&server, &path, second.clone(), TOKEN)
        );
        let mut statuses = [a.0, b.0];
        statuses.sort_unstable();
        assert!(
            statuses == [201, 201] || statuses == [201, 409],
            "{a:?} {b:?}"
        );
        if statuses == [201, 409] {
            let loser = if a.0 == 409 { &a.1 } else { &b.1 };
            assert_eq!(code(loser), "deploy_in_progress", "{loser}");
            raced = true;
            break;
        }
    }
    assert!(
        raced,
        "two deploys started together overlapped at least once"
    );
    server.stop().await;
}

#[tokio::test]
async fn the_deploy_command_ships_a_class_with_its_config() {
    let (server, dir) = Server::start(options()).await;
    let config = dir.path().join("class.toml");
    std::fs::write(
        &config,
        "access = \"public\"\n[limits]\nmax_cpu_per_event = \"2s\"\n",
    )
    .expect("class config");
    let run = |token: &str| {
        std::process::Command::new(env!("CARGO_BIN_EXE_podhost"))
            .arg("deploy")
            .args(["--class", "shipped"])
            .arg(v1())
            .arg("--config")
            .arg(&config)
            .args(["--server", &server.base, "--token", token])
            .output()
            .expect("podhost deploy runs")
    };
    let output = run(TOKEN);
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(
        stdout.contains("deployed class shipped version 1"),
        "{stdout}"
    );
    assert_eq!(
        server.get("/objects/shipped/x/version").await,
        (200, "v1".to_string())
    );
    let (_, body) = admin(&server, reqwest::Method::GET, "/admin/classes/shipped").await;
    assert_eq!(
        body["config"]["limits"]["max_cpu_per_event"], "2s",
        "{body}"
    );
    let output = run("a-wrong-token-of-enough-length-0123456789");
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("401"), "{stderr}");
    server.stop().await;
}

#[tokio::test]
async fn dev_mode_rebuilds_and_redeploys_a_touched_guest_without_a_restart() {
    use tokio::io::{AsyncBufReadExt, BufReader};

    let dir = tempfile::tempdir().expect("temp dir");
    let workspace = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let guest = workspace.join("tests").join("guests").join("versioned");
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_podhost"))
        .arg("dev")
        .arg("--workspace")
        .arg(&workspace)
        .args(["--listen", "127.0.0.1:0", "--data-dir"])
        .arg(dir.path().join("data"))
        .arg("--class")
        .arg(&guest)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("podhost dev starts");
    let mut lines = BufReader::new(child.stdout.take().expect("stdout")).lines();
    // The first build of the guest in release may compile its dependencies.
    let base = tokio::time::timeout(Duration::from_secs(600), async {
        loop {
            let line = lines.next_line().await.expect("stdout").expect("a line");
            if let Some(base) = line.strip_prefix("podhost listening on ") {
                return base.to_string();
            }
        }
    })
    .await
    .expect("the dev server starts");
    let client = reqwest::Client::builder()
        .no_proxy()
        .build()
        .expect("client");
    let version = || async {
        let response = client
            .get(format!("{base}/objects/versioned/x/version"))
            .send()
            .await
            .expect("sent");
        (
            response.status().as_u16(),
            response.text().await.expect("body"),
        )
    };
    assert_eq!(version().await, (200, "v1".to_string()));

    let source = std::fs::File::options()
        .append(true)
        .open(guest.join("src").join("lib.rs"))
        .expect("the guest's source");
    source
        .set_modified(std::time::SystemTime::now())
        .expect("touched");
    let reloaded = tokio::time::timeout(Duration::from_secs(120), async {
        loop {
            let line = lines.next_line().await.expect("stdout").expect("a line");
            if line.starts_with("dev: versioned")
                && (line.contains("deployed version") || line.contains("unchanged"))
            {
                return line;
            }
            assert!(
                !line.contains("refused") && !line.contains("did not build"),
                "{line}"
            );
        }
    })
    .await
    .expect("redeployed within seconds of the touch");
    assert!(reloaded.contains("versioned"), "{reloaded}");
    assert_eq!(
        version().await,
        (200, "v1".to_string()),
        "the same server still serves"
    );
    child.start_kill().expect("stopped");
    let _ = child.wait().await;
}

#[tokio::test]
async fn a_tenant_deploys_and_manages_only_its_own_classes_within_its_quota() {
    let (server, _dir) = Server::start(Options {
        extra_config: "[tenants]\nmax_classes = 1\n",
        ..options()
    })
    .await;
    let tenant = |name: &'static str| {
        let server = &server;
        async move {
            let response = server
                .client
                .post(server.url("/admin/tenants"))
                .bearer_auth(TOKEN)
                .json(&serde_json::json!({ "name": name }))
                .send()
                .await
                .expect("sent");
            assert_eq!(response.status().as_u16(), 201);
            let body: Value = response.json().await.expect("json");
            body["token"].as_str().expect("a token").to_string()
        }
    };
    let (acme, globex) = (tenant("acme").await, tenant("globex").await);
    let wasm = std::fs::read(v1()).expect("component");

    // acme claims a new class by deploying it; the version says who.
    let (status, body) = put_bytes(&server, "/admin/classes/shop", wasm.clone(), &acme).await;
    assert_eq!(status, 201, "{body}");
    assert_eq!(body["deployed_by"], "acme", "{body}");

    // globex cannot deploy over it, nor see, roll back or delete it.
    let (status, body) = put_bytes(&server, "/admin/classes/shop", wasm.clone(), &globex).await;
    assert_eq!(status, 403, "{body}");
    for (method, path) in [
        (reqwest::Method::GET, "/admin/classes/shop"),
        (reqwest::Method::POST, "/admin/classes/shop/rollback"),
        (reqwest::Method::DELETE, "/admin/classes/shop"),
    ] {
        let response = server
            .client
            .request(method, server.url(path))
            .bearer_auth(&globex)
            .send()
            .await
            .expect("sent");
        let status = response.status().as_u16();
        let body = parse_json(&response.text().await.expect("body"));
        assert_eq!((status, code(&body)), (404, "class_not_found"), "{path}");
    }
    let listed = |token: String| {
        let server = &server;
        async move {
            let response = server
                .client
                .get(server.url("/admin/classes"))
                .bearer_auth(token)
                .send()
                .await
                .expect("sent");
            let body: Value = response.json().await.expect("json");
            body["classes"]
                .as_array()
                .map(|classes| {
                    classes
                        .iter()
                        .filter_map(|class| class["name"].as_str().map(str::to_string))
                        .collect::<Vec<_>>()
                })
                .unwrap_or_default()
        }
    };
    assert!(listed(globex.clone()).await.is_empty());
    assert_eq!(listed(acme.clone()).await, ["shop"]);
    assert!(
        listed(TOKEN.to_string())
            .await
            .contains(&"shop".to_string())
    );

    // acme's quota is one class.
    let (status, body) = put_bytes(&server, "/admin/classes/shop2", wasm.clone(), &acme).await;
    assert_eq!((status, code(&body)), (403, "quota_exceeded"), "{body}");

    // Deleting the class gives the name back: globex may then claim it.
    let response = server
        .client
        .delete(server.url("/admin/classes/shop"))
        .bearer_auth(&acme)
        .send()
        .await
        .expect("sent");
    assert_eq!(response.status().as_u16(), 200);
    let (status, body) = put_bytes(&server, "/admin/classes/shop", wasm, &globex).await;
    assert_eq!(status, 201, "{body}");
    assert_eq!(body["deployed_by"], "globex", "{body}");
}

#[tokio::test]
async fn a_redeploy_without_a_config_keeps_the_class_settings() {
    let (server, _dir) = Server::start(options()).await;
    let settings = r#"{"limits": {"max_cpu_per_event": "1s"}}"#;
    let response = server
        .client
        .put(server.url("/admin/classes/kept"))
        .bearer_auth(TOKEN)
        .header("content-type", "application/wasm")
        .header("podhost-class-config", settings)
        .body(std::fs::read(v1()).expect("component"))
        .send()
        .await
        .expect("sent");
    assert_eq!(response.status().as_u16(), 201);
    let (status, body) = deploy(&server, "kept", &v2(), "").await;
    assert_eq!(status, 201, "{body}");
    let (status, class) = admin(&server, reqwest::Method::GET, "/admin/classes/kept").await;
    assert_eq!(status, 200, "{class}");
    assert_eq!(class["active_version"], 2, "{class}");
    assert_eq!(
        class["config"],
        serde_json::json!({"limits": {"max_cpu_per_event": "1s"}}),
        "{class}"
    );
}
