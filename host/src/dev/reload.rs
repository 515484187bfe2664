//! `podhost dev`'s hot reload: watches each guest crate's sources (by
//! polling their modification times, so no watcher dependency), rebuilds a
//! changed crate and deploys it through the same path as
//! `PUT /admin/classes/{class}`, printing the result or the build error.
//! The server keeps running throughout.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use serde_json::Value;

use crate::deploy::{self, DeployRequest};
use crate::runtime::Runtime;
use crate::tenants::Principal;

/// How often sources are looked at.
const POLL: Duration = Duration::from_millis(500);
/// Recorded as the deployer of versions dev mode makes.
const DEV_DEPLOYER: &str = "dev";

/// How a watched crate is built.
#[derive(Debug, Clone)]
pub enum Build {
    /// A package of the podhost workspace (`examples/`, or a `--class`
    /// crate that is a member), built like the tests' guests.
    Workspace { workspace: PathBuf, package: String },
    /// A crate of the author's own (`--class PATH`), built in release.
    Crate { manifest: PathBuf },
}

/// A class dev mode keeps in step with its crate.
#[derive(Debug, Clone)]
pub struct Watched {
    pub class: String,
    /// The crate's directory: its sources are watched.
    pub dir: PathBuf,
    pub build: Build,
    /// The class's table, as deployed at start.
    pub config: Value,
    /// The sources' newest modification time when last built: taken before
    /// the build, so an edit made meanwhile is not missed.
    pub built_from: Option<SystemTime>,
}

impl Watched {
    /// Builds the crate; returns its component.
    pub fn build(&self) -> anyhow::Result<PathBuf> {
        match &self.build {
            Build::Workspace { workspace, package } => {
                let built = super::build_guests(
                    workspace,
                    std::slice::from_ref(package),
                    &workspace.join("target").join("guests"),
                )?;
                built
                    .get(package)
                    .cloned()
                    .ok_or_else(|| anyhow::anyhow!("cargo built no component for {package}"))
            }
            Build::Crate { manifest } => super::build_crate(manifest),
        }
    }
}

/// The newest modification time under `dir`, skipping `target`, hidden
/// directories and npm packages (a web UI beside a crate, such as
/// `examples/notes/web`, is not its source; its `node_modules` would make
/// every poll walk thousands of files).
pub fn newest_change(dir: &Path) -> Option<SystemTime> {
    let mut newest = None;
    let mut pending = vec![dir.to_path_buf()];
    while let Some(dir) = pending.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries.flatten() {
            let name = entry.file_name();
            let name = name.to_string_lossy();
            if name == "target" || name.starts_with('.') {
                continue;
            }
            let Ok(meta) = entry.metadata() else {
                continue;
            };
            if meta.is_dir() {
                let path = entry.path();
                if name != "node_modules" && !path.join("package.json").exists() {
                    pending.push(path);
                }
            } else if let Ok(modified) = meta.modified() {
                newest = newest.max(Some(modified));
            }
        }
    }
    newest
}

/// Watches `classes` until the process ends.
pub async fn watch(runtime: Arc<Runtime>, classes: Vec<Watched>) {
    let mut seen: Vec<Option<SystemTime>> = classes.iter().map(|class| class.built_from).collect();
    loop {
        tokio::time::sleep(POLL).await;
        for (class, last) in classes.iter().zip(seen.iter_mut()) {
            let dir = class.dir.clone();
            let now = tokio::task::spawn_blocking(move || newest_change(&dir))
                .await
                .unwrap_or(None);
            if now == *last {
                continue;
            }
            *last = now;
            reload(&runtime, class).await;
        }
    }
}

/// Rebuilds and deploys one class, saying what happened on stdout.
async fn reload(runtime: &Arc<Runtime>, class: &Watched) {
    println!("dev: {} changed, rebuilding", class.class);
    let watched = class.clone();
    let built = tokio::task::spawn_blocking(move || {
        let wasm = watched.build()?;
        std::fs::read(&wasm)
            .map_err(|error| anyhow::anyhow!("cannot read {}: {error}", wasm.display()))
    })
    .await;
    let bytes = match built {
        Ok(Ok(bytes)) => bytes,
        Ok(Err(error)) => {
            println!(
                "dev: {} did not build (the server keeps the running version): {error:#}",
                class.class
            );
            return;
        }
        Err(error) => {
            println!("dev: building {} panicked: {error}", class.class);
            return;
        }
    };
    let request = DeployRequest {
        class: class.class.clone(),
        wasm: bytes,
        config: Some(class.config.clone()),
        deployed_by: DEV_DEPLOYER.to_string(),
        principal: Principal::Admin,
        force: false,
        check: None,
    };
    match deploy::deploy(runtime, request).await {
        Ok(deployed) if deployed.unchanged => println!(
            "dev: {} rebuilt, unchanged (version {})",
            class.class, deployed.version.version
        ),
        Ok(deployed) => println!(
            "dev: {} deployed version {} ({})",
            class.class,
            deployed.version.version,
            &deployed.version.hash[..12]
        ),
        Err(error) => println!("dev: {} was refused: {error}", class.class),
    }
}
