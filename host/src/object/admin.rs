//! What the operator asks of an object's data (inspect, query, export,
//! import), run by its actor between batches so it never races a write,
//! and without an instance: a hibernated object's database is opened for
//! the request and closed again, its guest code never runs.

use std::path::PathBuf;

use rusqlite::types::Value;
use tokio::sync::oneshot;

use super::event::EventError;
use crate::storage::{Contents, QueryFailure, QueryLimits, QueryResult};

pub(crate) enum AdminRequest {
    Inspect {
        /// Bounds counting the tables' rows.
        timeout: std::time::Duration,
        reply: oneshot::Sender<Result<Inspection, AdminError>>,
    },
    Query {
        sql: String,
        params: Vec<Value>,
        limits: QueryLimits,
        reply: oneshot::Sender<Result<QueryResult, AdminError>>,
    },
    /// Copy the database, as of the last commit, to a new file at `to`.
    Export {
        to: PathBuf,
        reply: oneshot::Sender<Result<(), AdminError>>,
    },
    /// Replace the database with the checked file at `from` (on the same
    /// file system), which has had `migrations` of the class's migrations.
    Import {
        from: PathBuf,
        migrations: i64,
        reply: oneshot::Sender<Result<(), AdminError>>,
    },
}

/// What the actor knows of its object, for `GET /admin/objects/..`.
#[derive(Debug)]
pub struct Inspection {
    /// An instance is running (not hibernated).
    pub live: bool,
    /// The database was open before the request (live, or kept open).
    pub open: bool,
    /// When its last batch started, if the actor saw one (ms since the
    /// epoch).
    pub last_active: Option<i64>,
    /// Bytes of the database file and its write-ahead log.
    pub size_bytes: u64,
    pub contents: Contents,
}

/// Why an operator's request to an object failed.
#[derive(Debug, thiserror::Error)]
pub enum AdminError {
    #[error("object {name:?} of class {class:?} does not exist")]
    NotFound { class: String, name: String },
    #[error(transparent)]
    Query(#[from] QueryFailure),
    #[error("the database was not imported: {0}")]
    ImportRefused(String),
    #[error(transparent)]
    Event(#[from] EventError),
    #[error("{0}")]
    Internal(String),
}
