//! An in-process test harness: a [`Runtime`] with the classes a test names,
//! on a temporary data directory, driven without a server process.
//!
//! ```no_run
//! # async fn example() -> anyhow::Result<()> {
//! use podhost::testing::Harness;
//!
//! let harness = Harness::builder()
//!     .class("counter", "target/wasm32-wasip2/guest/counter.wasm")
//!     .start()
//!     .await?;
//! let counter = harness.object("counter", "alice");
//! assert_eq!(counter.post("/", "").await?.text(), "1");
//! let rows = counter.sql("SELECT 1 AS one", &[]).await?;
//! assert_eq!(rows, vec![serde_json::json!({ "one": 1 })]);
//! harness.shut_down().await;
//! # Ok(())
//! # }
//! ```
//!
//! Requests go through the gateway's router (credentials, sandbox headers
//! and error JSON as over the network) without a TCP listener; sockets and
//! alarms go through the runtime the way the gateway and the scheduler
//! deliver them. The alarm scheduler is stopped unless asked for
//! ([`HarnessBuilder::real_alarms`]): alarms fire when the test calls
//! [`Harness::advance_alarms`].

mod alarms;
mod requests;
mod socket;
mod sql;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::gateway::Front;
use anyhow::Context as _;

use crate::bindings::{Request, Response};
use crate::config::{ClassConfig, Config};
use crate::object::{EventError, ObjectAddr};
use crate::runtime::Runtime;

pub use requests::{TestObject, TestResponse};
pub use socket::{SocketFrame, TestSocket};

/// Where the harness keeps its data: a temporary directory it removes, or
/// one the test owns (to restart on it).
enum DataLocation {
    Temporary(tempfile::TempDir),
    Given(PathBuf),
}

impl DataLocation {
    fn path(&self) -> &Path {
        match self {
            DataLocation::Temporary(dir) => dir.path(),
            DataLocation::Given(path) => path,
        }
    }
}

/// How to start a [`Harness`].
pub struct HarnessBuilder {
    config: Config,
    data_dir: Option<PathBuf>,
    real_alarms: bool,
}

impl HarnessBuilder {
    /// Deploys the component at `path` as class `name`, with the default
    /// class settings.
    pub fn class(self, name: &str, path: impl Into<PathBuf>) -> Self {
        self.class_with(
            name,
            ClassConfig {
                path: path.into(),
                ..ClassConfig::default()
            },
        )
    }

    /// Deploys class `name` with its own settings (`access`, `durability`,
    /// limit overrides, `trusted`, `vars`, `secrets`), as a
    /// `[classes.name]` table would; secrets are read when the harness
    /// starts.
    pub fn class_with(mut self, name: &str, class: ClassConfig) -> Self {
        self.config.classes.insert(name.to_string(), class);
        self
    }

    /// Changes any other setting of the runtime's config (limits, alarms,
    /// sockets, the admin token, ...). `data_dir` is the harness's.
    pub fn config(mut self, change: impl FnOnce(&mut Config)) -> Self {
        change(&mut self.config);
        self
    }

    /// Keeps the data in `dir` rather than in a temporary directory, so a
    /// test can start a second harness on it (a restart).
    pub fn data_dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.data_dir = Some(dir.into());
        self
    }

    /// Leaves the alarm scheduler running, so alarms also fire on their
    /// own when due, as in a server.
    pub fn real_alarms(mut self) -> Self {
        self.real_alarms = true;
        self
    }

    /// Starts the runtime. Must be called inside a tokio runtime (e.g. a
    /// `#[tokio::test]`).
    pub async fn start(self) -> anyhow::Result<Harness> {
        let data = match self.data_dir {
            Some(dir) => DataLocation::Given(dir),
            None => DataLocation::Temporary(
                tempfile::tempdir().context("cannot create a temporary data directory")?,
            ),
        };
        let mut config = self.config;
        config.data_dir = data.path().to_path_buf();
        config.validate()?;
        // Compiling the classes and opening the catalog block.
        let runtime = tokio::task::spawn_blocking(move || Runtime::new(config))
            .await
            .context("starting the runtime panicked")??;
        if !self.real_alarms {
            runtime.alarms().stop();
        }
        let gateway = crate::gateway::Gateway::open(Arc::clone(&runtime))?;
        let front = crate::gateway::Front::new(gateway);
        Ok(Harness {
            runtime,
            front,
            _data: data,
        })
    }
}

/// A runtime started in the test process. Call
/// [`shut_down`](Self::shut_down) at the end of a test so every object
/// closes its database; dropping the harness without it leaves that to
/// the process's end.
pub struct Harness {
    runtime: Arc<Runtime>,
    front: Front,
    // Dropped last: the runtime's files live in it.
    _data: DataLocation,
}

impl Harness {
    /// A builder with the default config and no classes.
    pub fn builder() -> HarnessBuilder {
        HarnessBuilder {
            config: Config::default(),
            data_dir: None,
            real_alarms: false,
        }
    }

    /// Object `name` of `class`, to send requests and open sockets to and
    /// to inspect. Nothing is delivered until a request is sent.
    pub fn object(&self, class: &str, name: &str) -> TestObject<'_> {
        TestObject::new(self, class, name)
    }

    /// Sends `request` to `path` on the gateway's router, as a client at
    /// 127.0.0.1 would (any route: `/objects/...`, `/auth/...`,
    /// `/admin/...`, `/metrics`).
    pub async fn send(
        &self,
        request: ::http::Request<axum::body::Body>,
    ) -> anyhow::Result<TestResponse> {
        requests::send(&self.front, request).await
    }

    /// Delivers `request` straight to the object's `fetch`, without the
    /// gateway (no access checks, no credential stripping, no sandbox).
    pub async fn fetch(
        &self,
        class: &str,
        name: &str,
        request: Request,
    ) -> Result<Response, EventError> {
        self.runtime.fetch(class, name, request).await
    }

    /// The runtime, for what the harness does not wrap.
    pub fn runtime(&self) -> &Arc<Runtime> {
        &self.runtime
    }

    /// The data directory.
    pub fn data_dir(&self) -> &Path {
        self._data.path()
    }

    /// The database file of object `name` of `class`.
    pub fn database_path(&self, class: &str, name: &str) -> PathBuf {
        let object = ObjectAddr::new(class, name);
        self.runtime
            .data_dir()
            .object_database(object.class(), object.id())
    }

    /// Lets every object finish and close, as a server's shutdown does.
    pub async fn shut_down(self) {
        self.runtime.shut_down().await;
    }
}
