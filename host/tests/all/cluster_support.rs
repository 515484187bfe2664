//! A real etcd for cluster tests: Debian's `etcd-server` (`/usr/bin/etcd`)
//! on 127.0.0.1 with free ports and a temporary data directory.

use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use tokio::process::{Child, Command};

use podhost::object::ObjectAddr;

use crate::support::{Options, Server, eventually};

pub const ETCD: &str = "/usr/bin/etcd";

pub struct Etcd {
    child: Option<Child>,
    pub client_port: u16,
    _dir: tempfile::TempDir,
    http: reqwest::Client,
}

/// A port nobody listens on now.
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .expect("a free port")
        .port()
}

impl Etcd {
    /// Starts etcd and waits (at most 30 s) until it answers `/health`.
    pub async fn start() -> Etcd {
        assert!(
            Path::new(ETCD).exists(),
            "cluster tests need etcd: apt-get install etcd-server (.ci/run does)"
        );
        let dir = tempfile::tempdir().expect("temp dir");
        let (client_port, peer_port) = (free_port(), free_port());
        let client = format!("http://127.0.0.1:{client_port}");
        let peer = format!("http://127.0.0.1:{peer_port}");
        let log = std::fs::File::create(dir.path().join("etcd.log")).expect("log file");
        let child = Command::new(ETCD)
            .arg("--name=test")
            .arg(format!("--data-dir={}", dir.path().join("data").display()))
            .arg(format!("--listen-client-urls={client}"))
            .arg(format!("--advertise-client-urls={client}"))
            .arg(format!("--listen-peer-urls={peer}"))
            .arg(format!("--initial-advertise-peer-urls={peer}"))
            .arg(format!("--initial-cluster=test={peer}"))
            .stdout(Stdio::null())
            .stderr(log)
            .kill_on_drop(true)
            .spawn()
            .expect("starting etcd");
        let http = reqwest::Client::builder()
            .no_proxy()
            .timeout(Duration::from_secs(5))
            .build()
            .expect("http client");
        let etcd = Etcd {
            child: Some(child),
            client_port,
            _dir: dir,
            http,
        };
        let health = format!("{client}/health");
        let up = eventually(Duration::from_secs(30), || {
            let request = etcd.http.get(&health).send();
            async move { request.await.is_ok_and(|r| r.status().is_success()) }
        })
        .await;
        assert!(up, "etcd did not become healthy within 30 s");
        etcd
    }

    /// `etcd://127.0.0.1:<port>/<prefix>`.
    pub fn url(&self, prefix: &str) -> String {
        format!("etcd://127.0.0.1:{}/{prefix}", self.client_port)
    }

    /// The value of `key`, read through etcd's JSON gateway.
    pub async fn get(&self, key: &str) -> Option<String> {
        let response = self.range(key).await;
        let value = response["kvs"][0]["value"].as_str()?;
        let bytes = BASE64.decode(value).expect("base64 from etcd");
        Some(String::from_utf8(bytes).expect("UTF-8 value"))
    }

    /// The revision that created `key` (its fencing epoch, for an owner key).
    pub async fn create_revision(&self, key: &str) -> Option<u64> {
        let response = self.range(key).await;
        // The JSON gateway writes 64-bit numbers as strings.
        response["kvs"][0]["create_revision"].as_str()?.parse().ok()
    }

    async fn range(&self, key: &str) -> serde_json::Value {
        self.http
            .post(format!("http://127.0.0.1:{}/v3/kv/range", self.client_port))
            .json(&serde_json::json!({ "key": BASE64.encode(key) }))
            .send()
            .await
            .expect("etcd answers")
            .json()
            .await
            .expect("JSON from etcd")
    }

    /// Kills etcd (SIGKILL) and waits for it.
    pub async fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill().await;
        }
    }
}

pub(crate) const PREFIX: &str = "test";

/// A node named `node` of the cluster on `etcd`.
pub(crate) async fn node(etcd: &Etcd, node: &str) -> (Server, tempfile::TempDir) {
    node_with(etcd, node, "").await
}

/// A node with more config sections.
pub(crate) async fn node_with(etcd: &Etcd, node: &str, more: &str) -> (Server, tempfile::TempDir) {
    Server::start(node_options(etcd, node, more)).await
}

/// The options of a node. Every client and every node forwarding to it is
/// 127.0.0.1, so its per-address cap is raised.
pub(crate) fn node_options(etcd: &Etcd, node: &str, more: &str) -> Options {
    node_options_via(&etcd.url(PREFIX), node, "3s", more)
}

/// The options of a node reaching etcd at `etcd_url` (a proxy, say) with
/// a lease of `lease_ttl`.
pub(crate) fn node_options_via(etcd_url: &str, node: &str, lease_ttl: &str, more: &str) -> Options {
    // Options take 'static text; a test leaks a few short strings.
    let section: &'static str = Box::leak(
        format!(
            "[server]\nmax_connections_per_address = 4096\n\
             [cluster]\netcd = {etcd_url:?}\nnode = {node:?}\nlease_ttl = {lease_ttl:?}\n{more}"
        )
        .into_boxed_str(),
    );
    Options {
        extra_config: section,
        ..Options::default()
    }
}

/// A `file://` replication store in a new directory, and its section.
pub(crate) fn file_store() -> (tempfile::TempDir, String) {
    let store = tempfile::tempdir().expect("a store directory");
    let section = format!(
        "[replication]\nurl = \"file://{}\"\n",
        store.path().display()
    );
    (store, section)
}

/// POSTs to `path` on `server` as if nodes `hops` had forwarded it; the
/// status and the error's `code`.
pub(crate) async fn post_forwarded(server: &Server, path: &str, hops: &str) -> (u16, String) {
    let response = server
        .client
        .post(server.url(path))
        .header("x-podhost-forwarded", hops)
        .send()
        .await
        .expect("a response");
    let status = response.status().as_u16();
    let body: serde_json::Value = response.json().await.unwrap_or_default();
    let code = body["error"]["code"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    (status, code)
}

pub(crate) fn owner_key(class: &str, name: &str) -> String {
    format!(
        "/{PREFIX}/owners/{class}/{}",
        ObjectAddr::new(class, name).id()
    )
}

pub(crate) fn address(server: &Server) -> String {
    server
        .base
        .strip_prefix("http://")
        .expect("an http base")
        .to_string()
}

/// The fencing epoch in the header of every segment and snapshot stored
/// below `dir`.
pub(crate) fn stored_epochs(dir: &Path) -> Vec<u64> {
    stored_epochs_by_path(dir)
        .into_iter()
        .map(|(_, epoch)| epoch)
        .collect()
}

/// Every segment and snapshot stored below `dir`, with its fencing epoch.
pub(crate) fn stored_epochs_by_path(dir: &Path) -> Vec<(std::path::PathBuf, u64)> {
    let mut epochs = Vec::new();
    for entry in std::fs::read_dir(dir)
        .expect("a stored directory")
        .flatten()
    {
        let path = entry.path();
        if path.is_dir() {
            epochs.extend(stored_epochs_by_path(&path));
        } else if path
            .extension()
            .is_some_and(|ext| ext == "seg" || ext == "snap")
        {
            let bytes = std::fs::read(&path).expect("a stored piece");
            let epoch = u64::from_be_bytes(bytes[16..24].try_into().expect("8 bytes"));
            epochs.push((path, epoch));
        }
    }
    epochs
}
