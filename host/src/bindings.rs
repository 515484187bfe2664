//! The one `bindgen!` of the `podhost:object` world.
//!
//! Imports are synchronous: they only touch the object's own SQLite
//! connection, which the actor owns. Only `objects` and `routing` are
//! async: they wait on other objects and on the accounts. Exports are async so a guest runs on a fiber and never
//! blocks a runtime thread while it waits.

wasmtime::component::bindgen!({
    path: "../wit",
    world: "podhost:object/object",
    imports: {
        // A call waits for another object's event; a list, for the catalog.
        "podhost:object/objects.call": async,
        "podhost:object/objects.delete": async,
        "podhost:object/objects.list": async,
        // Keys and handles live in the accounts' database.
        "podhost:object/routing.create-key": async,
        "podhost:object/routing.revoke-key": async,
        "podhost:object/routing.set-handle": async,
        "podhost:object/routing.remove-handle": async,
    },
    exports: { default: async },
});

pub use self::podhost::object::types::{Request, Response, StorageError, StorageErrorCode};
