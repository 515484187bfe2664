//! Alarms: each object's one durable alarm, and what makes it fire.
//!
//! - [`stored`]: the truth, in the object's own database.
//! - [`index`]: the catalog's index of when each object must next be woken,
//!   never later than the truth.
//! - [`scheduler`]: the task that reads due entries and delivers alarm
//!   events, with a share of in-flight alarms per class.
//! - The guest's interface is `capabilities/alarms.rs` (one module per WIT
//!   interface, like every other); the actor's side (firing, retries with
//!   backoff, keeping the index in step around each commit) is
//!   `object/actor/alarm.rs`, since it is the actor's state it changes; the
//!   settings are `config::AlarmSettings`.

pub mod index;
mod scheduler;
mod stored;

pub use index::{DueAlarm, IndexedAlarm};
pub use scheduler::Alarms;
pub(crate) use stored::{read_alarm, write_alarm};
