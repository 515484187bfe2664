//! What replication needs of a database: a transaction id counted inside
//! the database (so a restored copy knows which commit it is), the frames
//! each commit added to the write-ahead log, and a whole copy of the file.
//!
//! The checkpoint rule: with replication on, SQLite never checkpoints by
//! itself (`wal_autocheckpoint = 0`); the actor reads each commit's frames
//! right after it, on the thread that committed, and only then may
//! checkpoint. So no frame ever leaves the log before it was read.

use std::path::Path;

use super::Database;
use super::transaction::COMMIT;
use crate::storage::wal::Committed;

/// Counts commits in the database's own metadata.
const BUMP_TXID: &str = "/* _podhost_ */ INSERT INTO _podhost_meta (key, value) VALUES ('txid', 1) \
     ON CONFLICT (key) DO UPDATE SET value = value + 1";
const READ_TXID: &str = "/* _podhost_ */ SELECT value FROM _podhost_meta WHERE key = 'txid'";

impl Database {
    /// Turns replication on for this connection: no automatic checkpoint,
    /// a transaction id per commit, and frames read from the log's current
    /// end on (what is in it now is the caller's to have shipped, or to
    /// cover with a snapshot).
    pub fn replicate(&mut self) -> anyhow::Result<()> {
        self.conn
            .query_row("PRAGMA wal_autocheckpoint = 0", [], |_| Ok(()))?;
        self.replicated = true;
        self.cursor.reset();
        self.cursor.read_committed(&self.wal)?;
        Ok(())
    }

    /// Whether [`replicate`](Self::replicate) was called.
    pub fn is_replicated(&self) -> bool {
        self.replicated
    }

    /// Commits the open transaction, counting it first if it wrote and
    /// the database is replicated.
    pub(super) fn commit_statement(&self) -> rusqlite::Result<()> {
        if self.replicated && self.wrote() {
            self.run_cached(BUMP_TXID)?;
        }
        self.run_cached(COMMIT)
    }

    /// The id of the last commit counted (0 before the first).
    pub fn txid(&self) -> rusqlite::Result<u64> {
        if !self.schema_ready {
            return Ok(0);
        }
        let value: Option<i64> = match self
            .conn
            .prepare_cached(READ_TXID)?
            .query_row([], |row| row.get(0))
        {
            Ok(value) => value,
            Err(rusqlite::Error::QueryReturnedNoRows) => None,
            Err(error) => return Err(error),
        };
        Ok(value.unwrap_or(0).unsigned_abs())
    }

    /// The pages of the commits since the last call (or since
    /// [`replicate`](Self::replicate)), if any.
    pub fn take_committed(&mut self) -> std::io::Result<Option<Committed>> {
        self.cursor.read_committed(&self.wal)
    }

    /// Bytes in the write-ahead log.
    pub fn wal_bytes(&self) -> u64 {
        std::fs::metadata(&self.wal).map_or(0, |m| m.len())
    }

    /// Empties the write-ahead log into the database file. Only after
    /// [`take_committed`](Self::take_committed) has read every commit.
    pub fn checkpoint_read_frames(&mut self) -> rusqlite::Result<()> {
        self.checkpoint()?;
        self.cursor.reset();
        Ok(())
    }

    /// The whole database as of the last commit: the log emptied into the
    /// file, then the file read. Returns its transaction id, page size and
    /// bytes.
    pub fn snapshot(&mut self, path: &Path) -> anyhow::Result<(u64, u32, Vec<u8>)> {
        self.checkpoint_read_frames()?;
        let bytes = std::fs::read(path)?;
        Ok((self.txid()?, self.page_size as u32, bytes))
    }
}
