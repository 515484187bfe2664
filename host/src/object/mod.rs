//! Objects: their addresses, the events they handle, the actor that runs
//! one object's events one at a time, and the registry of live actors.

mod actor;
mod address;
mod admin;
mod event;
mod registry;

pub(crate) use actor::Actor;
pub use address::{ObjectAddr, normalize_name};
pub(crate) use admin::AdminRequest;
pub use admin::{AdminError, Inspection};
pub use event::EventError;
pub(crate) use event::{Event, SocketEvent, SocketOutcome};
pub(crate) use registry::Objects;
