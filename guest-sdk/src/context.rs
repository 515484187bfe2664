//! Who the running object is.

use crate::bindings::podhost::object::context;

pub use context::ObjectRef;

/// The address of the object this instance serves: its class, the name it
/// was addressed by and its stable id.
pub fn this_object() -> ObjectRef {
    crate::only_in_podhost();
    context::self_ref()
}
