//! The deployed versions of every class, in the catalog: one row per
//! version (its component's SHA-256, size, when and by whom, the class's
//! config as persisted JSON, its migrations once known) and which version
//! is active. The components themselves are files named by their hash
//! (see `layout`).

use std::collections::BTreeSet;

use rusqlite::{Connection, OptionalExtension, params};
use serde::Serialize;

use super::catalog::{Catalog, now_ms};

pub(crate) const SCHEMA: &str = "
    CREATE TABLE IF NOT EXISTS class_versions (
        class TEXT NOT NULL,
        version INTEGER NOT NULL,
        hash TEXT NOT NULL,
        size_bytes INTEGER NOT NULL,
        deployed_at INTEGER NOT NULL,
        deployed_by TEXT NOT NULL,
        -- The class's table of podhost.toml (without `path`), as JSON.
        config TEXT NOT NULL,
        -- The migrations as a JSON array, once validation has read them.
        migrations TEXT,
        active INTEGER NOT NULL DEFAULT 0,
        PRIMARY KEY (class, version)
    );
";

/// One deployed version of a class. Times are ms since the Unix epoch.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct VersionRecord {
    pub class: String,
    pub version: u64,
    pub hash: String,
    pub size_bytes: u64,
    pub deployed_at: i64,
    pub deployed_by: String,
    pub active: bool,
    #[serde(skip)]
    pub config: String,
    #[serde(skip)]
    pub migrations: Option<Vec<String>>,
}

/// What a new version is made of.
pub struct NewVersion<'a> {
    pub class: &'a str,
    /// From [`Catalog::next_version`].
    pub version: u64,
    pub hash: &'a str,
    pub size_bytes: u64,
    pub deployed_by: &'a str,
    pub config: &'a str,
    pub migrations: Option<&'a [String]>,
}

const COLUMNS: &str =
    "class, version, hash, size_bytes, deployed_at, deployed_by, active, config, migrations";

fn record(row: &rusqlite::Row<'_>) -> rusqlite::Result<VersionRecord> {
    let migrations: Option<String> = row.get(8)?;
    Ok(VersionRecord {
        class: row.get(0)?,
        version: row.get::<_, i64>(1)?.unsigned_abs(),
        hash: row.get(2)?,
        size_bytes: row.get::<_, i64>(3)?.unsigned_abs(),
        deployed_at: row.get(4)?,
        deployed_by: row.get(5)?,
        active: row.get(6)?,
        config: row.get(7)?,
        migrations: migrations.and_then(|text| serde_json::from_str(&text).ok()),
    })
}

impl Catalog {
    /// Every version of `class` (of every class if `None`), oldest first.
    pub fn versions(&self, class: Option<&str>) -> rusqlite::Result<Vec<VersionRecord>> {
        let conn = self.lock();
        let mut stmt = conn.prepare_cached(&format!(
            "SELECT {COLUMNS} FROM class_versions WHERE ?1 IS NULL OR class = ?1
             ORDER BY class, version"
        ))?;
        let rows = stmt.query_map([class], record)?;
        rows.collect()
    }

    /// The active version of every class.
    pub fn active_versions(&self) -> rusqlite::Result<Vec<VersionRecord>> {
        let conn = self.lock();
        let mut stmt = conn.prepare_cached(&format!(
            "SELECT {COLUMNS} FROM class_versions WHERE active ORDER BY class"
        ))?;
        let rows = stmt.query_map([], record)?;
        rows.collect()
    }

    /// Adds a version of a class and makes it the active one; returns it.
    pub fn add_version(&self, new: &NewVersion<'_>) -> rusqlite::Result<VersionRecord> {
        self.writes().run(self.connection(), |conn| {
                    let tx = conn.savepoint()?;
            let version = new.version as i64;
            let migrations = new
                .migrations
                .map(|list| serde_json::to_string(list).unwrap_or_else(|_| "[]".into()));
            tx.execute(
                "UPDATE class_versions SET active = 0 WHERE class = ?1",
                [new.class],
            )?;
            tx.execute(
                "INSERT INTO class_versions
                 (class, version, hash, size_bytes, deployed_at, deployed_by, config, migrations, active)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, 1)",
                params![
                    new.class,
                    version,
                    new.hash,
                    new.size_bytes as i64,
                    now_ms(),
                    new.deployed_by,
                    new.config,
                    migrations
                ],
            )?;
            let added = version_of(&tx, new.class, version)?;
            tx.commit()?;
            added.ok_or(rusqlite::Error::QueryReturnedNoRows)
        })
    }

    /// The number the next version of `class` gets.
    pub fn next_version(&self, class: &str) -> rusqlite::Result<u64> {
        let last: Option<i64> = self.lock().query_row(
            "SELECT max(version) FROM class_versions WHERE class = ?1",
            [class],
            |row| row.get(0),
        )?;
        Ok(last.unwrap_or(0).unsigned_abs() + 1)
    }

    /// Makes `version` of `class` the active one; returns it, or `None` if
    /// there is no such version.
    pub fn activate_version(
        &self,
        class: &str,
        version: u64,
    ) -> rusqlite::Result<Option<VersionRecord>> {
        self.writes().run(self.connection(), |conn| {
            let tx = conn.savepoint()?;
            if version_of(&tx, class, version as i64)?.is_none() {
                return Ok(None);
            }
            tx.execute(
                "UPDATE class_versions SET active = (version = ?2) WHERE class = ?1",
                params![class, version as i64],
            )?;
            let active = version_of(&tx, class, version as i64)?;
            tx.commit()?;
            Ok(active)
        })
    }

    /// Forgets every version of `class`; returns how many there were.
    pub fn remove_versions(&self, class: &str) -> rusqlite::Result<usize> {
        self.writes().run(self.connection(), |conn| {
            conn.execute("DELETE FROM class_versions WHERE class = ?1", [class])
        })
    }

    /// The component hashes some version still refers to.
    pub fn hashes_in_use(&self) -> rusqlite::Result<BTreeSet<String>> {
        let conn = self.lock();
        let mut stmt = conn.prepare_cached("SELECT DISTINCT hash FROM class_versions")?;
        let rows = stmt.query_map([], |row| row.get(0))?;
        rows.collect()
    }
}

fn version_of(
    conn: &Connection,
    class: &str,
    version: i64,
) -> rusqlite::Result<Option<VersionRecord>> {
    conn.query_row(
        &format!("SELECT {COLUMNS} FROM class_versions WHERE class = ?1 AND version = ?2"),
        params![class, version],
        record,
    )
    .optional()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::Durability;

    fn new<'a>(version: u64, hash: &'a str, config: &'a str) -> NewVersion<'a> {
        NewVersion {
            class: "counter",
            version,
            hash,
            size_bytes: 10,
            deployed_by: "admin",
            config,
            migrations: None,
        }
    }

    #[test]
    fn versions_number_up_and_one_is_active() {
        let dir = tempfile::tempdir().expect("temp dir");
        let catalog = Catalog::open(dir.path(), Durability::Normal).expect("open");
        assert_eq!(catalog.next_version("counter").expect("next"), 1);
        let first = catalog.add_version(&new(1, "h1", "{}")).expect("v1");
        assert_eq!(catalog.next_version("counter").expect("next"), 2);
        let second = catalog.add_version(&new(2, "h2", "{}")).expect("v2");
        assert_eq!((first.version, second.version), (1, 2));
        let active = catalog.active_versions().expect("active");
        assert_eq!(active.len(), 1);
        assert_eq!(active[0].hash, "h2");
        let back = catalog.activate_version("counter", 1).expect("rollback");
        assert_eq!(back.map(|v| v.hash), Some("h1".to_string()));
        assert!(
            catalog
                .activate_version("counter", 9)
                .expect("none")
                .is_none()
        );
        assert_eq!(catalog.versions(Some("counter")).expect("list").len(), 2);
        assert_eq!(catalog.hashes_in_use().expect("hashes").len(), 2);
        assert_eq!(catalog.remove_versions("counter").expect("remove"), 2);
        assert!(catalog.hashes_in_use().expect("hashes").is_empty());
    }
}
