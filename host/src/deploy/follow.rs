//! In a cluster, class versions another node recorded (a deploy, a
//! rollback, a removal) reach this node's copy of the catalog; here the
//! runtime follows them: it serves each class's active version in the
//! catalog, loaded as a rollback loads one (its component fetched from the
//! replication store when this node lacks it), without writing the
//! catalog. The node that recorded the version is told too, while its own
//! deploy still holds the class: the follower waits for it, then finds the
//! class in step and does nothing.

use std::collections::HashMap;
use std::sync::{Arc, Weak};
use std::time::Duration;

use parking_lot::Mutex;
use tokio::sync::Notify;

use super::{
    DeployError, DeployLock, blocking, clean_up, internal, load_version, shared_component,
};
use crate::runtime::Runtime;
use crate::storage::versions::VersionRecord;

/// How long to wait before looking again at a class a deploy here holds.
const BUSY_WAIT: Duration = Duration::from_millis(50);
/// The first wait after a failure (the component not fetched, say); it
/// doubles up to [`RETRY_MAX`] until the class is in step.
const RETRY_FIRST: Duration = Duration::from_secs(1);
const RETRY_MAX: Duration = Duration::from_secs(30);

/// The classes being brought in step, one task per class.
#[derive(Default)]
pub(crate) struct Following {
    classes: Mutex<HashMap<String, Task>>,
}

/// A class's task, as others see it.
struct Task {
    /// Asked again while it runs: it looks once more before it ends.
    again: bool,
    /// Cuts a wait before a retry short (a new change may be the fix).
    wake: Arc<Notify>,
}

/// Brings each of `classes` in step with the catalog in the background:
/// serialized per class, off the caller's task (compiling takes seconds).
pub(crate) fn follow(runtime: &Arc<Runtime>, classes: impl IntoIterator<Item = String>) {
    for class in classes {
        let wake = {
            let mut following = runtime.following().classes.lock();
            if let Some(task) = following.get_mut(&class) {
                task.again = true;
                task.wake.notify_one();
                continue;
            }
            let wake = Arc::new(Notify::new());
            let task = Task {
                again: false,
                wake: Arc::clone(&wake),
            };
            following.insert(class.clone(), task);
            wake
        };
        tokio::spawn(keep_in_step(Arc::downgrade(runtime), class, wake));
    }
}

enum Step {
    /// The class serves the catalog's active version (or, with none, is
    /// not served).
    InStep,
    /// A deploy, rollback or removal of the class runs on this node.
    Busy,
}

/// Brings `class` in step until it is and nobody asked again; retries a
/// failure later, and stops when the runtime is gone.
async fn keep_in_step(runtime: Weak<Runtime>, class: String, wake: Arc<Notify>) {
    let mut retry = RETRY_FIRST;
    loop {
        let Some(held) = runtime.upgrade() else {
            return;
        };
        let wait = match step(&held, &class).await {
            Ok(Step::InStep) => {
                let mut following = held.following().classes.lock();
                match following.get_mut(&class) {
                    Some(task) if task.again => {
                        task.again = false;
                        continue;
                    }
                    _ => {
                        following.remove(&class);
                        return;
                    }
                }
            }
            Ok(Step::Busy) => BUSY_WAIT,
            Err(error) => {
                tracing::warn!(
                    class,
                    "cannot serve the version the catalog makes active (trying again in {retry:?}): {error}"
                );
                let wait = retry;
                retry = (retry * 2).min(RETRY_MAX);
                wait
            }
        };
        drop(held);
        tokio::select! {
            () = tokio::time::sleep(wait) => {}
            () = wake.notified() => {}
        }
    }
}

/// One look at `class`: loads the catalog's active version if the
/// runtime serves another, stops serving a class the catalog no longer
/// has.
async fn step(runtime: &Arc<Runtime>, class: &str) -> Result<Step, DeployError> {
    if in_step(
        runtime,
        class,
        active_version(runtime, class).await?.as_ref(),
    ) {
        return Ok(Step::InStep);
    }
    let lock = match DeployLock::take(runtime, class) {
        Ok(lock) => lock,
        Err(DeployError::Busy(_)) => return Ok(Step::Busy),
        Err(error) => return Err(error),
    };
    // Again under the lock: a deploy here may have ended meanwhile.
    let active = active_version(runtime, class).await?;
    if in_step(runtime, class, active.as_ref()) {
        return Ok(Step::InStep);
    }
    match active {
        None => {
            runtime.uninstall(class);
            drop(lock);
            tracing::info!(
                class,
                "the class was removed on another node: no longer served"
            );
            clean_up(runtime).await;
        }
        Some(version) => {
            lock.adding(&version.hash);
            shared_component::fetch_if_missing(runtime, &version.hash).await?;
            let loaded = {
                let (runtime, version) = (Arc::clone(runtime), version.clone());
                tokio::task::spawn_blocking(move || load_version(&runtime, &version))
                    .await
                    .map_err(internal)??
            };
            runtime.install(Arc::new(loaded));
            tracing::info!(
                class,
                version = version.version,
                hash = &version.hash[..version.hash.len().min(12)],
                "serving the version another node made active"
            );
        }
    }
    Ok(Step::InStep)
}

/// The active version of `class` in the catalog, if it has one.
async fn active_version(
    runtime: &Runtime,
    class: &str,
) -> Result<Option<VersionRecord>, DeployError> {
    let catalog = Arc::clone(runtime.catalog());
    let class = class.to_string();
    let versions = blocking(move || catalog.versions(Some(&class))).await?;
    Ok(versions.into_iter().find(|version| version.active))
}

/// Whether the runtime serves `active` (and nothing when it is `None`).
fn in_step(runtime: &Runtime, class: &str, active: Option<&VersionRecord>) -> bool {
    match (runtime.class(class).ok(), active) {
        (None, None) => true,
        (Some(served), Some(active)) => {
            served.hash() == active.hash && served.version() == active.version
        }
        _ => false,
    }
}
