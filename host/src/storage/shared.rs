//! The catalog's tables that every node of a cluster shares: classes and
//! their versions, tenants, users, sessions, keys and handles. On one
//! node they are ordinary tables of `catalog.sqlite`; in a cluster etcd
//! holds them (`cluster::shared`) and each node's tables are a copy kept
//! by a watch, written by nothing else.

use serde_json::{Map, Value};

/// A shared table: its name, its primary key's columns and the columns
/// that must be unique across rows (which the cluster enforces with keys
/// of their own, since each node only sees its copy).
#[derive(Debug)]
pub struct SharedTable {
    pub name: &'static str,
    pub key: &'static [&'static str],
    pub unique: &'static [&'static str],
}

pub const SHARED_TABLES: &[SharedTable] = &[
    SharedTable {
        name: "users",
        key: &["id"],
        unique: &["email"],
    },
    SharedTable {
        name: "sessions",
        key: &["id"],
        unique: &["refresh_hash"],
    },
    SharedTable {
        name: "orgs",
        key: &["id"],
        unique: &[],
    },
    SharedTable {
        name: "org_members",
        key: &["org_id", "user_id"],
        unique: &[],
    },
    SharedTable {
        name: "api_keys",
        key: &["id"],
        unique: &["hash"],
    },
    SharedTable {
        name: "handles",
        key: &["class", "handle"],
        unique: &[],
    },
    SharedTable {
        name: "retired_refresh_tokens",
        key: &["hash"],
        unique: &[],
    },
    SharedTable {
        name: "disabled_users",
        key: &["user_id"],
        unique: &[],
    },
    SharedTable {
        name: "deleted_sessions",
        key: &["id"],
        unique: &[],
    },
    // The accounts' signing key, among others.
    SharedTable {
        name: "settings",
        key: &["key"],
        unique: &[],
    },
    SharedTable {
        name: "tenants",
        key: &["name"],
        unique: &["token_hash"],
    },
    SharedTable {
        name: "class_owners",
        key: &["class"],
        unique: &[],
    },
    SharedTable {
        name: "class_versions",
        key: &["class", "version"],
        unique: &[],
    },
];

impl SharedTable {
    /// `WHERE` text matching one row by its key, the key's values bound
    /// as `?1`, `?2`… (see [`key_params`]).
    pub fn key_condition(&self) -> String {
        let terms: Vec<String> = self
            .key
            .iter()
            .enumerate()
            .map(|(index, column)| format!("{column} = ?{}", index + 1))
            .collect();
        terms.join(" AND ")
    }
}

/// A row key's values as SQLite values.
pub fn key_params(key: &[Value]) -> Result<Vec<rusqlite::types::Value>, String> {
    key.iter().map(super::from_json).collect()
}

/// The shared table named `name`.
pub fn shared_table(name: &str) -> Option<&'static SharedTable> {
    SHARED_TABLES.iter().find(|table| table.name == name)
}

/// A row of a shared table as a node's copy applied it: each node's
/// runtime is told, so what it keeps in memory (caches, revoked
/// sessions, tenants, loaded classes) follows. The node that made a
/// change is told too, so what it does with one must be idempotent.
#[derive(Debug, Clone, PartialEq)]
pub struct RowChange {
    pub table: &'static str,
    /// The primary key's values, in the order of [`SharedTable::key`].
    pub key: Vec<Value>,
    /// The row after the change, column by column (values as
    /// [`super::to_json`] writes them); `None` when it was deleted.
    pub row: Option<Map<String, Value>>,
}

impl RowChange {
    /// Column `column` of the row after the change.
    pub fn column(&self, column: &str) -> Option<&Value> {
        self.row.as_ref().and_then(|row| row.get(column))
    }

    /// Column `column` of the row after the change, when it is text.
    pub fn text(&self, column: &str) -> Option<&str> {
        self.column(column).and_then(Value::as_str)
    }

    /// Column `column` of the row after the change, when it is an integer.
    pub fn integer(&self, column: &str) -> Option<i64> {
        self.column(column).and_then(Value::as_i64)
    }

    /// Whether the row was deleted.
    pub fn deleted(&self) -> bool {
        self.row.is_none()
    }

    /// The primary key's `index`th value, when it is text.
    pub fn key_text(&self, index: usize) -> Option<&str> {
        self.key.get(index).and_then(Value::as_str)
    }
}
