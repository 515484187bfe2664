//! The object's durable event log, which clients follow as Server-Sent
//! Events at `GET /objects/{class}/{name}/_events` and resume with
//! `Last-Event-ID` without missing any.
//!
//! ```ignore
//! events::publish_json("message", &stored)?;   // part of the event's transaction
//! ```
//!
//! An event is logged with the event that publishes it: subscribers get it
//! once that commits, and never if it fails.

use serde::Serialize;

use crate::bindings::podhost::object::events as wit;
use crate::{Error, StorageError};

/// Logs an event named `name` (the SSE `event:` field) with `data`;
/// returns its id.
pub fn publish(name: &str, data: &str) -> Result<u64, StorageError> {
    crate::only_in_podhost();
    wit::publish(name, data)
}

/// Logs an event with `value` as JSON data; returns its id.
pub fn publish_json<T: Serialize + ?Sized>(name: &str, value: &T) -> Result<u64, Error> {
    Ok(publish(name, &serde_json::to_string(value)?)?)
}
