//! The one `bindgen!` of the `podhost:object` world.
//!
//! Imports are synchronous: they only touch the object's own SQLite
//! connection, which the actor owns. Only `objects` is async: it waits on
//! other objects. Exports are async so a guest runs on a fiber and never
//! blocks a runtime thread while it waits.

wasmtime::component::bindgen!({
    path: "../wit",
    world: "podhost:object/object",
    imports: {
        // A call waits for another object's event; a list, for the catalog.
        "podhost:object/objects.call": async,
        "podhost:object/objects.delete": async,
        "podhost:object/objects.list": async,
    },
    exports: { default: async },
});

pub use self::podhost::object::types::{Request, Response, StorageError, StorageErrorCode};
