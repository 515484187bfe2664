//! The one `bindgen!` of the `podhost:object` world.
//!
//! Imports are synchronous: they only touch the object's own SQLite
//! connection, which the actor owns. Exports are async so a guest runs on a
//! fiber and never blocks a runtime thread while it waits.

wasmtime::component::bindgen!({
    path: "../wit",
    world: "podhost:object/object",
    exports: { default: async },
});

pub use self::podhost::object::types::{Request, Response, StorageError, StorageErrorCode};
