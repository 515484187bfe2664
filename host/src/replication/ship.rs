//! Turning what an object committed into uploads: a segment of the
//! frames read from its write-ahead log since the last call, or a
//! snapshot that starts a new generation when one is due. Runs on the
//! thread that owns the database, right after a commit, before anything
//! else can checkpoint the log (see `storage::database::replica`).

use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

use super::segment::{self, Header, Named};
use super::{Position, Replication, Stream};
use crate::storage::Database;
use crate::storage::catalog::now_ms;

/// Whether a snapshot may replace queued uploads when the queue is full:
/// never for a `replicated` object, whose commits wait for theirs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Overflow {
    DropAndSnapshot,
    Keep,
}

/// Queues what `db` committed since the last call. Returns the sequence
/// number of the stream's last upload: once it is durable, so is every
/// commit of `db` so far. On failure the next call starts a new
/// generation. `epoch` is the object's fencing epoch (0 on one node); a
/// new one starts a new generation, so each generation has one.
pub fn ship(
    replication: &Arc<Replication>,
    stream: &Stream,
    db: &mut Database,
    path: &Path,
    overflow: Overflow,
    epoch: u64,
) -> anyhow::Result<u64> {
    let mut position = stream.position();
    if position
        .as_ref()
        .is_some_and(|current| current.epoch != epoch)
    {
        *position = None;
    }
    let shipped = ship_locked(
        replication,
        stream,
        &mut position,
        db,
        path,
        overflow,
        epoch,
    );
    if shipped.is_err() {
        *position = None;
    }
    shipped
}

fn ship_locked(
    replication: &Arc<Replication>,
    stream: &Stream,
    position: &mut Option<Position>,
    db: &mut Database,
    path: &Path,
    overflow: Overflow,
    epoch: u64,
) -> anyhow::Result<u64> {
    let settings = replication.settings();
    if overflow == Overflow::DropAndSnapshot && replication.overflowing() && position.is_some() {
        tracing::warn!(
            "the replication queue is full: this object's queued segments are replaced by a snapshot"
        );
        stream.drop_queued();
        *position = None;
    }
    let due = position.as_ref().is_some_and(|current| {
        current.snapshot_at.elapsed() >= settings.snapshot_interval
            || current.bytes_since_snapshot >= settings.snapshot_after_bytes
    });
    let mut segment = None;
    if let Some(current) = position.as_ref().filter(|_| !due)
        && let Some(committed) = db.take_committed()?
    {
        let txid = db.txid()?;
        if txid > current.last_txid {
            segment = Some((committed, current.last_txid + 1, txid));
        } else {
            // Frames with no counted commit cannot be named in this
            // generation; a snapshot covers them.
            *position = None;
        }
    }
    let Some(current) = position.as_mut().filter(|_| !due) else {
        let (txid, page_size, file) = db.snapshot(path)?;
        let generation = segment::new_generation(now_ms());
        let header = Header {
            snapshot: true,
            page_size,
            epoch,
            first_txid: txid,
            last_txid: txid,
            committed_ms: now_ms(),
            database_pages: (file.len() / page_size.max(1) as usize) as u32,
        };
        let bytes = segment::encode_snapshot(&header, &file);
        let name = segment::file_name(&Named::Snapshot { txid });
        // The name first: a generation whose snapshot is stored has it.
        stream.queue(
            replication,
            &generation,
            segment::NAME_FILE,
            stream.name().as_bytes().to_vec(),
        );
        let seq = stream.queue(replication, &generation, &name, bytes);
        *position = Some(Position {
            generation,
            last_txid: txid,
            snapshot_at: Instant::now(),
            bytes_since_snapshot: 0,
            epoch,
        });
        return Ok(seq);
    };
    if let Some((committed, first, last)) = segment {
        let header = Header {
            snapshot: false,
            page_size: committed.page_size,
            epoch,
            first_txid: first,
            last_txid: last,
            committed_ms: now_ms(),
            database_pages: committed.database_pages,
        };
        let bytes = segment::encode_segment(&header, &committed.pages);
        current.bytes_since_snapshot += bytes.len() as u64;
        current.last_txid = last;
        let name = segment::file_name(&Named::Segment { first, last });
        stream.queue(replication, &current.generation, &name, bytes);
    }
    if db.wal_bytes() > settings.checkpoint_wal_bytes {
        db.checkpoint_read_frames()?;
    }
    Ok(stream.last_queued())
}

/// After the database opened for an object's events: replication on for
/// it, and the generation kept only if it ends where the database does.
pub fn attach(stream: &Stream, db: &mut Database) -> anyhow::Result<()> {
    db.replicate()?;
    let txid = db.txid()?;
    let mut position = stream.position();
    if position
        .as_ref()
        .is_some_and(|current| current.last_txid != txid)
    {
        *position = None;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::ReplicationSettings;
    use crate::metrics::Metrics;
    use crate::replication::restore::{Point, RestoreError, restore};
    use crate::storage::{DatabaseSettings, Durability};

    fn write(db: &mut Database, sql: &str) {
        db.begin_event().expect("begin");
        db.as_guest_write(|c| c.execute_batch(sql)).expect("write");
        db.end_event().expect("end");
        db.commit().expect("commit");
    }

    fn rows(path: &Path) -> Vec<i64> {
        let conn = rusqlite::Connection::open(path).expect("open");
        let mut statement = conn.prepare("SELECT x FROM t ORDER BY x").expect("prepare");
        statement
            .query_map([], |row| row.get(0))
            .expect("query")
            .map(|row| row.expect("row"))
            .collect()
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn commits_shipped_as_segments_restore_to_any_transaction() {
        let dir = tempfile::tempdir().expect("temp dir");
        let settings = ReplicationSettings {
            url: Some(format!("file://{}", dir.path().join("store").display())),
            // Small enough that the log is checkpointed between commits.
            checkpoint_wal_bytes: 8 << 10,
            ..ReplicationSettings::default()
        };
        let replication = Replication::open(&settings, &Metrics::default()).expect("store");
        let stream = replication.stream("c", "id1", "one");
        let path = dir.path().join("db.sqlite");
        let mut db = Database::open(
            &path,
            &DatabaseSettings {
                durability: Durability::Full,
                max_storage_bytes: 1 << 30,
                max_sql_length: 100_000,
                max_sql_parameters: 999,
            },
        )
        .expect("open");
        attach(&stream, &mut db).expect("attach");
        write(&mut db, "CREATE TABLE t (x INTEGER, pad BLOB)");
        let mut last =
            ship(&replication, &stream, &mut db, &path, Overflow::Keep, 0).expect("ship");
        for x in 1..=20 {
            write(
                &mut db,
                &format!("INSERT INTO t VALUES ({x}, zeroblob(3000))"),
            );
            last = ship(&replication, &stream, &mut db, &path, Overflow::Keep, 0).expect("ship");
        }
        write(&mut db, "DELETE FROM t WHERE x > 15");
        last =
            last.max(ship(&replication, &stream, &mut db, &path, Overflow::Keep, 0).expect("ship"));
        assert!(
            stream
                .wait_durable(last, std::time::Duration::from_secs(10))
                .await
        );
        let txid = db.txid().expect("txid");
        assert_eq!(txid, 22, "one transaction per commit");

        let store = replication.store().as_ref();
        let latest = dir.path().join("latest.sqlite");
        let restored = restore(store, "c", "id1", Point::Latest, &latest)
            .await
            .expect("restore");
        assert_eq!(restored.txid, 22);
        assert_eq!(rows(&latest), (1..=15).collect::<Vec<_>>());

        let middle = dir.path().join("middle.sqlite");
        restore(store, "c", "id1", Point::Txid(11), &middle)
            .await
            .expect("restore");
        assert_eq!(rows(&middle), (1..=10).collect::<Vec<_>>());

        // A segment in the middle gone: refused, naming it.
        let generation = stream
            .position()
            .as_ref()
            .expect("position")
            .generation
            .clone();
        let gone = dir.path().join(format!(
            "store/c/id1/{generation}/{:016x}-{:016x}.seg",
            5, 5
        ));
        std::fs::remove_file(&gone).expect("remove a segment");
        let error = restore(
            store,
            "c",
            "id1",
            Point::Latest,
            &dir.path().join("x.sqlite"),
        )
        .await
        .expect_err("a gap is refused");
        assert!(
            matches!(&error, RestoreError::Missing { name, .. } if name.ends_with(&format!("{:016x}-{:016x}.seg", 5, 5))),
            "{error}"
        );
        // Before the gap still restores.
        restore(
            store,
            "c",
            "id1",
            Point::Txid(4),
            &dir.path().join("y.sqlite"),
        )
        .await
        .expect("before the gap");
    }
}
