//! Replication to object storage (a `file://` store here): a disk lost
//! after a crash under `replicated` load gives back every acknowledged
//! write, restores reach any point of an object's history, an unreachable
//! store fails `replicated` writes without acknowledging them while
//! `full` ones go on and catch up, a damaged history is refused by name,
//! and the catalog's acknowledged changes (accounts, keys, deploys) come
//! back with the objects.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, SystemTime};

use reqwest::Method;
use serde_json::{Value, json};

use crate::support::{Options, Server, eventually, guest, parse_json};

const TOKEN: &str = "an-admin-token-of-at-least-32-bytes!";
const QUEUED: &str = "podhost_replication_queued_bytes";

/// Options for a server replicating to `store`, with `extra` config after
/// the `[replication]` keys.
fn options(store: &Path, durability: &'static str, timeout: &str) -> Options {
    let config = format!(
        "[replication]\nurl = \"file://{}\"\ntimeout = \"{timeout}\"\n",
        store.display()
    );
    Options {
        durability,
        admin_token: Some(TOKEN),
        extra_config: Box::leak(config.into_boxed_str()),
        ..Options::default()
    }
}

async fn admin(server: &Server, method: Method, path: &str, body: Option<Value>) -> (u16, Value) {
    server.call(method, path, TOKEN, body).await
}

async fn restore(server: &Server, object: &str, body: Value) -> (u16, Value) {
    let path = format!("/admin/objects/counter/{object}/restore");
    admin(server, Method::POST, &path, Some(body)).await
}

async fn count(server: &Server, path: &str) -> u64 {
    let (status, body) = server.get(path).await;
    assert_eq!(status, 200, "{body}");
    body.parse().expect("a count")
}

/// Waits until nothing is left to upload.
async fn shipped(server: &Server) {
    assert!(
        eventually(Duration::from_secs(20), || async {
            server.metric(QUEUED).await == 0
        })
        .await,
        "the replication queue drains"
    );
}

/// Deploys the counter component as `class` over the API (so the class
/// lives in the catalog, not the config).
async fn deploy_counter(server: &Server, class: &str) {
    let deployed = server
        .client
        .put(server.url(&format!("/admin/classes/{class}")))
        .bearer_auth(TOKEN)
        .body(std::fs::read(guest("counter")).expect("component"))
        .send()
        .await
        .expect("deploy");
    assert_eq!(deployed.status().as_u16(), 201);
}

/// `podhost restore-all` from the `file://` store `store` into the data
/// directory of the server that ran in `dir`.
fn restore_all(dir: &Path, store: &Path) {
    let restored = std::process::Command::new(env!("CARGO_BIN_EXE_podhost"))
        .args(["restore-all", "--from"])
        .arg(format!("file://{}", store.display()))
        .arg("--config")
        .arg(dir.join("podhost.toml"))
        .output()
        .expect("podhost restore-all runs");
    assert!(
        restored.status.success(),
        "restore-all failed: {}",
        String::from_utf8_lossy(&restored.stderr)
    );
}

fn rfc3339(at: SystemTime) -> String {
    humantime::format_rfc3339_millis(at).to_string()
}

const OBJECTS: usize = 100;
const CLIENTS: usize = 16;

#[derive(Default)]
struct Tally {
    sent: Vec<AtomicU64>,
    acknowledged: Vec<AtomicU64>,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn every_acknowledged_replicated_write_survives_a_crash_and_the_loss_of_the_disk() {
    let dir = tempfile::tempdir().expect("temp dir");
    let store = dir.path().join("store");
    let mut options = options(&store, "replicated", "5s");
    let config = format!("{}catalog_interval = \"200ms\"\n", options.extra_config);
    options.extra_config = Box::leak(config.into_boxed_str());
    let server = Server::start_in(dir.path(), &options).await;
    // A class deployed over the API lives in the catalog, not the config.
    deploy_counter(&server, "deployed").await;
    assert_eq!(
        server.post("/objects/deployed/d", "").await,
        (200, "1".into())
    );
    let catalog = store.join("_catalog");
    assert!(
        eventually(Duration::from_secs(20), || async {
            let files = walk_if_any(&catalog);
            files
                .iter()
                .any(|f| f.extension().is_some_and(|e| e == "wasm"))
                && files
                    .iter()
                    .any(|f| f.extension().is_some_and(|e| e == "snap"))
        })
        .await,
        "the catalog and the components are shipped"
    );
    let tally = Arc::new(Tally {
        sent: (0..OBJECTS).map(|_| AtomicU64::new(0)).collect(),
        acknowledged: (0..OBJECTS).map(|_| AtomicU64::new(0)).collect(),
    });
    let stop = Arc::new(AtomicBool::new(false));
    let mut clients = tokio::task::JoinSet::new();
    for client in 0..CLIENTS {
        let (http, tally, stop) = (server.client.clone(), Arc::clone(&tally), Arc::clone(&stop));
        let base = server.url("/objects/counter/lost-disk-");
        clients.spawn(async move {
            let mut object = client;
            while !stop.load(Ordering::SeqCst) {
                tally.sent[object].fetch_add(1, Ordering::SeqCst);
                match http.post(format!("{base}{object}")).send().await {
                    Ok(response) if response.status() == 200 => {
                        tally.acknowledged[object].fetch_add(1, Ordering::SeqCst);
                    }
                    Ok(response) => panic!("a write failed: {}", response.status()),
                    // Killed: this one may or may not have been kept.
                    Err(_) => break,
                }
                object = (object + CLIENTS) % OBJECTS;
            }
        });
    }
    let total = || {
        tally
            .acknowledged
            .iter()
            .map(|a| a.load(Ordering::SeqCst))
            .sum::<u64>()
    };
    assert!(
        eventually(Duration::from_secs(60), || async { total() >= 400 }).await,
        "writes are acknowledged under load"
    );
    server.kill().await;
    stop.store(true, Ordering::SeqCst);
    while clients.join_next().await.is_some() {}

    std::fs::remove_dir_all(dir.path().join("data")).expect("the disk is lost");
    restore_all(dir.path(), &store);

    let server = Server::start_in(dir.path(), &options).await;
    for object in 0..OBJECTS {
        let stored = count(&server, &format!("/objects/counter/lost-disk-{object}")).await;
        let acknowledged = tally.acknowledged[object].load(Ordering::SeqCst);
        let sent = tally.sent[object].load(Ordering::SeqCst);
        assert!(
            stored >= acknowledged,
            "object {object} has {stored} after the restore, {acknowledged} were acknowledged"
        );
        assert!(stored <= sent, "object {object}: {stored} > {sent} sent");
    }
    assert_eq!(count(&server, "/objects/deployed/d").await, 1);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledged_catalog_changes_survive_the_loss_of_the_disk_without_waiting_for_an_interval()
{
    use crate::accounts::{PASSWORD, call, error_code};
    let dir = tempfile::tempdir().expect("temp dir");
    let store = dir.path().join("store");
    let mut options = options(&store, "replicated", "2s");
    // No interval ships anything during the test: only the routes do.
    let config = format!("{}catalog_interval = \"1h\"\n", options.extra_config);
    options.extra_config = Box::leak(config.into_boxed_str());
    options.extra_classes = vec![("notes", guest("probe")), ("inbox", guest("probe"))];
    options.access = vec![("notes", "user"), ("inbox", "key")];
    let server = Server::start_in(dir.path(), &options).await;
    let credentials = json!({ "email": "alice@example.com", "password": PASSWORD });
    let (status, body) = call(
        &server,
        Method::POST,
        "/auth/signup",
        None,
        Some(credentials.clone()),
    )
    .await;
    assert_eq!(status, 201, "{body}");
    let (status, created) = call(
        &server,
        Method::POST,
        "/admin/objects/inbox/alice/keys",
        Some(TOKEN),
        Some(json!({ "label": "laptop" })),
    )
    .await;
    assert_eq!(status, 201, "{created}");
    let key = created["key"]["key"].as_str().expect("the key").to_string();
    deploy_counter(&server, "deployed").await;
    server.kill().await;

    std::fs::remove_dir_all(dir.path().join("data")).expect("the disk is lost");
    restore_all(dir.path(), &store);

    let server = Server::start_in(dir.path(), &options).await;
    let (status, body) = call(
        &server,
        Method::POST,
        "/auth/login",
        None,
        Some(credentials),
    )
    .await;
    assert_eq!(
        status, 200,
        "the user signed up before the crash logs in: {body}"
    );
    let (status, whoami) = call(&server, Method::GET, "/key/whoami", Some(&key), None).await;
    assert_eq!(status, 200, "the key made before the crash works: {whoami}");
    assert_eq!(whoami["name"], "alice");
    assert_eq!(
        server.post("/objects/deployed/d", "").await,
        (200, "1".into()),
        "the class deployed before the crash serves"
    );

    // With the store away, a catalog change is not acknowledged.
    let outage = Outage::begin(&store);
    let (status, body) = call(
        &server,
        Method::POST,
        "/auth/signup",
        None,
        Some(json!({ "email": "bob@example.com", "password": PASSWORD })),
    )
    .await;
    assert_eq!(
        (status, error_code(&body)),
        (503, "replication_unavailable"),
        "{body}"
    );
    outage.end();
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restore_brings_back_exactly_the_writes_up_to_a_time_or_transaction() {
    let dir = tempfile::tempdir().expect("temp dir");
    let store = dir.path().join("store");
    let server = Server::start_in(dir.path(), &options(&store, "full", "5s")).await;
    let mut middle = None;
    for n in 1..=10 {
        let (status, body) = server.post("/objects/counter/pitr", "").await;
        assert_eq!((status, body), (200, n.to_string()));
        if n == 5 {
            tokio::time::sleep(Duration::from_millis(30)).await;
            middle = Some(SystemTime::now());
            tokio::time::sleep(Duration::from_millis(30)).await;
        }
    }
    let end = SystemTime::now();
    let middle = middle.expect("a time after the fifth write");
    shipped(&server).await;

    let (status, body) = restore(
        &server,
        "pitr",
        json!({"at": rfc3339(middle), "as": "copy"}),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(count(&server, "/objects/counter/copy").await, 5);
    assert_eq!(
        count(&server, "/objects/counter/pitr").await,
        10,
        "untouched"
    );
    let fifth = body["txid"].as_u64().expect("a txid");

    let (status, body) = restore(&server, "pitr", json!({"at": rfc3339(middle)})).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["txid"].as_u64(), Some(fifth));
    assert_eq!(count(&server, "/objects/counter/pitr").await, 5);
    // The object goes on from there, in a new generation.
    let (_, body) = server.post("/objects/counter/pitr", "").await;
    assert_eq!(body, "6");
    shipped(&server).await;

    // The earlier timeline is still there, by time and by transaction.
    let (status, body) = restore(&server, "pitr", json!({"at": rfc3339(end)})).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(count(&server, "/objects/counter/pitr").await, 10);
    let (status, body) = restore(&server, "pitr", json!({"txid": fifth + 2})).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(count(&server, "/objects/counter/pitr").await, 7);

    let (status, body) = restore(&server, "pitr", json!({"txid": 1_000_000})).await;
    assert_eq!(status, 422, "{body}");
    assert_eq!(body["error"]["code"], "restore_refused");
    let (status, body) = restore(&server, "pitr", json!({"at": "yesterday"})).await;
    assert_eq!(status, 400, "{body}");
    let (status, _) = restore(&server, "never-written", json!({})).await;
    assert_eq!(status, 422);
    shipped(&server).await;
    server.stop().await;

    // Offline, from the command line, into another object.
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_podhost"))
        .args(["objects", "restore", "--class", "counter", "--name", "pitr"])
        .args(["--txid", &(fifth + 1).to_string(), "--as", "offline"])
        .arg("--config")
        .arg(dir.path().join("podhost.toml"))
        .output()
        .expect("podhost objects restore runs");
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let server = Server::start_in(dir.path(), &options(&store, "full", "5s")).await;
    assert_eq!(count(&server, "/objects/counter/offline").await, 6);
    server.stop().await;
}

/// Makes the store unreachable: its directory replaced by a file.
struct Outage {
    store: PathBuf,
    away: PathBuf,
}

impl Outage {
    fn begin(store: &Path) -> Outage {
        let away = store.with_extension("away");
        std::fs::rename(store, &away).expect("move the store away");
        std::fs::write(store, b"not a directory").expect("block its path");
        Outage {
            store: store.to_path_buf(),
            away,
        }
    }

    fn end(self) {
        std::fs::remove_file(&self.store).expect("unblock");
        std::fs::rename(&self.away, &self.store).expect("bring the store back");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_store_fails_replicated_writes_and_full_ones_catch_up() {
    let dir = tempfile::tempdir().expect("temp dir");
    let store = dir.path().join("store");
    let mut options = options(&store, "full", "1s");
    options.extra_classes = vec![("ledger", guest("counter"))];
    options.class_keys = vec![("ledger", "durability = \"replicated\"")];
    let server = Server::start_in(dir.path(), &options).await;
    assert_eq!(
        server.post("/objects/ledger/a", "").await,
        (200, "1".into())
    );
    assert_eq!(
        server.post("/objects/counter/b", "").await,
        (200, "1".into())
    );
    shipped(&server).await;

    let outage = Outage::begin(&store);
    for _ in 0..3 {
        let (status, body) = server.post("/objects/ledger/a", "").await;
        assert_eq!(status, 503, "{body}");
        assert_eq!(
            parse_json(&body)["error"]["code"],
            "replication_unavailable"
        );
    }
    for n in 2..=6 {
        assert_eq!(
            server.post("/objects/counter/b", "").await,
            (200, n.to_string()),
            "full writes go on"
        );
    }
    assert!(
        server.metric(QUEUED).await > 0,
        "uploads wait for the store"
    );
    outage.end();
    shipped(&server).await;

    // The refused writes were committed here and shipped later: the
    // history has every commit, in order, none twice.
    let (status, body) = server.post("/objects/ledger/a", "").await;
    assert_eq!((status, body.as_str()), (200, "5"));
    for (class, object, expected) in [("ledger", "a", 5), ("counter", "b", 6)] {
        let path = format!("/admin/objects/{class}/{object}/restore");
        let (status, body) = admin(
            &server,
            Method::POST,
            &path,
            Some(json!({"as": format!("{object}-copy")})),
        )
        .await;
        assert_eq!(status, 200, "{body}");
        let copy = format!("/objects/{class}/{object}-copy");
        assert_eq!(count(&server, &copy).await, expected);
    }
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_corrupt_segment_is_refused_by_name_and_nothing_older_is_restored() {
    let dir = tempfile::tempdir().expect("temp dir");
    let store = dir.path().join("store");
    let server = Server::start_in(dir.path(), &options(&store, "full", "5s")).await;
    for _ in 0..3 {
        assert_eq!(server.post("/objects/counter/c", "").await.0, 200);
    }
    shipped(&server).await;
    // The object's segments, not the catalog's.
    let mut segments: Vec<PathBuf> = walk(&store.join("counter"))
        .into_iter()
        .filter(|path| path.extension().is_some_and(|e| e == "seg"))
        .collect();
    segments.sort();
    let last = segments.last().expect("segments were shipped");
    let mut bytes = std::fs::read(last).expect("read a segment");
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0xff;
    std::fs::write(last, bytes).expect("damage it");

    let (status, body) = restore(&server, "c", json!({})).await;
    assert_eq!(status, 422, "{body}");
    let message = body["error"]["message"].as_str().expect("a message");
    let name = last.file_name().expect("a name").to_string_lossy();
    assert!(message.contains(name.as_ref()), "{message} names {name}");
    assert!(message.contains("checksum"), "{message}");
    assert_eq!(count(&server, "/objects/counter/c").await, 3, "untouched");
    server.stop().await;
}

fn walk_if_any(dir: &Path) -> Vec<PathBuf> {
    if dir.is_dir() { walk(dir) } else { Vec::new() }
}

fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir(dir).expect("read dir").flatten() {
        let path = entry.path();
        if path.is_dir() {
            found.extend(walk(&path));
        } else {
            found.push(path);
        }
    }
    found
}

/// An S3-compatible server on 127.0.0.1 (moto's, installed by `.ci/run`),
/// stopped when dropped.
pub(crate) struct S3Server {
    child: tokio::process::Child,
    pub(crate) endpoint: String,
}

impl S3Server {
    pub(crate) async fn start(bucket: &str) -> S3Server {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|listener| listener.local_addr())
            .expect("a free port")
            .port();
        let child = tokio::process::Command::new("moto_server")
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .expect("moto_server runs (pip install 'moto[server]'; .ci/run does)");
        let endpoint = format!("http://127.0.0.1:{port}");
        let client = reqwest::Client::builder()
            .no_proxy()
            .build()
            .expect("client");
        let bucket_url = format!("{endpoint}/{bucket}");
        let made = eventually(Duration::from_secs(30), || async {
            client
                .put(&bucket_url)
                .send()
                .await
                .is_ok_and(|response| response.status().is_success())
        })
        .await;
        assert!(made, "moto_server answers and makes the bucket");
        S3Server { child, endpoint }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_s3_compatible_store_takes_replicated_writes_and_gives_them_back_after_the_disk_is_lost()
{
    let s3 = S3Server::start("podhost-test").await;
    let dir = tempfile::tempdir().expect("temp dir");
    let url = "s3://podhost-test/some/prefix";
    let config = format!(
        "[replication]\nurl = \"{url}\"\nendpoint = \"{}\"\nallow_http = true\nregion = \"us-east-1\"\ntimeout = \"5s\"\n",
        s3.endpoint
    );
    let credentials = [
        ("AWS_ACCESS_KEY_ID", "podhost-test"),
        ("AWS_SECRET_ACCESS_KEY", "podhost-test"),
    ];
    let options = Options {
        durability: "replicated",
        admin_token: Some(TOKEN),
        extra_config: Box::leak(config.into_boxed_str()),
        env: credentials.to_vec(),
        ..Options::default()
    };
    let server = Server::start_in(dir.path(), &options).await;
    for object in 0..5 {
        for n in 1..=(object + 1) {
            let path = format!("/objects/counter/s3-{object}");
            assert_eq!(server.post(&path, "").await, (200, n.to_string()));
        }
    }
    let (status, body) = restore(&server, "s3-4", json!({"txid": 1, "as": "s3-copy"})).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(count(&server, "/objects/counter/s3-copy").await, 1);
    server.kill().await;

    std::fs::remove_dir_all(dir.path().join("data")).expect("the disk is lost");
    let restored = std::process::Command::new(env!("CARGO_BIN_EXE_podhost"))
        .args(["restore-all", "--from", url, "--config"])
        .arg(dir.path().join("podhost.toml"))
        .envs(credentials)
        .output()
        .expect("podhost restore-all runs");
    assert!(
        restored.status.success(),
        "restore-all failed: {}",
        String::from_utf8_lossy(&restored.stderr)
    );
    let server = Server::start_in(dir.path(), &options).await;
    for object in 0..5 {
        let path = format!("/objects/counter/s3-{object}");
        assert_eq!(count(&server, &path).await, object as u64 + 1);
    }
    assert_eq!(count(&server, "/objects/counter/s3-copy").await, 1);
    server.stop().await;
    drop(s3.child);
}

/// The generations in the store of `counter/name` (none once its history
/// is gone).
fn generations(store: &Path, name: &str) -> Vec<String> {
    let id = podhost::object::ObjectAddr::new("counter", name)
        .id()
        .to_string();
    std::fs::read_dir(store.join("counter").join(id)).map_or_else(
        |_| Vec::new(),
        |entries| {
            let mut found: Vec<String> = entries
                .flatten()
                .filter(|entry| entry.path().is_dir())
                .map(|entry| entry.file_name().to_string_lossy().into_owned())
                .collect();
            found.sort();
            found
        },
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn history_is_kept_for_the_retention_window_and_purged_on_request() {
    let dir = tempfile::tempdir().expect("temp dir");
    let store = dir.path().join("store");
    let mut options = options(&store, "full", "5s");
    let config = format!(
        "{}retention = \"3s\"\ncompaction_interval = \"300ms\"\n",
        options.extra_config
    );
    options.extra_config = Box::leak(config.into_boxed_str());
    let server = Server::start_in(dir.path(), &options).await;
    for name in ["kept", "deleted", "purged"] {
        assert_eq!(
            server.post(&format!("/objects/counter/{name}"), "").await.0,
            200
        );
    }
    // A restore starts a second generation of `kept`.
    let (status, body) = restore(&server, "kept", json!({})).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        server.post("/objects/counter/kept", "").await,
        (200, "2".into())
    );
    shipped(&server).await;
    let first = generations(&store, "kept");
    assert_eq!(first.len(), 2, "{first:?}");

    let (status, body) = admin(
        &server,
        Method::DELETE,
        "/admin/objects/counter/deleted",
        None,
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let (status, body) = admin(
        &server,
        Method::DELETE,
        "/admin/objects/counter/purged?purge=true",
        None,
    )
    .await;
    assert_eq!((status, body["purged"].as_bool()), (200, Some(true)));
    assert!(
        eventually(Duration::from_secs(2), || async {
            generations(&store, "purged").is_empty()
        })
        .await,
        "purged at once"
    );
    assert_eq!(
        generations(&store, "deleted").len(),
        1,
        "kept for the window"
    );

    assert!(
        eventually(Duration::from_secs(20), || async {
            generations(&store, "deleted").is_empty() && generations(&store, "kept").len() == 1
        })
        .await,
        "after the window: the deleted object's history and the older generation are gone"
    );
    assert_eq!(
        generations(&store, "kept"),
        first[1..].to_vec(),
        "the latest stays"
    );
    let (status, body) = restore(&server, "kept", json!({"as": "kept-copy"})).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(count(&server, "/objects/counter/kept-copy").await, 2);
    server.stop().await;
}
