//! `podhost:object/context`: who the object is, and its class's config.

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

    fn config(&mut self, key: String) -> Option<String> {
        self.config.get(&key).map(str::to_string)
    }
}
