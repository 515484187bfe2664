//! The catalog (classes and their versions, tenants, accounts, keys,
//! handles, the objects' index) and the deployed components, in the store
//! under `_catalog/`: unlike objects, the catalog is shipped as a whole
//! snapshot (`_catalog/<ms:016x>.snap`, same format as an object's) every
//! `catalog_interval` when it changed, and each component once
//! (`_catalog/classes/<sha256>.wasm`, immutable). So a catalog write is
//! in the store within one interval, not with its commit.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use futures_util::TryStreamExt as _;
use object_store::path::Path as StorePath;
use object_store::{ObjectStore, ObjectStoreExt as _, PutPayload};
use sha2::{Digest as _, Sha256};

use super::Replication;
use super::segment::{self, Header};
use crate::storage::catalog::now_ms;

/// The store's folder for the catalog and components.
pub const CATALOG: &str = "_catalog";
/// Catalog snapshots kept besides the newest.
const KEPT: usize = 10;

/// Ships the catalog of `data_dir` every `catalog_interval` while the
/// replication service lives.
pub fn start(replication: &Arc<Replication>, data_dir: PathBuf) {
    let interval = replication.settings().catalog_interval;
    let weak = Arc::downgrade(replication);
    tokio::spawn(async move {
        let mut last_digest = None;
        let mut components = HashSet::new();
        loop {
            let Some(replication) = weak.upgrade() else {
                return;
            };
            match ship_once(&replication, &data_dir, &mut last_digest, &mut components).await {
                Ok(()) => {}
                Err(error) => tracing::warn!("cannot ship the catalog: {error:#}"),
            }
            drop(replication);
            tokio::time::sleep(interval).await;
        }
    });
}

async fn ship_once(
    replication: &Replication,
    data_dir: &Path,
    last_digest: &mut Option<Vec<u8>>,
    components: &mut HashSet<String>,
) -> anyhow::Result<()> {
    let store = replication.store();
    for component in list_components(&data_dir.join("classes"))? {
        let name = file_name(&component);
        if components.contains(&name) {
            continue;
        }
        let path = StorePath::from(format!("{CATALOG}/classes/{name}"));
        if store.head(&path).await.is_err() {
            let bytes = tokio::fs::read(&component).await?;
            store.put(&path, PutPayload::from(bytes)).await?;
        }
        components.insert(name);
    }
    let data_dir = data_dir.to_path_buf();
    let file = tokio::task::spawn_blocking(move || copy_catalog(&data_dir)).await??;
    let digest = Sha256::digest(&file).to_vec();
    if last_digest.as_ref() == Some(&digest) {
        return Ok(());
    }
    let taken = now_ms();
    let page_size = u32::from_be_bytes([0, 0, file[16], file[17]]);
    let page_size = if page_size == 1 { 65536 } else { page_size };
    let header = Header {
        snapshot: true,
        page_size,
        epoch: 0,
        first_txid: taken.unsigned_abs(),
        last_txid: taken.unsigned_abs(),
        committed_ms: taken,
        database_pages: (file.len() / page_size.max(1) as usize) as u32,
    };
    let path = StorePath::from(format!("{CATALOG}/{:016x}.snap", taken.max(0)));
    store
        .put(
            &path,
            PutPayload::from(segment::encode_snapshot(&header, &file)),
        )
        .await?;
    *last_digest = Some(digest);
    // Older snapshots past the newest few go.
    let mut snapshots = snapshots(store.as_ref()).await?;
    snapshots.reverse();
    for old in snapshots.into_iter().skip(KEPT + 1) {
        store.delete(&old).await?;
    }
    Ok(())
}

/// The catalog's database as of now, through SQLite's backup API (other
/// connections may be writing).
fn copy_catalog(data_dir: &Path) -> anyhow::Result<Vec<u8>> {
    let source = rusqlite::Connection::open_with_flags(
        data_dir.join("catalog.sqlite"),
        rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY,
    )?;
    source.execute_batch("PRAGMA busy_timeout = 5000;")?;
    let scratch = data_dir.join("tmp");
    std::fs::create_dir_all(&scratch)?;
    let copy = tempfile::Builder::new()
        .prefix("catalog-")
        .suffix(".sqlite")
        .tempfile_in(&scratch)?
        .into_temp_path();
    {
        let mut target = rusqlite::Connection::open(&copy)?;
        rusqlite::backup::Backup::new(&source, &mut target)?.run_to_completion(
            4096,
            std::time::Duration::from_millis(5),
            None,
        )?;
        target.query_row("PRAGMA journal_mode = DELETE", [], |_| Ok(()))?;
    }
    Ok(std::fs::read(&copy)?)
}

fn list_components(dir: &Path) -> std::io::Result<Vec<PathBuf>> {
    match std::fs::read_dir(dir) {
        Ok(entries) => Ok(entries
            .flatten()
            .map(|entry| entry.path())
            .filter(|path| path.extension().is_some_and(|e| e == "wasm"))
            .collect()),
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => Ok(Vec::new()),
        Err(error) => Err(error),
    }
}

fn file_name(path: &Path) -> String {
    path.file_name()
        .map(|name| name.to_string_lossy().into_owned())
        .unwrap_or_default()
}

/// The catalog's snapshots in the store, oldest first.
async fn snapshots(store: &dyn ObjectStore) -> Result<Vec<StorePath>, object_store::Error> {
    let mut found: Vec<StorePath> = store
        .list(Some(&StorePath::from(CATALOG)))
        .map_ok(|meta| meta.location)
        .try_filter(|path| {
            let keep = path.parts().count() == 2 && path.as_ref().ends_with(".snap");
            async move { keep }
        })
        .try_collect()
        .await?;
    found.sort();
    Ok(found)
}

/// Writes the newest catalog snapshot to `data_dir/catalog.sqlite` and
/// every component to `data_dir/classes/`. Returns whether the store had
/// a catalog.
pub async fn restore(store: &dyn ObjectStore, data_dir: &Path) -> anyhow::Result<bool> {
    let Some(newest) = snapshots(store).await?.pop() else {
        return Ok(false);
    };
    let bytes = store.get(&newest).await?.bytes().await?;
    let piece = segment::decode(&bytes)
        .map_err(|reason| anyhow::anyhow!("{newest} is corrupt: {reason}"))?;
    std::fs::create_dir_all(data_dir.join("classes"))?;
    let components: Vec<StorePath> = store
        .list(Some(&StorePath::from(format!("{CATALOG}/classes"))))
        .map_ok(|meta| meta.location)
        .try_collect()
        .await?;
    for path in components {
        let Some(name) = path.filename().map(str::to_string) else {
            continue;
        };
        let bytes = store.get(&path).await?.bytes().await?;
        // Components are stored by their content's hash: check it.
        let expected = name.strip_suffix(".wasm").unwrap_or_default();
        if hex::encode(Sha256::digest(&bytes)) != expected {
            anyhow::bail!("{path} is corrupt: its content does not match its hash");
        }
        std::fs::write(data_dir.join("classes").join(&name), &bytes)?;
    }
    std::fs::write(data_dir.join("catalog.sqlite"), &piece.file)?;
    Ok(true)
}
