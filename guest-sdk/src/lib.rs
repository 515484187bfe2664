//! Write podhost object classes in Rust.
//!
//! A class is a type that implements [`Object`], exported with
//! [`export!`](crate::export) and built for `wasm32-wasip2`:
//!
//! ```ignore
//! use podhost_sdk::{sql, Object, Request, Response, Result};
//!
//! struct Counter;
//!
//! impl Object for Counter {
//!     fn activate() -> Result<Self> {
//!         sql::script("CREATE TABLE IF NOT EXISTS c (k TEXT PRIMARY KEY, v INTEGER)")?;
//!         Ok(Counter)
//!     }
//!
//!     fn fetch(&mut self, req: Request) -> Result<Response> {
//!         let hits: i64 = sql::query_one("SELECT v FROM c WHERE k = 'hits'", ())?.unwrap_or(0);
//!         Ok(Response::text(hits.to_string()))
//!     }
//! }
//!
//! podhost_sdk::export!(Counter);
//! ```
//!
//! Each object handles one event at a time, inside a transaction: when
//! `fetch` returns `Ok` its SQL and KV writes commit, when it returns `Err`
//! they roll back. There is nothing to lock and no `BEGIN` to write.
//!
//! [`Router`] dispatches requests by method and path; [`Table`] stores a
//! `serde` struct per user, per organization or per object and announces
//! every change on `table:<name>`.

pub mod alarms;
pub mod bindings;
pub mod caller;
pub mod config;
pub mod context;
mod error;
pub mod events;
pub mod http;
mod http_types;
pub mod kv;
mod object;
pub mod objects;
pub mod random;
pub mod router;
pub mod routing;
pub mod schedule;
pub mod sockets;
pub mod sql;
pub mod table;
pub mod time;

pub use ::http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode};
pub use error::{Error, Result, StorageError, StorageErrorCode};
pub use http_types::{Request, Response};
pub use object::Object;
pub use router::{Params, Router};
pub use table::{Record, Scope, Table, Type};

/// Stops a native build of a class (its `cargo test`, say) with a clear
/// message instead of an abort: podhost's imports exist only inside a
/// podhost instance. Free on wasm.
#[inline(always)]
#[track_caller]
pub(crate) fn only_in_podhost() {
    #[cfg(not(target_family = "wasm"))]
    panic!(
        "podhost_sdk works only inside a podhost object (a wasm32-wasip2 component podhost serves); \
         to test a class, run it in podhost::testing (see the README, \"Testing a class\")"
    );
}

#[doc(hidden)]
pub mod __private {
    pub use crate::object::{
        dispatch_alarm, dispatch_fetch, dispatch_socket_close, dispatch_socket_message,
        dispatch_socket_open,
    };
}
