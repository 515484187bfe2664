//! Building the guests once, starting and stopping servers, HTTP helpers.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::{Mutex, OnceLock};
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::process::{Child, Command};

/// The component of test guest `name` (`probe`, `counter`, ...), to deploy
/// under another class name.
pub fn guest(name: &str) -> PathBuf {
    guests()[name].clone()
}

/// Every guest component the tests use, by class name.
fn guests() -> &'static BTreeMap<String, PathBuf> {
    static GUESTS: OnceLock<BTreeMap<String, PathBuf>> = OnceLock::new();
    GUESTS.get_or_init(|| {
        let workspace = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
        let packages = [
            "blog",
            "chat",
            "counter",
            "game",
            "locks",
            "notes",
            "probe",
            "ratelimit",
            "relay",
            "sessions",
            "team",
            "toolbox",
            "webhooks",
        ]
        .map(String::from);
        podhost::dev::build_guests(
            &workspace,
            &packages,
            &workspace.join("target").join("guests"),
        )
        .expect("building the guests")
    })
}

/// The `migrating` test guest built with `feature` (v1 without one), as a
/// file of its own so several versions can be deployed in turn.
pub fn migrating_guest(feature: Option<&str>) -> PathBuf {
    guest_variant("migrating", feature)
}

/// Test guest `package` built with `feature` (v1 without one), as a file
/// of its own so several versions can be deployed in turn. It blocks
/// (a cargo build, waiting behind other tests' builds): call it before a
/// test starts concurrent clients, whose timeouts it would otherwise eat.
pub fn guest_variant(package: &str, feature: Option<&str>) -> PathBuf {
    static BUILDS: Mutex<()> = Mutex::new(());
    let _one_at_a_time = BUILDS
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    let workspace = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    // Builds with features go to a target dir of their own: in the shared
    // one they would overwrite the plain build that `podhost dev` (run by
    // another test at the same time) reads from the same path.
    let target = match feature {
        None => workspace.join("target").join("guests"),
        Some(_) => workspace.join("target").join("guest-variants"),
    };
    let features: Vec<&str> = feature.into_iter().collect();
    let built = podhost::dev::build_guests_with_features(
        &workspace,
        &[package.to_string()],
        &features,
        &target,
    )
    .expect("building a guest variant");
    let copy = target
        .join("variants")
        .join(format!("{package}-{}.wasm", feature.unwrap_or("v1")));
    std::fs::create_dir_all(copy.parent().expect("a parent")).expect("variants dir");
    let bytes = std::fs::read(&built[package]).expect("reading the built variant");
    // Other tests' servers read this path while they start (and restart):
    // an unchanged copy is left alone, a changed one replaced by a rename,
    // never truncated and rewritten under a reader.
    if std::fs::read(&copy).ok().as_deref() != Some(bytes.as_slice()) {
        let staged = copy.with_extension(format!("wasm.{}.tmp", std::process::id()));
        std::fs::write(&staged, &bytes).expect("staging the variant");
        std::fs::rename(&staged, &copy).expect("putting the variant in place");
    }
    copy
}

/// How a test wants its server.
pub struct Options {
    pub idle_timeout: &'static str,
    pub max_body_bytes: usize,
    pub max_cpu_per_event: &'static str,
    pub max_memory_bytes: usize,
    pub durability: &'static str,
    pub max_storage_bytes: u64,
    pub max_active: u32,
    pub admin_token: Option<&'static str>,
    /// `[alarms] retry_backoff`.
    pub alarm_retry_backoff: &'static str,
    /// Classes beyond the standard guests: name and component.
    pub extra_classes: Vec<(&'static str, PathBuf)>,
    /// More config sections, e.g. `"[sockets]\nping_interval = \"1s\"\n"`.
    /// Keys before the first section go into `[limits]`.
    pub extra_config: &'static str,
    /// Top-level keys, e.g. `"shutdown_timeout = \"1s\"\n"`.
    pub top_level_config: &'static str,
    /// Classes' `access`, by class name.
    pub access: Vec<(&'static str, &'static str)>,
    /// Classes served without the sandbox (`trusted = true`).
    pub trusted: Vec<&'static str>,
    /// Classes' owning `tenant`, by class name.
    pub tenants: Vec<(&'static str, &'static str)>,
    /// The server's limit on open files (soft and hard), if not ours.
    pub file_limit: Option<u64>,
    /// Environment variables the server process gets (beside ours).
    pub env: Vec<(&'static str, &'static str)>,
    /// More keys of a class's table, e.g. `("webhooks", "outbound = [\"127.0.0.1:*\"]")`.
    pub class_keys: Vec<(&'static str, &'static str)>,
    /// No classes in the config file (only those deployed before).
    pub without_classes: bool,
    /// `listen`: a fixed address to restart a server on the same port.
    pub listen: &'static str,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            idle_timeout: "60s",
            max_body_bytes: 1 << 20,
            max_cpu_per_event: "30s",
            max_memory_bytes: 128 << 20,
            durability: "full",
            max_storage_bytes: 1 << 30,
            max_active: 1000,
            admin_token: None,
            alarm_retry_backoff: "2s",
            extra_classes: Vec::new(),
            extra_config: "",
            top_level_config: "",
            access: Vec::new(),
            trusted: Vec::new(),
            tenants: Vec::new(),
            file_limit: None,
            env: Vec::new(),
            class_keys: Vec::new(),
            without_classes: false,
            listen: "127.0.0.1:0",
        }
    }
}

pub type Ws =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// One Server-Sent Event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SseEvent {
    pub id: Option<u64>,
    pub event: String,
    pub data: String,
}

/// A Server-Sent Events response, read event by event.
pub struct EventStream {
    response: reqwest::Response,
    buffer: String,
}

impl EventStream {
    /// Whether the server ends the stream within 10 s (events before the
    /// end are skipped).
    pub async fn ends(&mut self) -> bool {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        loop {
            match tokio::time::timeout_at(deadline, self.response.chunk()).await {
                Ok(Ok(Some(_))) => continue,
                Ok(Ok(None) | Err(_)) => return true,
                Err(_) => return false,
            }
        }
    }

    /// The next event (keep-alive comments skipped), within 10 s.
    pub async fn next(&mut self) -> SseEvent {
        loop {
            if let Some(end) = self.buffer.find("\n\n") {
                let block: String = self.buffer.drain(..end + 2).collect();
                let mut event = SseEvent {
                    id: None,
                    event: "message".into(),
                    data: String::new(),
                };
                let mut data = Vec::new();
                for line in block.lines() {
                    let (field, value) = line.split_once(':').unwrap_or((line, ""));
                    let value = value.strip_prefix(' ').unwrap_or(value);
                    match field {
                        "id" => event.id = value.parse().ok(),
                        "event" => event.event = value.to_string(),
                        "data" => data.push(value),
                        _ => {}
                    }
                }
                if data.is_empty() {
                    continue;
                }
                event.data = data.join("\n");
                return event;
            }
            let chunk = tokio::time::timeout(Duration::from_secs(10), self.response.chunk())
                .await
                .expect("an event within 10 s")
                .expect("the stream is readable")
                .expect("the stream is open");
            self.buffer
                .push_str(std::str::from_utf8(&chunk).expect("UTF-8"));
        }
    }
}

/// A `podhost serve` child process.
pub struct Server {
    child: Child,
    dir: PathBuf,
    /// The log, open for reading: a failing test's data directory (a
    /// `TempDir` declared beside the server) is deleted before the server
    /// is dropped, and an open file can still be read.
    log_file: std::fs::File,
    pub base: String,
    pub client: reqwest::Client,
}

/// A failing test shows the end of its server's log: on CI that is all
/// there is to read once the data directory is gone.
impl Drop for Server {
    fn drop(&mut self) {
        if std::thread::panicking() {
            use std::io::{Read as _, Seek as _};
            let mut bytes = Vec::new();
            let _ = (&self.log_file).seek(std::io::SeekFrom::Start(0));
            let _ = (&self.log_file).read_to_end(&mut bytes);
            let log = String::from_utf8_lossy(&bytes);
            let tail: Vec<&str> = log.lines().rev().take(200).collect();
            let tail: Vec<&str> = tail.into_iter().rev().collect();
            eprintln!(
                "--- the last {} lines of {}:\n{}\n---",
                tail.len(),
                self.dir.join("server.log").display(),
                tail.join("\n")
            );
        }
    }
}

impl Server {
    /// Starts a server with a fresh data directory.
    pub async fn start(options: Options) -> (Server, tempfile::TempDir) {
        let dir = tempfile::tempdir().expect("temp dir");
        let server = Server::start_in(dir.path(), &options).await;
        (server, dir)
    }

    /// Starts a server on `dir` (reusing its data if any).
    pub async fn start_in(dir: &Path, options: &Options) -> Server {
        let mut config = format!(
            "listen = {:?}\ndata_dir = \"data\"\nidle_timeout = \"{}\"\ndurability = \"{}\"\nmax_active = {}\n\
             [alarms]\nretry_backoff = \"{}\"\n\
             [limits]\nmax_body_bytes = {}\nmax_cpu_per_event = \"{}\"\nmax_memory_bytes = {}\nmax_storage_bytes = {}\n",
            options.listen,
            options.idle_timeout,
            options.durability,
            options.max_active,
            options.alarm_retry_backoff,
            options.max_body_bytes,
            options.max_cpu_per_event,
            options.max_memory_bytes,
            options.max_storage_bytes,
        );
        config.push_str(options.extra_config);
        config.insert_str(0, options.top_level_config);
        if let Some(token) = options.admin_token {
            config.insert_str(0, &format!("admin_token = {token:?}\n"));
        }
        let extra = options
            .extra_classes
            .iter()
            .map(|(name, path)| (name.to_string(), path.clone()));
        // A test's own class of a guest's name (another component under
        // `team`, say) takes the place of that guest.
        let standard = if options.without_classes {
            BTreeMap::new()
        } else {
            guests().clone()
        };
        let standard = standard
            .into_iter()
            .filter(|(name, _)| !options.extra_classes.iter().any(|(extra, _)| extra == name));
        for (name, path) in standard.chain(extra) {
            let _ = write!(
                config,
                "[classes.{name}]\npath = {:?}\n",
                path.display().to_string()
            );
            if let Some((_, access)) = options.access.iter().find(|(class, _)| *class == name) {
                let _ = writeln!(config, "access = {access:?}");
            }
            if options.trusted.contains(&name.as_str()) {
                let _ = writeln!(config, "trusted = true");
            }
            if let Some((_, tenant)) = options.tenants.iter().find(|(class, _)| *class == name) {
                let _ = writeln!(config, "tenant = {tenant:?}");
            }
            for (_, keys) in options
                .class_keys
                .iter()
                .filter(|(class, _)| *class == name)
            {
                let _ = writeln!(config, "{keys}");
            }
        }
        let config_path = dir.join("podhost.toml");
        std::fs::write(&config_path, config).expect("writing the config");
        // Appended to: a restarted server's log keeps its predecessor's.
        let mut log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(dir.join("server.log"))
            .expect("log file");
        let _ = std::io::Write::write_all(&mut log, b"--- podhost starts\n");
        let log_file = std::fs::File::open(dir.join("server.log")).expect("log file");
        let mut command = Command::new(env!("CARGO_BIN_EXE_podhost"));
        command
            .arg("serve")
            .arg("--config")
            .arg(&config_path)
            .env("RUST_LOG", "info,podhost=debug")
            .envs(options.env.iter().copied())
            .stdout(Stdio::piped())
            .stderr(log)
            .kill_on_drop(true);
        if let Some(files) = options.file_limit {
            let limit = libc::rlimit {
                rlim_cur: files,
                rlim_max: files,
            };
            // SAFETY: the closure runs in the forked child before exec and
            // only calls setrlimit, which is async-signal-safe.
            unsafe {
                command.pre_exec(move || {
                    if libc::setrlimit(libc::RLIMIT_NOFILE, &limit) == 0 {
                        Ok(())
                    } else {
                        Err(std::io::Error::last_os_error())
                    }
                });
            }
        }
        let mut child = command.spawn().expect("starting podhost");
        let stdout = child.stdout.take().expect("piped stdout");
        let line = tokio::time::timeout(
            Duration::from_secs(60),
            BufReader::new(stdout).lines().next_line(),
        )
        .await
        .ok()
        .and_then(|line| line.ok().flatten());
        let Some(base) =
            line.and_then(|l| l.strip_prefix("podhost listening on ").map(str::to_string))
        else {
            let status = match child.try_wait() {
                Ok(Some(status)) => format!("it exited with {status}"),
                _ => "it was still running after 60 s".to_string(),
            };
            let log = std::fs::read_to_string(dir.join("server.log")).unwrap_or_default();
            // This start's lines only: a restarted server's log begins
            // with its predecessor's, which would bury the cause.
            let this_start = log
                .rsplit("--- podhost starts\n")
                .next()
                .unwrap_or_default();
            panic!("podhost did not start ({status}); the log of this start:\n{this_start}");
        };
        let client = reqwest::Client::builder()
            .no_proxy()
            .timeout(Duration::from_secs(30))
            .build()
            .expect("http client");
        Server {
            child,
            dir: dir.to_path_buf(),
            log_file,
            base,
            client,
        }
    }

    /// Asks the server to stop as an operator would (SIGTERM), without
    /// waiting: a cluster node drains meanwhile.
    pub fn terminate(&self) {
        let pid = self.child.id().expect("running child") as libc::pid_t;
        // SAFETY: sending a signal to our own child process.
        unsafe { libc::kill(pid, libc::SIGTERM) };
    }

    /// Stops the server as an operator would (SIGTERM) and waits for it.
    pub async fn stop(mut self) {
        self.terminate();
        let status = tokio::time::timeout(Duration::from_secs(30), self.child.wait())
            .await
            .expect("podhost stops within 30 s of SIGTERM")
            .expect("waiting for podhost");
        assert!(
            status.success(),
            "podhost exited with {status}; log:\n{}",
            self.log()
        );
    }

    /// Kills the server with SIGKILL, as a crash would, and waits for it.
    pub async fn kill(mut self) {
        self.child.start_kill().expect("SIGKILL sent");
        let status = self.child.wait().await.expect("waiting for podhost");
        assert!(!status.success(), "podhost was killed");
    }

    /// How many files the server process has open.
    pub fn open_files(&self) -> usize {
        let pid = self.child.id().expect("running child");
        std::fs::read_dir(format!("/proc/{pid}/fd")).map_or(0, |dir| dir.count())
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("server.log")).unwrap_or_default()
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// Sends `request` as raw bytes on a new connection and returns all
    /// that comes back until the server closes it (within 10 s).
    pub async fn raw_exchange(&self, request: &[u8]) -> String {
        let mut stream = self.raw_connection(request).await;
        let mut reply = Vec::new();
        let read =
            tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut reply)).await;
        let reply = String::from_utf8_lossy(&reply).into_owned();
        match read {
            Ok(Ok(_)) => {}
            Ok(Err(error)) => panic!("reading the reply failed ({error}) after {reply:?}"),
            Err(_) => panic!("the server did not close the connection within 10 s: {reply:?}"),
        }
        reply
    }

    /// Sends `request` as raw bytes on a new connection and returns what
    /// came back once it contains `until` (or the connection ended, or
    /// 10 s passed).
    pub async fn raw_exchange_until(&self, request: &[u8], until: &str) -> String {
        let mut stream = self.raw_connection(request).await;
        let mut received = Vec::new();
        let mut buffer = [0u8; 8192];
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        while !String::from_utf8_lossy(&received).contains(until) {
            match tokio::time::timeout_at(deadline, stream.read(&mut buffer)).await {
                Ok(Ok(n)) if n > 0 => received.extend_from_slice(&buffer[..n]),
                _ => break,
            }
        }
        String::from_utf8_lossy(&received).into_owned()
    }

    async fn raw_connection(&self, request: &[u8]) -> tokio::net::TcpStream {
        let address = self.base.trim_start_matches("http://");
        let mut stream = tokio::net::TcpStream::connect(address)
            .await
            .expect("connected");
        stream.write_all(request).await.expect("sent");
        stream
    }

    pub async fn get(&self, path: &str) -> (u16, String) {
        read(self.client.get(self.url(path)).send().await).await
    }

    pub async fn post(&self, path: &str, body: impl Into<reqwest::Body>) -> (u16, String) {
        read(self.client.post(self.url(path)).body(body).send().await).await
    }

    /// `method path` with `token` as the bearer and `body` as JSON; the
    /// answer parsed as JSON (`Null` when it is not JSON).
    pub async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        token: &str,
        body: Option<serde_json::Value>,
    ) -> (u16, serde_json::Value) {
        let mut request = self
            .client
            .request(method, self.url(path))
            .bearer_auth(token);
        if let Some(body) = body {
            request = request.json(&body);
        }
        let (status, text) = read(request.send().await).await;
        (
            status,
            serde_json::from_str(&text).unwrap_or(serde_json::Value::Null),
        )
    }

    /// Opens a WebSocket to `path`.
    pub async fn ws(&self, path: &str) -> Result<Ws, tokio_tungstenite::tungstenite::Error> {
        let url = format!("{}{path}", self.base.replacen("http://", "ws://", 1));
        let (ws, _) = tokio_tungstenite::connect_async(url).await?;
        Ok(ws)
    }

    /// Follows the Server-Sent Events at `path`, resuming after
    /// `last_event_id` if given.
    pub async fn events(&self, path: &str, last_event_id: Option<u64>) -> EventStream {
        let mut request = self.client.get(self.url(path));
        if let Some(id) = last_event_id {
            request = request.header("last-event-id", id.to_string());
        }
        let response = request.send().await.expect("subscribed");
        assert_eq!(response.status(), 200, "{path}");
        EventStream {
            response,
            buffer: String::new(),
        }
    }

    /// [`events`](Self::events) as the holder of `bearer` (a user's token).
    pub async fn events_as(&self, path: &str, bearer: &str) -> EventStream {
        let response = self
            .client
            .get(self.url(path))
            .bearer_auth(bearer)
            .send()
            .await
            .expect("subscribed");
        assert_eq!(response.status(), 200, "{path}");
        EventStream {
            response,
            buffer: String::new(),
        }
    }

    /// [`ws`](Self::ws) as the holder of `bearer` (a user's token).
    pub async fn ws_as(
        &self,
        path: &str,
        bearer: &str,
    ) -> Result<Ws, tokio_tungstenite::tungstenite::Error> {
        use tokio_tungstenite::tungstenite::client::IntoClientRequest as _;
        let url = format!("{}{path}", self.base.replacen("http://", "ws://", 1));
        let mut request = url.into_client_request()?;
        let value = format!("Bearer {bearer}")
            .parse()
            .expect("a token is a header value");
        request.headers_mut().insert("authorization", value);
        let (ws, _) = tokio_tungstenite::connect_async(request).await?;
        Ok(ws)
    }

    pub async fn delete(&self, path: &str) -> (u16, String) {
        read(self.client.delete(self.url(path)).send().await).await
    }

    /// GETs `path` and parses the body as JSON.
    pub async fn get_json(&self, path: &str) -> (u16, serde_json::Value) {
        let (status, text) = self.get(path).await;
        (status, parse_json(&text))
    }

    pub async fn post_json(&self, path: &str, body: serde_json::Value) -> (u16, serde_json::Value) {
        let (status, text) = self.post(path, body.to_string()).await;
        (status, parse_json(&text))
    }

    /// The value of a metric from `/metrics`.
    pub async fn metric(&self, name: &str) -> u64 {
        let (_, text) = self.get("/metrics").await;
        text.lines()
            .find_map(|line| line.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
            .unwrap_or_else(|| panic!("no metric {name} in:\n{text}"))
    }

    /// Waits up to `limit` until metric `name` satisfies `condition`.
    pub async fn metric_becomes(
        &self,
        name: &str,
        limit: Duration,
        condition: impl Fn(u64) -> bool,
    ) -> bool {
        eventually(limit, || async { condition(self.metric(name).await) }).await
    }
}

async fn read(response: reqwest::Result<reqwest::Response>) -> (u16, String) {
    let response = response.expect("request sent");
    let status = response.status().as_u16();
    (status, response.text().await.expect("response body"))
}

pub fn parse_json(text: &str) -> serde_json::Value {
    serde_json::from_str(text).unwrap_or_else(|e| panic!("not JSON ({e}): {text}"))
}

/// Waits until `condition` holds, checking every 50 ms for up to `limit`.
pub async fn eventually<F, Fut>(limit: Duration, mut condition: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + limit;
    while tokio::time::Instant::now() < deadline {
        if condition().await {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    false
}

/// An in-process runtime (no server process) with the standard guests
/// plus `extra` classes, on `dir` if given, else a temporary directory.
pub async fn harness_with(
    extra: &[(&str, PathBuf)],
    dir: Option<&Path>,
) -> podhost::testing::Harness {
    let mut builder = podhost::testing::Harness::builder();
    for (name, path) in guests().iter() {
        if !extra.iter().any(|(extra, _)| extra == name) {
            builder = builder.class(name, path);
        }
    }
    for (name, path) in extra {
        builder = builder.class(name, path);
    }
    if let Some(dir) = dir {
        builder = builder.data_dir(dir);
    }
    builder.start().await.expect("the harness starts")
}

/// [`harness_with`] the standard guests, on a temporary directory.
pub async fn harness() -> podhost::testing::Harness {
    harness_with(&[], None).await
}

/// The value of a metric from the harness's `/metrics`.
pub async fn harness_metric(harness: &podhost::testing::Harness, name: &str) -> u64 {
    let request = http::Request::get("/metrics")
        .body(axum::body::Body::empty())
        .expect("a request");
    let text = harness.send(request).await.expect("metrics").text();
    text.lines()
        .find_map(|line| line.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
        .unwrap_or_else(|| panic!("no metric {name} in:\n{text}"))
}

/// Runs the `podhost` binary (a CLI command); whether it succeeded and its
/// output (stdout then stderr).
pub fn podhost_cli(args: &[&str]) -> (bool, String) {
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_podhost"))
        .args(args)
        .output()
        .expect("running podhost");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    (output.status.success(), text)
}

/// `class/name` of each object in a `GET /admin/objects` answer.
pub fn object_names(body: &serde_json::Value) -> Vec<String> {
    body["objects"]
        .as_array()
        .map(|objects| {
            objects
                .iter()
                .map(|o| {
                    format!(
                        "{}/{}",
                        o["class"].as_str().unwrap_or("?"),
                        o["name"].as_str().unwrap_or("?")
                    )
                })
                .collect()
        })
        .unwrap_or_default()
}
