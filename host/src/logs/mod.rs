//! The host's log: a writer that never blocks the threads that serve
//! requests or run guests, and the pipeline that carries guests' stdout
//! and stderr into it, rate-limited per object and escaped.

mod escape;
mod guest;
mod queue;
mod ring;
mod stderr;

pub use guest::{GuestLogs, ObjectLog};
pub use ring::{Level, LogRecord, ObjectRings, Source};
pub use stderr::{FlushGuard, NonBlockingStderr, dropped_records};
