//! The tenants' tables in the catalog's database: tenants with their token
//! digests and quotas, and which tenant owns which class. Every call is
//! synchronous; callers run the writes on blocking threads.

use std::path::Path;

use parking_lot::Mutex;
use rusqlite::{Connection, ErrorCode, params};

use super::quotas::Quotas;
use crate::storage::Durability;
use crate::storage::shared_writes::{SharedWriteError, Writes};

pub(crate) const SCHEMA: &str = "
    CREATE TABLE IF NOT EXISTS tenants (
        name TEXT PRIMARY KEY,
        -- SHA-256 of the token, in hex: the token itself is never kept.
        token_hash TEXT NOT NULL UNIQUE,
        max_classes INTEGER NOT NULL,
        max_objects INTEGER NOT NULL,
        max_storage_bytes INTEGER NOT NULL,
        created_at INTEGER NOT NULL
    );
    -- A class without a row here is the operator's.
    CREATE TABLE IF NOT EXISTS class_owners (
        class TEXT PRIMARY KEY,
        tenant TEXT NOT NULL REFERENCES tenants (name),
        claimed_at INTEGER NOT NULL
    );
    CREATE INDEX IF NOT EXISTS class_owners_by_tenant ON class_owners (tenant);
";

/// A tenant as stored.
#[derive(Debug, Clone)]
pub struct TenantRow {
    pub name: String,
    pub token_hash: String,
    pub quotas: Quotas,
    pub created_at: i64,
}

/// Everything the tenants keep in memory, as read at start.
pub struct Loaded {
    pub shared: Shared,
    /// Objects per class, as the catalog knows them.
    pub objects: Vec<(String, u64)>,
}

/// What the nodes of a cluster share: the tenants and the classes'
/// owners (class, tenant).
pub struct Shared {
    pub tenants: Vec<TenantRow>,
    pub owners: Vec<(String, String)>,
}

pub struct Store {
    conn: Mutex<Connection>,
    writes: Writes,
}

impl Store {
    /// Opens the catalog's database (the catalog has created it) with its
    /// own connection.
    pub fn open(data_dir: &Path, durability: Durability, writes: Writes) -> anyhow::Result<Self> {
        let conn = crate::storage::catalog::connect(data_dir, durability)?;
        conn.execute_batch("PRAGMA foreign_keys = ON;")?;
        conn.execute_batch(SCHEMA)?;
        Ok(Store {
            conn: Mutex::new(conn),
            writes,
        })
    }

    /// Whether the tables are a cluster's (see `storage::shared_writes`).
    pub fn is_shared(&self) -> bool {
        self.writes.is_shared()
    }

    /// Returns once the node's copy shows what etcd has now (a cluster).
    pub fn catch_up(&self) -> Result<(), SharedWriteError> {
        self.writes.catch_up()
    }

    pub fn load(&self) -> rusqlite::Result<Loaded> {
        let shared = self.load_shared()?;
        let conn = self.conn.lock();
        let objects = conn
            .prepare("SELECT class, count(*) FROM objects GROUP BY class")?
            .query_map([], |row| {
                Ok((row.get(0)?, row.get::<_, i64>(1)?.unsigned_abs()))
            })?
            .collect::<rusqlite::Result<_>>()?;
        Ok(Loaded { shared, objects })
    }

    /// The tenants and the classes' owners (the object counts are each
    /// node's own).
    pub fn load_shared(&self) -> rusqlite::Result<Shared> {
        let conn = self.conn.lock();
        let tenants = conn
            .prepare(
                "SELECT name, token_hash, max_classes, max_objects, max_storage_bytes, created_at
                 FROM tenants",
            )?
            .query_map([], |row| {
                Ok(TenantRow {
                    name: row.get(0)?,
                    token_hash: row.get(1)?,
                    quotas: Quotas {
                        max_classes: row.get::<_, i64>(2)?.unsigned_abs(),
                        max_objects: row.get::<_, i64>(3)?.unsigned_abs(),
                        max_storage_bytes: row.get::<_, i64>(4)?.unsigned_abs(),
                    },
                    created_at: row.get(5)?,
                })
            })?
            .collect::<rusqlite::Result<_>>()?;
        let owners = conn
            .prepare("SELECT class, tenant FROM class_owners")?
            .query_map([], |row| Ok((row.get(0)?, row.get(1)?)))?
            .collect::<rusqlite::Result<_>>()?;
        Ok(Shared { tenants, owners })
    }

    /// Adds a tenant; `Ok(false)` if the name is taken.
    pub fn insert(&self, tenant: &TenantRow) -> rusqlite::Result<bool> {
        self.writes.run(&self.conn, |conn| {
            let quotas = &tenant.quotas;
            let inserted = conn.execute(
                "INSERT INTO tenants (name, token_hash, max_classes, max_objects, max_storage_bytes, created_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                params![
                    tenant.name,
                    tenant.token_hash,
                    clamp(quotas.max_classes),
                    clamp(quotas.max_objects),
                    clamp(quotas.max_storage_bytes),
                    tenant.created_at
                ],
            );
            match inserted {
                Ok(_) => Ok(true),
                Err(error) if error.sqlite_error_code() == Some(ErrorCode::ConstraintViolation) => {
                    Ok(false)
                }
                Err(error) => Err(error),
            }
        })
    }

    /// Removes a tenant that owns no class; returns whether it existed.
    pub fn delete(&self, name: &str) -> rusqlite::Result<bool> {
        self.writes.run(&self.conn, |conn| {
            Ok(conn.execute("DELETE FROM tenants WHERE name = ?1", [name])? > 0)
        })
    }

    pub fn set_owner(&self, class: &str, tenant: &str, now: i64) -> rusqlite::Result<()> {
        self.writes.run(&self.conn, |conn| {
            conn.execute(
                "INSERT INTO class_owners (class, tenant, claimed_at) VALUES (?1, ?2, ?3)
                 ON CONFLICT (class) DO UPDATE SET tenant = excluded.tenant, claimed_at = excluded.claimed_at
                 WHERE class_owners.tenant <> excluded.tenant",
                params![class, tenant, now],
            )?;
            Ok(())
        })
    }

    pub fn remove_owner(&self, class: &str) -> rusqlite::Result<()> {
        self.writes.run(&self.conn, |conn| {
            conn.execute("DELETE FROM class_owners WHERE class = ?1", [class])?;
            Ok(())
        })
    }

    /// The sum of the last measured sizes of the objects of `tenant`'s
    /// classes.
    pub fn storage_of(&self, tenant: &str) -> rusqlite::Result<u64> {
        let conn = self.conn.lock();
        let mut statement = conn.prepare_cached(
            "SELECT coalesce(sum(objects.size_bytes), 0) FROM class_owners
             JOIN objects ON objects.class = class_owners.class
             WHERE class_owners.tenant = ?1",
        )?;
        let bytes: i64 = statement.query_row([tenant], |row| row.get(0))?;
        Ok(bytes.unsigned_abs())
    }
}

fn clamp(value: u64) -> i64 {
    i64::try_from(value).unwrap_or(i64::MAX)
}
