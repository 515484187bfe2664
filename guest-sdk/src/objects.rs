//! Other objects: call them, delete them, list them.
//!
//! ```ignore
//! use podhost_sdk::{objects, Method};
//!
//! // A request to match "lobby-3", answered once its event committed.
//! let state: MatchState = objects::get("match", "lobby-3")
//!     .call_json(Method::POST, "/moves", &serde_json::json!({"x": 1}))?;
//!
//! // Children by name prefix, from the host's catalog (none is woken).
//! let page = objects::list("match", "lobby-", 100, None)?;
//! for name in page.names { objects::delete("match", &name)?; }
//! ```
//!
//! A call is an event of the callee, in the callee's own transaction: if
//! this object's event fails afterwards, the callee's writes stay. A chain
//! of calls that comes back to an object already in it fails at once with
//! [`CallError::Cycle`]; chains are at most `max_call_depth` deep and a
//! call waits at most `call_timeout` (see the README). The callee sees
//! [`Caller::Object`](crate::caller::Caller::Object) naming this object.

use http::StatusCode;
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::bindings::podhost::object::objects as wit;
use crate::bindings::podhost::object::types;
use crate::{Error, Method, Request, Response, Result};

pub use wit::{CallError, CallFailure, ListPage};

/// Object `name` of `class`, to send requests to. Making it costs nothing
/// and wakes no one.
pub fn get(class: &str, name: &str) -> Stub {
    Stub {
        class: class.to_string(),
        name: name.to_string(),
    }
}

/// Deletes object `name` of `class` for good: its database and its entry
/// in the catalog. Returns whether it had a database.
pub fn delete(class: &str, name: &str) -> Result<bool, CallError> {
    crate::only_in_podhost();
    wit::delete(class, name)
}

/// Names of `class`'s objects that start with `prefix`, in order, after
/// `cursor` (the previous page's), at most `limit` (capped at 1000). Read
/// from the host's catalog: listing wakes none of them.
pub fn list(
    class: &str,
    prefix: &str,
    limit: u32,
    cursor: Option<&str>,
) -> Result<ListPage, CallError> {
    crate::only_in_podhost();
    wit::list(class, prefix, limit, cursor)
}

/// Another object, as [`get`] names it.
#[derive(Debug, Clone)]
pub struct Stub {
    class: String,
    name: String,
}

impl Stub {
    pub fn class(&self) -> &str {
        &self.class
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// Sends `request` and returns the callee's committed response,
    /// whatever its status. `request` is an `http::Request<Vec<u8>>` whose
    /// URI is the path below the object (`/moves?x=1`), or a [`Request`]
    /// this object received, to pass it on as it is.
    pub fn fetch(&self, request: impl Outgoing) -> Result<Response, CallError> {
        let request = request.into_call();
        crate::only_in_podhost();
        let response = wit::call(&self.class, &self.name, &request)?;
        Response::from_wit(response).map_err(|error| CallError::Invalid(error.message().into()))
    }

    /// Sends `method path` with `body` (empty if none).
    pub fn call(&self, method: Method, path: &str, body: Vec<u8>) -> Result<Response, CallError> {
        let request = http::Request::builder()
            .method(method)
            .uri(path)
            .body(body)
            .map_err(|error| CallError::Invalid(format!("invalid request: {error}")))?;
        self.fetch(request)
    }

    /// Sends `body` as JSON and parses the JSON answer. A call that fails,
    /// or an answer that is not a 2xx, becomes an [`Error`] with the
    /// callee's status and message (so `?` passes it on to the client).
    pub fn call_json<B: Serialize + ?Sized, T: DeserializeOwned>(
        &self,
        method: Method,
        path: &str,
        body: &B,
    ) -> Result<T> {
        let body = serde_json::to_vec(body)
            .map_err(|e| Error::internal(format!("cannot serialize the request: {e}")))?;
        let request = http::Request::builder()
            .method(method)
            .uri(path)
            .header(http::header::CONTENT_TYPE, "application/json")
            .body(body)
            .map_err(|e| Error::bad_request(format!("invalid request: {e}")))?;
        let response = self.fetch(request).map_err(CallError::into_error)?;
        if !response.status().is_success() {
            return Err(Error::new(response.status(), error_message(&response)));
        }
        serde_json::from_slice(response.body()).map_err(|e| {
            Error::internal(format!(
                "{}/{} answered JSON this object cannot read: {e}",
                self.class, self.name
            ))
        })
    }
}

/// What [`Stub::fetch`] sends.
pub trait Outgoing {
    #[doc(hidden)]
    fn into_call(self) -> types::Request;
}

impl Outgoing for http::Request<Vec<u8>> {
    fn into_call(self) -> types::Request {
        let (parts, body) = self.into_parts();
        // Only a path (and query) names something below the object; the
        // host refuses anything else with `invalid`.
        let path_with_query = match parts.uri.path_and_query() {
            Some(path) if parts.uri.authority().is_none() => path.as_str().to_string(),
            _ => parts.uri.to_string(),
        };
        types::Request {
            method: parts.method.as_str().to_string(),
            path_with_query,
            headers: parts
                .headers
                .iter()
                .map(|(name, value)| (name.as_str().to_string(), value.as_bytes().to_vec()))
                .collect(),
            body,
            caller: None,
            client_address: None,
        }
    }
}

impl Outgoing for &Request {
    fn into_call(self) -> types::Request {
        self.to_call()
    }
}

impl Outgoing for Request {
    fn into_call(self) -> types::Request {
        self.to_call()
    }
}

/// The message of an error response: its `{"error": ...}` (an SDK
/// object's, or the host's `{"error": {"message"}}`), else its text.
fn error_message(response: &Response) -> String {
    let json: Option<serde_json::Value> = serde_json::from_slice(response.body()).ok();
    let error = json.as_ref().and_then(|json| json.get("error"));
    match error {
        Some(serde_json::Value::String(message)) => message.clone(),
        Some(error) => error
            .get("message")
            .and_then(|m| m.as_str())
            .map_or_else(|| error.to_string(), str::to_string),
        None => String::from_utf8_lossy(response.body()).into_owned(),
    }
}

impl CallError {
    /// The status a client would best get for this failure: the callee's
    /// for `failed`, 508 for a cycle or depth, 504 for a timeout.
    pub fn status(&self) -> StatusCode {
        match self {
            CallError::Cycle(_) | CallError::Depth => StatusCode::LOOP_DETECTED,
            CallError::Timeout => StatusCode::GATEWAY_TIMEOUT,
            CallError::Failed(failure) => {
                StatusCode::from_u16(failure.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
            }
            CallError::NoSuchClass => StatusCode::NOT_FOUND,
            CallError::NotAllowed => StatusCode::FORBIDDEN,
            CallError::Invalid(_) => StatusCode::BAD_REQUEST,
        }
    }

    /// What went wrong, in a sentence.
    pub fn message(&self) -> String {
        match self {
            CallError::Cycle(chain) => format!("the call would deadlock: {chain}"),
            CallError::Depth => "the chain of calls is too deep (max_call_depth)".into(),
            CallError::Timeout => "the called object did not answer in time (call_timeout)".into(),
            CallError::Failed(failure) => format!(
                "the called object failed ({}): {}",
                failure.code, failure.message
            ),
            CallError::NoSuchClass => "no such class is deployed".into(),
            CallError::NotAllowed => "this object may not reach that class".into(),
            CallError::Invalid(why) => format!("invalid call: {why}"),
        }
    }

    /// This failure as a handler's [`Error`], with [`status`](Self::status).
    pub fn into_error(self) -> Error {
        Error::new(self.status(), self.message())
    }
}
