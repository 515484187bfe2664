//! Components stored by content: `data/classes/<sha256>.wasm`, beside the
//! compiled `<sha256>.cwasm`; files no listed version refers to are
//! removed.

use std::collections::BTreeSet;

use crate::engine::write_atomically;
use crate::runtime::Runtime;
use crate::storage::DataDir;

/// Stores a component under its hash (once: the name is the content).
pub fn store_component(data: &DataDir, hash: &str, wasm: &[u8]) -> anyhow::Result<()> {
    let path = data.class_component(hash);
    if path.exists() {
        return Ok(());
    }
    write_atomically(&path, wasm)
}

/// Removes the components and compiled files of hashes that no version
/// lists and no deploy under way is adding, and the per-class directories
/// of the layout before versions.
pub fn collect_garbage(runtime: &Runtime) -> anyhow::Result<()> {
    // Deploys under way first: a deploy records its version before it
    // stops being under way, so its hash is in one set or the other.
    let mut keep: BTreeSet<String> = runtime
        .deploying()
        .lock()
        .values()
        .flatten()
        .cloned()
        .collect();
    keep.extend(runtime.catalog().hashes_in_use()?);
    let dir = runtime.data_dir().classes();
    let entries = match std::fs::read_dir(&dir) {
        Ok(entries) => entries,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(error) => return Err(error.into()),
    };
    for entry in entries {
        let entry = entry?;
        let path = entry.path();
        if entry.file_type()?.is_dir() {
            std::fs::remove_dir_all(&path)?;
            continue;
        }
        let name = entry.file_name();
        let name = name.to_string_lossy();
        let hash = name.split('.').next().unwrap_or_default();
        if !keep.contains(hash) {
            tracing::debug!(file = %path.display(), "removing an unused class file");
            std::fs::remove_file(&path)?;
        }
    }
    Ok(())
}

/// How many object databases of `class` are on disk (the catalog learns
/// of a new object a moment after its database is made).
pub fn object_databases(data: &DataDir, class: &str) -> usize {
    let Ok(shards) = std::fs::read_dir(data.class_objects(class)) else {
        return 0;
    };
    shards
        .flatten()
        .filter_map(|shard| std::fs::read_dir(shard.path()).ok())
        .flat_map(|files| files.flatten())
        .filter(|file| file.path().extension().is_some_and(|ext| ext == "sqlite"))
        .count()
}

/// Removes what is left of `class`'s object databases.
pub fn remove_object_databases(data: &DataDir, class: &str) -> std::io::Result<()> {
    match std::fs::remove_dir_all(data.class_objects(class)) {
        Err(error) if error.kind() != std::io::ErrorKind::NotFound => Err(error),
        _ => Ok(()),
    }
}
