//! The error a handler returns, and the storage error of `sql` and `kv`.

use std::fmt;

use http::StatusCode;

use crate::Response;
pub use crate::bindings::podhost::object::types::{StorageError, StorageErrorCode};

/// The result of a handler: `Err` rolls the event's writes back.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// A failed event: the host rolls back its writes and answers with
/// `status` and a JSON body `{"error": message}`.
///
/// Any `std::error::Error` converts into a 500, so `?` works on storage
/// calls; build others with [`Error::new`] or the shorthands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Error {
    status: StatusCode,
    message: String,
}

impl Error {
    pub fn new(status: StatusCode, message: impl Into<String>) -> Self {
        Error {
            status,
            message: message.into(),
        }
    }

    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, message)
    }

    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, message)
    }

    pub fn conflict(message: impl Into<String>) -> Self {
        Self::new(StatusCode::CONFLICT, message)
    }

    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(StatusCode::INTERNAL_SERVER_ERROR, message)
    }

    pub fn status(&self) -> StatusCode {
        self.status
    }

    pub fn message(&self) -> &str {
        &self.message
    }

    /// The response the client receives.
    pub fn into_response(self) -> Response {
        Response::json(&serde_json::json!({ "error": self.message })).with_status(self.status)
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.status, self.message)
    }
}

impl<E: std::error::Error> From<E> for Error {
    fn from(err: E) -> Self {
        Error::internal(err.to_string())
    }
}

impl StorageErrorCode {
    /// The code's name in WIT: `invalid`, `not-authorized`, ...
    pub fn name(&self) -> &'static str {
        match self {
            StorageErrorCode::Invalid => "invalid",
            StorageErrorCode::Constraint => "constraint",
            StorageErrorCode::NotAuthorized => "not-authorized",
            StorageErrorCode::StorageFull => "storage-full",
            StorageErrorCode::TooBig => "too-big",
            StorageErrorCode::Other => "other",
        }
    }
}

impl StorageError {
    pub(crate) fn new(code: StorageErrorCode, message: impl Into<String>) -> Self {
        StorageError {
            code,
            message: message.into(),
        }
    }
}
