//! Retention: what the store keeps of objects' histories. A generation
//! is removed once the next one began before the retention window (every
//! point inside the window is then reachable from a later generation);
//! the latest generation is never removed. A deleted object leaves a
//! tombstone (`deleted`, its time in ms); once that is older than the
//! window, its whole history goes (unless the object was written again
//! after it). `?purge=true` on a delete removes the history at once.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use futures_util::TryStreamExt as _;
use object_store::path::Path as StorePath;
use object_store::{ObjectStore, ObjectStoreExt as _};

use super::Replication;
use super::segment::{self, Stored};
use crate::storage::catalog::now_ms;

/// Beside an object's generations: when it was deleted.
pub const TOMBSTONE: &str = "deleted";

/// What one compaction removed.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Compacted {
    pub generations: usize,
    pub objects: usize,
}

/// Everything under `prefix`.
pub async fn delete_under(
    store: &dyn ObjectStore,
    prefix: &StorePath,
) -> Result<(), object_store::Error> {
    let paths: Vec<StorePath> = store
        .list(Some(prefix))
        .map_ok(|meta| meta.location)
        .try_collect()
        .await?;
    for path in paths {
        match store.delete(&path).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => {}
            Err(error) => return Err(error),
        }
    }
    Ok(())
}

#[derive(Default)]
struct Object {
    /// Generation name to its files.
    generations: BTreeMap<String, Vec<StorePath>>,
    tombstone: Option<(StorePath, i64)>,
}

/// When the object whose tombstone is at `path` was deleted (ms since the
/// Unix epoch), if the tombstone says.
pub async fn deleted_at(
    store: &dyn ObjectStore,
    path: &StorePath,
) -> Result<Option<i64>, object_store::Error> {
    let bytes = store.get(path).await?.bytes().await?;
    Ok(std::str::from_utf8(&bytes)
        .ok()
        .and_then(|text| text.trim().parse().ok()))
}

/// Removes what the window `retention` no longer needs, as of `now` (ms).
pub async fn compact(
    store: &dyn ObjectStore,
    retention: Duration,
    now: i64,
) -> Result<Compacted, object_store::Error> {
    let horizon = now.saturating_sub(i64::try_from(retention.as_millis()).unwrap_or(i64::MAX));
    let mut objects: BTreeMap<(String, String), Object> = BTreeMap::new();
    let mut listing = store.list(None);
    while let Some(meta) = listing.try_next().await? {
        match Stored::of(&meta.location) {
            Stored::Generation {
                class,
                id,
                generation,
                ..
            } => {
                objects
                    .entry((class, id))
                    .or_default()
                    .generations
                    .entry(generation)
                    .or_default()
                    .push(meta.location);
            }
            Stored::Tombstone { class, id } => {
                // Unreadable: taken to be as old as can be.
                let at = deleted_at(store, &meta.location).await?.unwrap_or(0);
                objects.entry((class, id)).or_default().tombstone = Some((meta.location, at));
            }
            Stored::Other => {}
        }
    }
    let mut compacted = Compacted::default();
    for ((class, id), object) in objects {
        let latest_start = object
            .generations
            .keys()
            .next_back()
            .and_then(|name| segment::generation_start(name));
        if let Some((tombstone, deleted_at)) = &object.tombstone {
            let written_since = latest_start.is_some_and(|start| start > *deleted_at);
            if !written_since && *deleted_at <= horizon {
                delete_under(store, &StorePath::from(format!("{class}/{id}"))).await?;
                compacted.objects += 1;
                continue;
            }
            if written_since {
                store.delete(tombstone).await?;
            }
        }
        let names: Vec<&String> = object.generations.keys().collect();
        for pair in names.windows(2) {
            let next_start = segment::generation_start(pair[1]).unwrap_or(i64::MAX);
            if next_start <= horizon {
                for path in &object.generations[pair[0]] {
                    match store.delete(path).await {
                        Ok(()) | Err(object_store::Error::NotFound { .. }) => {}
                        Err(error) => return Err(error),
                    }
                }
                compacted.generations += 1;
            }
        }
    }
    Ok(compacted)
}

/// Compacts every `compaction_interval` while the runtime lives.
pub fn start(replication: &Arc<Replication>) {
    let Some(retention) = replication.settings().retention else {
        return;
    };
    let interval = replication.settings().compaction_interval;
    let replication = Arc::downgrade(replication);
    tokio::spawn(async move {
        loop {
            tokio::time::sleep(interval).await;
            let Some(replication) = replication.upgrade() else {
                return;
            };
            match compact(replication.store().as_ref(), retention, now_ms()).await {
                Ok(compacted) if compacted != Compacted::default() => {
                    tracing::info!(
                        generations = compacted.generations,
                        objects = compacted.objects,
                        "replication history compacted"
                    );
                }
                Ok(_) => {}
                Err(error) => tracing::warn!(%error, "replication compaction failed"),
            }
        }
    });
}
