//! What a new version must pass before it goes live, beyond compiling and
//! linking (`engine::Class::build`): its migrations run on a scratch empty
//! database (and, when asked, on a copy of an object's database), and they
//! extend the active version's.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::runtime::Handle;

use super::{DeployError, internal};
use crate::capabilities::ObjectState;
use crate::engine::{Class, ClassError};
use crate::limits::EventLimits;
use crate::object::ObjectAddr;
use crate::runtime::Runtime;
use crate::storage::Database;

/// The name the scratch instance runs under, in its logs.
const CHECK_OBJECT: &str = "podhost-deploy-check";
/// How long an object asked to hibernate for a check gets to close.
const HIBERNATE_WAIT: Duration = Duration::from_secs(5);

/// A database to run the migrations on, in a directory removed with it.
pub struct Scratch {
    _dir: tempfile::TempDir,
    path: PathBuf,
}

impl Scratch {
    fn empty() -> Result<Self, DeployError> {
        let dir = tempfile::tempdir().map_err(internal)?;
        let path = dir.path().join("scratch.sqlite");
        Ok(Scratch { _dir: dir, path })
    }
}

/// The number (from 1) of the first of `previous` that `next` does not
/// keep as it was, if any: migrations are append-only.
pub fn first_change(previous: &[String], next: &[String]) -> Option<usize> {
    previous
        .iter()
        .enumerate()
        .find(|(index, old)| next.get(*index) != Some(old))
        .map(|(index, _)| index + 1)
}

/// A copy of object `name`'s database, taken while it is closed: the
/// object is asked to hibernate first.
pub async fn object_copy(
    runtime: &Arc<Runtime>,
    class: &str,
    name: &str,
) -> Result<Scratch, DeployError> {
    let no_object = || DeployError::NoSuchObject {
        class: class.to_string(),
        name: name.to_string(),
    };
    let object = ObjectAddr::new(class, name);
    let source = runtime.data_dir().object_database(class, object.id());
    if !source.exists() {
        return Err(no_object());
    }
    let started = Instant::now();
    // Asked again now and then: events arriving meanwhile keep it open.
    for round in 0.. {
        if round % 25 == 0 && !runtime.objects().hibernate(object.id()) {
            break;
        }
        if !runtime.objects().is_live(object.id()) {
            break;
        }
        if started.elapsed() > HIBERNATE_WAIT {
            return Err(DeployError::ObjectBusy(name.to_string()));
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let scratch = Scratch::empty()?;
    let target = scratch.path.clone();
    tokio::task::spawn_blocking(move || copy_database(&source, &target))
        .await
        .map_err(internal)?
        .map_err(|error| internal(format!("cannot copy object {name:?}'s database: {error}")))?;
    Ok(scratch)
}

/// A consistent copy, through SQLite (the object may reopen meanwhile).
fn copy_database(source: &Path, target: &Path) -> rusqlite::Result<()> {
    let conn =
        rusqlite::Connection::open_with_flags(source, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)?;
    conn.busy_timeout(Duration::from_secs(2))?;
    conn.execute("VACUUM INTO ?1", [target.display().to_string()])?;
    Ok(())
}

/// Instantiates `class` on a guest thread around a scratch empty database
/// (and `copy`, if given), asks it for its migrations and runs them.
/// Returns the migrations; a failure names the migration and SQLite's
/// message.
pub async fn migrations(
    runtime: &Arc<Runtime>,
    class: &Arc<Class>,
    copy: Option<Scratch>,
) -> Result<Vec<String>, DeployError> {
    let (runtime, class) = (Arc::clone(runtime), Arc::clone(class));
    let ran = Arc::clone(&runtime)
        .executor()
        .run(move |handle| {
            let empty = Scratch::empty()?;
            let migrations = run_on(&runtime, &class, handle, &empty.path)?;
            if let Some(copy) = copy {
                run_on(&runtime, &class, handle, &copy.path)?;
            }
            Ok(migrations)
        })
        .await;
    ran.map_err(|lost| internal(format!("the check was lost: {lost}")))?
}

fn run_on(
    runtime: &Runtime,
    class: &Class,
    handle: &Handle,
    path: &Path,
) -> Result<Vec<String>, DeployError> {
    let settings = class.settings();
    let db = Database::open(path, &settings.database()).map_err(internal)?;
    let watch = runtime
        .executor()
        .watchdog()
        .watch(settings.limits.budget());
    watch.watch_sql(db.interrupt_handle());
    let object = Arc::new(ObjectAddr::new(class.name(), CHECK_OBJECT));
    let limits = EventLimits::new(
        settings.limits.max_memory_bytes,
        Arc::clone(runtime.guest_memory()),
    );
    let state = ObjectState::new(
        object,
        db,
        limits,
        Arc::clone(runtime.sockets()),
        runtime.guest_logs(),
        Arc::clone(&settings.config),
    );
    let mut store = state.into_store(runtime.engine(), &watch);
    let declared = handle.block_on(async {
        let bindings = class.instantiate(&mut store).await?;
        bindings
            .podhost_object_handler()
            .call_migrations(&mut store)
            .await
    });
    if let Some(verdict) = watch.verdict() {
        return Err(ClassError::Invalid(format!(
            "instantiating it and listing its migrations broke a limit: {verdict:?}"
        ))
        .into());
    }
    let declared = declared.map_err(|trap| {
        ClassError::Invalid(format!(
            "instantiating it or listing its migrations failed: {trap:#}"
        ))
    })?;
    store
        .data_mut()
        .database()
        .migrate(&declared)
        .map_err(DeployError::Migration)?;
    Ok(declared)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn list(items: &[&str]) -> Vec<String> {
        items.iter().map(|item| item.to_string()).collect()
    }

    #[test]
    fn migrations_may_only_grow_at_the_end() {
        assert_eq!(first_change(&list(&["a"]), &list(&["a", "b"])), None);
        assert_eq!(first_change(&list(&[]), &list(&["a"])), None);
        assert_eq!(
            first_change(&list(&["a", "b"]), &list(&["a", "c"])),
            Some(2)
        );
        assert_eq!(first_change(&list(&["a", "b"]), &list(&["a"])), Some(2));
    }
}
