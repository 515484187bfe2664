//! The object's alarm: one durable timer. When it comes due the host wakes
//! the object (from hibernation, after a restart) and calls
//! [`Object::alarm`](crate::Object::alarm).
//!
//! ```ignore
//! alarms::set_in(Duration::from_secs(30))?;   // replaces any other
//! let when = alarms::get()?;                  // Option<SystemTime>
//! alarms::cancel()?;
//! ```
//!
//! Setting and cancelling are part of the event's transaction: if the
//! event fails, the alarm stays as it was. For many timers on one object,
//! use [`schedule`](crate::schedule), which keeps this alarm at the
//! earliest of them.

use std::time::{Duration, SystemTime};

use crate::StorageError;
use crate::bindings::podhost::object::alarms as wit;
use crate::time::{from_ms, to_ms};

/// Sets the alarm to fire at `when`; a time in the past fires as soon as
/// the event commits.
pub fn set_at(when: SystemTime) -> Result<(), StorageError> {
    crate::only_in_podhost();
    wit::set(to_ms(when).unsigned_abs())
}

/// Sets the alarm to fire `delay` from now.
pub fn set_in(delay: Duration) -> Result<(), StorageError> {
    set_at(SystemTime::now() + delay)
}

/// When the alarm will fire, if it is set.
pub fn get() -> Result<Option<SystemTime>, StorageError> {
    crate::only_in_podhost();
    Ok(wit::get()?.map(|ms| from_ms(i64::try_from(ms).unwrap_or(i64::MAX))))
}

/// Removes the alarm; returns whether one was set.
pub fn cancel() -> Result<bool, StorageError> {
    crate::only_in_podhost();
    wit::cancel()
}
