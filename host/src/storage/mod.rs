//! Where objects keep their data: one SQLite file per object, the host's
//! internal tables inside it, the authorizer that guards them, and the
//! catalog of them all.

mod authorizer;
pub mod catalog;
mod claim;
pub(crate) mod database;
pub mod dump;
mod functions;
mod layout;
mod lock;
mod memory;
pub mod shared;
pub mod shared_writes;
mod spares;
mod template;
pub mod versions;
pub mod wal;

pub use authorizer::{RESERVED_PREFIX, mentions_reserved_name};
pub use database::{
    Contents, ImportCheck, QueryFailure, QueryLimits, QueryResult, TableRows, check_import,
    from_json, quote, to_json,
};
pub use database::{Database, Durability, MigrationFailed, Settings as DatabaseSettings};
pub use layout::{DataDir, wal_path};
pub use lock::DataDirLock;
pub use memory::configure_sqlite;
pub use spares::Spares;
