//! Where objects keep their data: one SQLite file per object, the host's
//! internal tables inside it, and the authorizer that guards them.

mod authorizer;
pub(crate) mod database;
mod layout;

pub use authorizer::{RESERVED_PREFIX, mentions_reserved_name};
pub use database::{Database, Durability, MigrationFailed};
pub use layout::DataDir;
