//! podhost: a self-hosted runtime for Durable Objects built on WebAssembly
//! components.
//!
//! Every object of a class is its own wasmtime instance with its own SQLite
//! database; the gateway routes HTTP requests to objects by class and name,
//! and each object runs its events one at a time, each in a transaction.
//! See `DESIGN.md` beside the repository for the whole picture.

pub mod accounts;
pub mod alarms;
pub mod bindings;
pub mod capabilities;
pub mod cluster;
pub mod config;
pub mod deploy;
pub mod dev;
pub mod engine;
pub mod execution;
pub mod gateway;
pub mod limits;
pub mod logs;
pub mod metrics;
pub mod object;
pub mod os_limits;
pub mod replication;
pub mod runtime;
pub mod sockets;
pub mod storage;
pub mod tenants;
#[cfg(test)]
mod test_alloc;
pub mod testing;

pub use config::Config;
pub use runtime::Runtime;
