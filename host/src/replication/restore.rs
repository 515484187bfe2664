//! Rebuilding an object's database from the store: the snapshot that
//! starts the right generation, then its segments in order up to the
//! point asked for, each checked against its checksum and its name; the
//! result must pass `PRAGMA integrity_check` and hold the transaction id
//! the history says it should. A missing or corrupt piece refuses the
//! restore, naming it: never an older state presented as the one asked
//! for.

use std::collections::BTreeMap;
use std::os::unix::fs::FileExt as _;
use std::path::Path;

use futures_util::TryStreamExt as _;
use object_store::path::Path as StorePath;
use object_store::{ObjectStore, ObjectStoreExt as _};

use super::retention;
use super::segment::{self, Named, Piece, Stored};

/// Which state to bring back.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Point {
    /// The last commit in the store.
    Latest,
    /// The state right after this transaction.
    Txid(u64),
    /// The state after the last commit made at or before this time (ms
    /// since the Unix epoch).
    At(i64),
}

impl Point {
    /// From the `at` (RFC 3339, UTC: `2026-12-01T20:00:00Z`) or `txid` a
    /// caller gave, at most one of them.
    pub fn parse(at: Option<&str>, txid: Option<u64>) -> Result<Point, String> {
        match (at, txid) {
            (Some(_), Some(_)) => Err("give a time (at) or a transaction (txid), not both".into()),
            (None, Some(txid)) => Ok(Point::Txid(txid)),
            (Some(at), None) => {
                let time = humantime::parse_rfc3339(at).map_err(|error| {
                    format!("{at:?} is not an RFC 3339 time in UTC such as 2026-12-01T20:00:00Z: {error}")
                })?;
                let ms = time
                    .duration_since(std::time::UNIX_EPOCH)
                    .map_err(|_| format!("{at:?} is before 1970"))?
                    .as_millis();
                Ok(Point::At(i64::try_from(ms).unwrap_or(i64::MAX)))
            }
            (None, None) => Ok(Point::Latest),
        }
    }
}

/// What was restored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Restored {
    pub generation: String,
    pub txid: u64,
    /// When that transaction committed (ms since the Unix epoch).
    pub committed_ms: i64,
}

#[derive(Debug, thiserror::Error)]
pub enum RestoreError {
    #[error("the store has no history of this object")]
    NoHistory,
    #[error("the store's history of this object does not reach {0}")]
    OutOfRange(String),
    #[error("{name} is missing from the store: {detail}")]
    Missing { name: String, detail: String },
    #[error("{name} is corrupt: {reason}")]
    Corrupt { name: String, reason: String },
    #[error("the store failed: {0}")]
    Store(String),
    #[error("the restored database fails its check: {0}")]
    Check(String),
    #[error("cannot write the restored database: {0}")]
    Io(#[from] std::io::Error),
}

/// One generation's pieces, by name.
#[derive(Debug, Default)]
struct Generation {
    snapshot: Option<(u64, StorePath)>,
    /// By first transaction id.
    segments: BTreeMap<u64, (u64, StorePath)>,
}

impl Generation {
    /// The last transaction its names reach.
    fn last_txid(&self) -> Option<u64> {
        let (txid, _) = self.snapshot.as_ref()?;
        Some(
            self.segments
                .values()
                .map(|(last, _)| *last)
                .max()
                .unwrap_or(*txid)
                .max(*txid),
        )
    }
}

/// The objects (class, id) with history in the store, but those deleted
/// since their last generation began (a tombstone newer than it).
pub async fn list_objects(store: &dyn ObjectStore) -> Result<Vec<(String, String)>, RestoreError> {
    let mut latest: BTreeMap<(String, String), i64> = BTreeMap::new();
    let mut tombstones = Vec::new();
    let mut listing = store.list(None);
    while let Some(meta) = listing.try_next().await.map_err(store_error)? {
        match Stored::of(&meta.location) {
            // The catalog's stream is no object.
            Stored::Generation { class, .. } if class == super::catalog::CATALOG => {}
            Stored::Generation {
                class, id, start, ..
            } => {
                let entry = latest.entry((class, id)).or_default();
                *entry = (*entry).max(start);
            }
            Stored::Tombstone { class, id } => tombstones.push(((class, id), meta.location)),
            Stored::Other => {}
        }
    }
    for (object, path) in tombstones {
        // Unreadable: the tombstone is taken to be newer than anything.
        let deleted_at = retention::deleted_at(store, &path)
            .await
            .map_err(store_error)?
            .unwrap_or(i64::MAX);
        if latest.get(&object).is_some_and(|start| *start < deleted_at) {
            latest.remove(&object);
        }
    }
    Ok(latest.into_keys().collect())
}

/// The object's name, from its latest generation.
pub async fn object_name(
    store: &dyn ObjectStore,
    class: &str,
    id: &str,
) -> Result<String, RestoreError> {
    let generations = history(store, class, id).await?;
    let Some((generation, _)) = generations.iter().next_back() else {
        return Err(RestoreError::NoHistory);
    };
    let path = StorePath::from(format!("{class}/{id}/{generation}/{}", segment::NAME_FILE));
    let bytes = match store.get(&path).await {
        Ok(got) => got.bytes().await.map_err(store_error)?,
        Err(object_store::Error::NotFound { .. }) => {
            return Err(RestoreError::Missing {
                name: path.to_string(),
                detail: "the object's name is not stored with its history".into(),
            });
        }
        Err(error) => return Err(store_error(error)),
    };
    String::from_utf8(bytes.to_vec()).map_err(|_| corrupt(&path, "it is not UTF-8"))
}

/// Writes the object's database at `point` to the file `to`.
pub async fn restore(
    store: &dyn ObjectStore,
    class: &str,
    id: &str,
    point: Point,
    to: &Path,
) -> Result<Restored, RestoreError> {
    restore_checked(store, class, id, point, to, true).await
}

/// As [`restore`], for a database that keeps no transaction id of its
/// own (the catalog: `catalog::CatalogLog`).
pub async fn restore_uncounted(
    store: &dyn ObjectStore,
    class: &str,
    id: &str,
    point: Point,
    to: &Path,
) -> Result<Restored, RestoreError> {
    restore_checked(store, class, id, point, to, false).await
}

async fn restore_checked(
    store: &dyn ObjectStore,
    class: &str,
    id: &str,
    point: Point,
    to: &Path,
    counted: bool,
) -> Result<Restored, RestoreError> {
    let generations = history(store, class, id).await?;
    let (name, generation) = match point {
        Point::Latest if generations.len() > 1 => latest_owners(store, &generations).await?,
        _ => choose(&generations, point)?,
    };
    let (snapshot_txid, snapshot_path) = generation
        .snapshot
        .as_ref()
        .ok_or(RestoreError::NoHistory)?;
    let snapshot = fetch(store, snapshot_path).await?;
    if !snapshot.header.snapshot || snapshot.header.last_txid != *snapshot_txid {
        return Err(corrupt(snapshot_path, "its header does not match its name"));
    }
    let file = std::fs::File::create(to)?;
    file.write_all_at(&snapshot.file, 0)?;
    let page_size = u64::from(snapshot.header.page_size);
    let mut restored = Restored {
        generation: name.clone(),
        txid: *snapshot_txid,
        committed_ms: snapshot.header.committed_ms,
    };
    for (first, (last, path)) in &generation.segments {
        if let Point::Txid(target) = point
            && *first > target
        {
            break;
        }
        if *first != restored.txid + 1 {
            return Err(RestoreError::Missing {
                name: format!(
                    "{class}/{id}/{name}/{}",
                    segment::file_name(&Named::Segment {
                        first: restored.txid + 1,
                        last: first - 1
                    })
                ),
                detail: format!(
                    "transactions {} to {} are not in any segment, so nothing after {} can be restored",
                    restored.txid + 1,
                    first - 1,
                    restored.txid
                ),
            });
        }
        let piece = fetch(store, path).await?;
        let header = piece.header;
        if header.epoch < snapshot.header.epoch {
            // A superseded owner's write: nothing from it on is this
            // generation's owner's.
            break;
        }
        if header.snapshot
            || header.first_txid != *first
            || header.last_txid != *last
            || u64::from(header.page_size) != page_size
        {
            return Err(corrupt(path, "its header does not match its name"));
        }
        match point {
            Point::At(at) if header.committed_ms > at => break,
            Point::Txid(target) if *last > target => {
                return Err(RestoreError::OutOfRange(format!(
                    "transaction {target} alone: it was shipped together with others, up to {last}"
                )));
            }
            _ => {}
        }
        for (number, content) in &piece.pages {
            file.write_all_at(content, u64::from(number - 1) * page_size)?;
        }
        file.set_len(u64::from(header.database_pages) * page_size)?;
        restored.txid = header.last_txid;
        restored.committed_ms = header.committed_ms;
    }
    if let Point::Txid(target) = point
        && restored.txid != target
    {
        return Err(RestoreError::OutOfRange(format!(
            "transaction {target} (the history ends at {})",
            restored.txid
        )));
    }
    file.sync_all()?;
    drop(file);
    // SQLite reads the whole file: off the async threads.
    let (path, txid) = (to.to_path_buf(), restored.txid);
    tokio::task::spawn_blocking(move || check(&path, counted.then_some(txid)))
        .await
        .map_err(|error| RestoreError::Check(error.to_string()))??;
    Ok(restored)
}

/// Every generation of the object, by name (so in the order they began).
async fn history(
    store: &dyn ObjectStore,
    class: &str,
    id: &str,
) -> Result<BTreeMap<String, Generation>, RestoreError> {
    let prefix = StorePath::from(format!("{class}/{id}"));
    let mut generations: BTreeMap<String, Generation> = BTreeMap::new();
    let mut listing = store.list(Some(&prefix));
    while let Some(meta) = listing.try_next().await.map_err(store_error)? {
        let parts: Vec<_> = meta.location.parts().collect();
        let [_, _, generation, file] = parts.as_slice() else {
            continue;
        };
        if segment::generation_start(generation.as_ref()).is_none() {
            continue;
        }
        let entry = generations
            .entry(generation.as_ref().to_string())
            .or_default();
        match segment::parse_file_name(file.as_ref()) {
            Some(Named::Snapshot { txid }) => entry.snapshot = Some((txid, meta.location)),
            Some(Named::Segment { first, last }) => {
                entry.segments.insert(first, (last, meta.location));
            }
            None => {}
        }
    }
    // A generation whose snapshot never arrived is of no use.
    generations.retain(|_, generation| generation.snapshot.is_some());
    if generations.is_empty() {
        return Err(RestoreError::NoHistory);
    }
    Ok(generations)
}

/// The generation of the object's latest state: that of the highest
/// fencing epoch (a later owner's in a cluster), the latest begun among
/// those. Each generation has one epoch (a new one starts one), read from
/// the head of its snapshot.
async fn latest_owners<'a>(
    store: &dyn ObjectStore,
    generations: &'a BTreeMap<String, Generation>,
) -> Result<(&'a String, &'a Generation), RestoreError> {
    let mut epochs = Vec::with_capacity(generations.len());
    for (name, generation) in generations {
        let Some((_, path)) = &generation.snapshot else {
            continue;
        };
        let head = store
            .get_range(path, 0..segment::HEADER as u64)
            .await
            .map_err(store_error)?;
        let epoch = segment::header_epoch(&head)
            .ok_or_else(|| corrupt(path, "it does not start like a snapshot"))?;
        epochs.push((name, epoch));
    }
    let name = latest_by_epoch(epochs).ok_or(RestoreError::NoHistory)?;
    let generation = generations.get(name).ok_or(RestoreError::NoHistory)?;
    Ok((name, generation))
}

/// Among a cluster's generations (epoch > 0), the one of the highest
/// epoch, the latest named among those: a node that went on shipping
/// after another took the object over (its lease lapsed) wrote an older
/// epoch, so its history never wins over its successor's, whatever the
/// clocks said when each generation began. A single node's generations
/// (epoch 0, unfenced) are ordered by when they began, as without a
/// cluster: one begun after the cluster's winner wins.
fn latest_by_epoch<'a>(epochs: impl IntoIterator<Item = (&'a String, u64)>) -> Option<&'a String> {
    let (single, clustered): (Vec<_>, Vec<_>) =
        epochs.into_iter().partition(|(_, epoch)| *epoch == 0);
    let clustered = clustered
        .into_iter()
        .max_by(|(a, a_epoch), (b, b_epoch)| a_epoch.cmp(b_epoch).then_with(|| a.cmp(b)))
        .map(|(name, _)| name);
    let single = single.into_iter().map(|(name, _)| name).max();
    match (clustered, single) {
        (Some(clustered), Some(single)) => Some(clustered.max(single)),
        (clustered, single) => clustered.or(single),
    }
}

/// The generation that holds `point`: the latest to have begun at or
/// before it.
fn choose(
    generations: &BTreeMap<String, Generation>,
    point: Point,
) -> Result<(&String, &Generation), RestoreError> {
    let found = match point {
        Point::Latest => generations.iter().next_back(),
        Point::At(at) => generations
            .iter()
            .rev()
            .find(|(name, _)| segment::generation_start(name).is_some_and(|start| start <= at)),
        Point::Txid(target) => generations.iter().rev().find(|(_, generation)| {
            generation
                .snapshot
                .as_ref()
                .is_some_and(|(txid, _)| *txid <= target)
                && generation.last_txid().is_some_and(|last| last >= target)
        }),
    };
    found.ok_or_else(|| {
        RestoreError::OutOfRange(match point {
            Point::Latest => "its latest state".into(),
            Point::At(at) => format!(
                "{} (its history begins later)",
                humantime::format_rfc3339_millis(
                    std::time::UNIX_EPOCH + std::time::Duration::from_millis(at.unsigned_abs())
                )
            ),
            Point::Txid(txid) => format!("transaction {txid}"),
        })
    })
}

async fn fetch(store: &dyn ObjectStore, path: &StorePath) -> Result<Piece, RestoreError> {
    let got = match store.get(path).await {
        Ok(got) => got,
        Err(object_store::Error::NotFound { .. }) => {
            return Err(RestoreError::Missing {
                name: path.to_string(),
                detail: "it was listed but cannot be read".into(),
            });
        }
        Err(error) => return Err(store_error(error)),
    };
    let bytes = got.bytes().await.map_err(store_error)?;
    segment::decode(&bytes).map_err(|reason| corrupt(path, &reason.to_string()))
}

/// `PRAGMA integrity_check`, and the transaction id the database records
/// (if it counts them).
fn check(path: &Path, txid: Option<u64>) -> Result<(), RestoreError> {
    let failed = |error: rusqlite::Error| RestoreError::Check(error.to_string());
    let conn = rusqlite::Connection::open(path).map_err(failed)?;
    let verdict: String = conn
        .query_row("PRAGMA integrity_check", [], |row| row.get(0))
        .map_err(failed)?;
    if verdict != "ok" {
        return Err(RestoreError::Check(verdict));
    }
    if let Some(txid) = txid {
        let recorded: i64 = conn
            .query_row(
                "SELECT coalesce((SELECT value FROM _podhost_meta WHERE key = 'txid'), 0)",
                [],
                |row| row.get(0),
            )
            .map_err(failed)?;
        if recorded.unsigned_abs() != txid {
            return Err(RestoreError::Check(format!(
                "it records transaction {recorded}, the history says {txid}"
            )));
        }
    }
    // A file that stands alone, like an export: the copy carries the
    // source's WAL mark.
    conn.query_row("PRAGMA journal_mode = DELETE", [], |_| Ok(()))
        .map_err(failed)?;
    conn.close().map_err(|(_, error)| failed(error))
}

fn corrupt(path: &StorePath, reason: &str) -> RestoreError {
    RestoreError::Corrupt {
        name: path.to_string(),
        reason: reason.to_string(),
    }
}

fn store_error(error: object_store::Error) -> RestoreError {
    RestoreError::Store(error.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(list: &[&str]) -> Vec<String> {
        list.iter().map(|name| name.to_string()).collect()
    }

    #[test]
    fn on_one_node_the_latest_generation_wins() {
        let names = names(&["01", "02", "03"]);
        let epochs = names.iter().map(|name| (name, 0));
        assert_eq!(latest_by_epoch(epochs).map(String::as_str), Some("03"));
    }

    #[test]
    fn a_superseded_owners_later_generation_loses_to_its_successors() {
        // The owner of epoch 7 lost its lease; the node of epoch 9 took
        // the object over; the old owner then began generation "03"
        // (its clock ahead, or its uploads late): "02" is the truth.
        let names = names(&["01", "02", "03"]);
        let epochs = [(&names[0], 7), (&names[1], 9), (&names[2], 7)];
        assert_eq!(latest_by_epoch(epochs).map(String::as_str), Some("02"));
    }

    #[test]
    fn a_single_nodes_generations_take_their_turn_by_time() {
        // Clustered, then one node alone: its later generation wins.
        let names = names(&["01", "02", "03"]);
        let epochs = [(&names[0], 0), (&names[1], 12), (&names[2], 0)];
        assert_eq!(latest_by_epoch(epochs).map(String::as_str), Some("03"));
        // One node, then clustered: the cluster's wins.
        let epochs = [(&names[0], 0), (&names[1], 0), (&names[2], 5)];
        assert_eq!(latest_by_epoch(epochs).map(String::as_str), Some("03"));
    }

    #[test]
    fn a_header_names_its_epoch() {
        let header = segment::Header {
            snapshot: true,
            page_size: 4096,
            epoch: 42,
            first_txid: 1,
            last_txid: 1,
            committed_ms: 0,
            database_pages: 1,
        };
        let bytes = segment::encode_snapshot(&header, &[0u8; 4096]);
        assert_eq!(segment::header_epoch(&bytes[..segment::HEADER]), Some(42));
        assert_eq!(segment::header_epoch(b"not a segment at all, no"), None);
    }
}
