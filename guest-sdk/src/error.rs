//! The error a handler returns, and the storage error of `sql` and `kv`.

use std::any::Any;
use std::fmt;

use http::{HeaderName, HeaderValue, StatusCode};

use crate::Response;
pub use crate::bindings::podhost::object::types::{StorageError, StorageErrorCode};
use crate::sockets::SocketError;

/// The result of a handler: `Err` rolls the event's writes back.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// A failed event: the host rolls back its writes and answers with
/// `status` and the host's error shape,
/// `{"error": {"code": "...", "message": "..."}}`.
///
/// Any `std::error::Error` converts, so `?` works on storage calls: a
/// [`StorageError`] becomes a status and code of its own (`constraint` is a
/// 409 `constraint_failed`, `storage-full` a 507 `storage_full`, `too-big`
/// a 413 `too_big`, the rest a 500 `storage_error`) with its message, never
/// a debug dump, and so does a socket error (a 500 `socket_error`); anything
/// else is a 500 `internal`. Build others with
/// [`Error::new`] or the shorthands, and [`with_code`](Self::with_code).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Error {
    status: StatusCode,
    code: String,
    message: String,
    headers: Vec<(HeaderName, HeaderValue)>,
}

impl Error {
    /// An error with the code that goes with `status` (`bad_request`,
    /// `not_found`, ...).
    pub fn new(status: StatusCode, message: impl Into<String>) -> Self {
        Error {
            status,
            code: default_code(status),
            message: message.into(),
            headers: Vec::new(),
        }
    }

    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, message)
    }

    pub fn unauthorized(message: impl Into<String>) -> Self {
        Self::new(StatusCode::UNAUTHORIZED, message)
    }

    pub fn forbidden(message: impl Into<String>) -> Self {
        Self::new(StatusCode::FORBIDDEN, message)
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

    /// Replaces the machine-readable code (`snake_case` by convention).
    pub fn with_code(mut self, code: impl Into<String>) -> Self {
        self.code = code.into();
        self
    }

    /// Adds a header to the error's response (`Allow` on a 405, say).
    pub fn with_header(mut self, name: HeaderName, value: HeaderValue) -> Self {
        self.headers.push((name, value));
        self
    }

    pub fn status(&self) -> StatusCode {
        self.status
    }

    pub fn code(&self) -> &str {
        &self.code
    }

    pub fn message(&self) -> &str {
        &self.message
    }

    /// The response the client receives.
    pub fn into_response(self) -> Response {
        let body = serde_json::json!({ "error": { "code": self.code, "message": self.message } });
        self.headers.into_iter().fold(
            Response::json(&body).with_status(self.status),
            |response, (name, value)| response.with_header(name, value),
        )
    }
}

/// `404 Not Found` → `not_found`: the reason phrase in snake case.
fn default_code(status: StatusCode) -> String {
    match status {
        StatusCode::INTERNAL_SERVER_ERROR => "internal".to_string(),
        StatusCode::UNAUTHORIZED => "unauthenticated".to_string(),
        _ => status.canonical_reason().map_or_else(
            || format!("status_{}", status.as_u16()),
            |reason| {
                reason
                    .chars()
                    .filter_map(|c| match c {
                        ' ' | '-' => Some('_'),
                        c if c.is_ascii_alphanumeric() => Some(c.to_ascii_lowercase()),
                        _ => None,
                    })
                    .collect()
            },
        ),
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}: {}", self.status, self.code, self.message)
    }
}

impl<E: std::error::Error + 'static> From<E> for Error {
    fn from(err: E) -> Self {
        // Storage errors carry a code the client can act on; their
        // generated `Display` is a debug dump, so they are read field by
        // field instead.
        if let Some(storage) = (&err as &dyn Any).downcast_ref::<StorageError>() {
            return Error::from_storage(storage);
        }
        if let Some(socket) = (&err as &dyn Any).downcast_ref::<SocketError>() {
            return Error::from_socket(socket);
        }
        Error::internal(err.to_string())
    }
}

impl Error {
    fn from_storage(err: &StorageError) -> Self {
        let (status, code) = match err.code {
            StorageErrorCode::Constraint => (StatusCode::CONFLICT, "constraint_failed"),
            StorageErrorCode::StorageFull => (StatusCode::INSUFFICIENT_STORAGE, "storage_full"),
            StorageErrorCode::TooBig => (StatusCode::PAYLOAD_TOO_LARGE, "too_big"),
            StorageErrorCode::Invalid
            | StorageErrorCode::NotAuthorized
            | StorageErrorCode::Other => (StatusCode::INTERNAL_SERVER_ERROR, "storage_error"),
        };
        Error::new(status, format!("{}: {}", err.code.name(), err.message)).with_code(code)
    }
}

impl Error {
    fn from_socket(err: &SocketError) -> Self {
        let message = match err {
            SocketError::NoSuchSocket => "the socket is not open".to_string(),
            SocketError::TooBig(what) => format!("too big: {what}"),
            SocketError::InvalidCode(code) => {
                format!("{code} is not a close code an object may send")
            }
        };
        Error::internal(message).with_code("socket_error")
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

#[cfg(test)]
mod tests {
    use super::*;

    fn body(error: Error) -> serde_json::Value {
        serde_json::from_slice(error.into_response().body()).expect("JSON")
    }

    #[test]
    fn errors_use_the_hosts_shape() {
        let error = Error::not_found("no post 3");
        assert_eq!(error.code(), "not_found");
        assert_eq!(
            body(error),
            serde_json::json!({ "error": { "code": "not_found", "message": "no post 3" } })
        );
        assert_eq!(
            Error::new(StatusCode::METHOD_NOT_ALLOWED, "").code(),
            "method_not_allowed"
        );
        assert_eq!(Error::internal("x").code(), "internal");
        assert_eq!(
            Error::bad_request("x").with_code("bad_field").code(),
            "bad_field"
        );
    }

    #[test]
    fn a_storage_error_is_a_code_and_a_message_not_a_debug_dump() {
        let error: Error = StorageError::new(StorageErrorCode::Constraint, "UNIQUE failed").into();
        assert_eq!(error.status(), StatusCode::CONFLICT);
        assert_eq!(error.code(), "constraint_failed");
        assert_eq!(error.message(), "constraint: UNIQUE failed");
        let error: Error = StorageError::new(StorageErrorCode::Other, "disk").into();
        assert_eq!(error.status(), StatusCode::INTERNAL_SERVER_ERROR);
        assert!(!body(error).to_string().contains("StorageError"));
    }

    #[test]
    fn a_socket_error_is_a_message_not_a_debug_dump() {
        let error: Error = SocketError::InvalidCode(7).into();
        assert_eq!(error.code(), "socket_error");
        assert!(
            error.message().contains("7 is not a close code"),
            "{}",
            error.message()
        );
    }

    #[test]
    fn other_errors_are_internal() {
        let error: Error = "x".parse::<i64>().expect_err("not a number").into();
        assert_eq!(error.status(), StatusCode::INTERNAL_SERVER_ERROR);
        assert_eq!(error.code(), "internal");
    }
}
