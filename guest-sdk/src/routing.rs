//! API keys and handles for objects of this object's own tenant: how an
//! object lets outside clients reach another object (or itself) by
//! `/key/...` or `/handles/{class}/{handle}/...`.
//!
//! ```ignore
//! use podhost_sdk::{random, routing};
//!
//! let name = format!("inbox/{}", random::token()?);
//! let handle = routing::claim_handle("inbox", "alice", &name)?; // Err(Taken) if held
//! let key = routing::create_key("inbox", &name, "owner")?;      // key.key: shown once
//! ```
//!
//! An object may act on the classes it may call with
//! [`objects`](crate::objects): those of its own tenant (every class when
//! the server has no tenants). A change is made at once, not when the
//! event commits: an event that fails afterwards keeps it, so undo it
//! yourself (e.g. [`remove_handle`]) if you fail on purpose.

use crate::bindings::podhost::object::routing as wit;

pub use wit::{NewKey, RoutingError};

/// Makes an API key that reaches object `name` of `class` at `/key`. Its
/// secret (`key.key`) is only ever returned here; store its id to revoke it.
pub fn create_key(class: &str, name: &str, label: &str) -> Result<NewKey, RoutingError> {
    crate::only_in_podhost();
    wit::create_key(class, name, label)
}

/// Revokes key `id` of object `name` of `class`; whether it had that key.
pub fn revoke_key(class: &str, name: &str, id: &str) -> Result<bool, RoutingError> {
    crate::only_in_podhost();
    wit::revoke_key(class, name, id)
}

/// Points `handle` of `class` at object `name` unless it stands for
/// another object already ([`RoutingError::Taken`]); the handle as stored
/// (lowercased). Two objects claiming one handle cannot both get it.
pub fn claim_handle(class: &str, handle: &str, name: &str) -> Result<String, RoutingError> {
    crate::only_in_podhost();
    wit::set_handle(class, handle, name, false)
}

/// Points `handle` of `class` at object `name`, whatever it stood for.
pub fn set_handle(class: &str, handle: &str, name: &str) -> Result<String, RoutingError> {
    crate::only_in_podhost();
    wit::set_handle(class, handle, name, true)
}

/// Removes `handle` of `class`; whether it existed.
pub fn remove_handle(class: &str, handle: &str) -> Result<bool, RoutingError> {
    crate::only_in_podhost();
    wit::remove_handle(class, handle)
}

impl RoutingError {
    /// What went wrong, in a sentence.
    pub fn message(&self) -> String {
        match self {
            RoutingError::NotAllowed => {
                "this object may not manage that class's keys and handles".into()
            }
            RoutingError::NoSuchClass => "no such class is deployed".into(),
            RoutingError::Taken => "the handle stands for another object".into(),
            RoutingError::Invalid(why) => format!("invalid: {why}"),
            RoutingError::Unavailable(why) => format!("unavailable: {why}"),
        }
    }

    /// This failure as a handler's [`Error`](crate::Error): 409 for
    /// `taken`, 400 for `invalid`, 500 otherwise (a class's own mistake or
    /// the host's).
    pub fn into_error(self) -> crate::Error {
        let status = match self {
            RoutingError::Taken => http::StatusCode::CONFLICT,
            RoutingError::Invalid(_) => http::StatusCode::BAD_REQUEST,
            _ => http::StatusCode::INTERNAL_SERVER_ERROR,
        };
        crate::Error::new(status, self.message())
    }
}
