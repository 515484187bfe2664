//! `podhost:object/context`: who the object is.

use crate::bindings::podhost::object::context::{Host, ObjectRef};
use crate::capabilities::ObjectState;

impl Host for ObjectState {
    fn self_ref(&mut self) -> ObjectRef {
        ObjectRef {
            class: self.object.class().to_string(),
            name: self.object.name().to_string(),
            id: self.object.id().to_string(),
        }
    }
}
