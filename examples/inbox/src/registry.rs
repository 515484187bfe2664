//! The `inboxes` registry: self-service signup.
//!
//! `POST /objects/inboxes/signup {"handle"}` makes inbox `inbox/<random
//! id>`, claims the handle for it and makes its API key (through
//! `routing`, which an object may use for the classes of its own tenant),
//! and answers `201 {"handle", "api_key"}`: the only time the key is
//! shown. A taken handle is a 409, a bad one a 400 naming `handle`.
//!
//! Keys and handles are made at once, not when this event commits (see
//! `routing`), so a signup that fails after claiming the handle gives it
//! back before it answers.

use podhost_sdk::routing::{self, RoutingError};
use podhost_sdk::{Error, Method, Request, Response, Result, StatusCode, context, random};
use serde_json::{Map, Value, json};

use crate::inbox::report;

/// Longest handle, in bytes (the local part of an email address).
const MAX_HANDLE_BYTES: usize = 64;

pub fn fetch(req: Request) -> Result<Response> {
    let signup = context::this_object().name == "signup";
    if !signup || req.method() != Method::POST || req.path() != "/" {
        return Err(Error::not_found(
            "sign up with POST /objects/inboxes/signup {\"handle\"}",
        ));
    }
    let handle = handle(&req)?;
    let name = random::token()?;
    let handle = routing::claim_handle("inbox", &handle, &name).map_err(|error| match error {
        RoutingError::Taken => Error::conflict(format!("the handle {handle:?} is taken")),
        other => other.into_error(),
    })?;
    match finish(&handle, &name) {
        Ok(key) => Ok(Response::json(&json!({ "handle": handle, "api_key": key }))
            .with_status(StatusCode::CREATED)),
        Err(error) => {
            // Give the handle back: it is not this event's to roll back.
            if let Err(undo) = routing::remove_handle("inbox", &handle) {
                eprintln!("cannot give handle {handle:?} back: {}", undo.message());
            }
            Err(error)
        }
    }
}

/// Sets the inbox up, reports the signup and makes the key (last: a key
/// cannot be un-shown, but it can be revoked; nothing after it can fail).
fn finish(handle: &str, name: &str) -> Result<String> {
    let body = serde_json::to_vec(&json!({ "handle": handle }))
        .map_err(|e| Error::internal(e.to_string()))?;
    let answer = podhost_sdk::objects::get("inbox", name)
        .call(Method::POST, "/setup", body)
        .map_err(|error| error.into_error())?;
    if !answer.status().is_success() {
        return Err(Error::internal(format!(
            "the new inbox answered {} to its setup",
            answer.status()
        )));
    }
    report("/signup", json!({}))?;
    let key = routing::create_key("inbox", name, "owner").map_err(|error| error.into_error())?;
    Ok(key.key)
}

/// The `handle` field: 1 to 64 bytes of letters, digits, `.`, `_`, `-`,
/// as the local part of an address (stored lowercase).
fn handle(req: &Request) -> Result<String> {
    let body: Map<String, Value> = req.json()?;
    let handle = body
        .get("handle")
        .and_then(Value::as_str)
        .ok_or_else(|| Error::bad_request("`handle` is required and must be a string"))?;
    let valid = !handle.is_empty()
        && handle.len() <= MAX_HANDLE_BYTES
        && handle
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'));
    if !valid {
        return Err(Error::bad_request(format!(
            "`handle` must be 1 to {MAX_HANDLE_BYTES} letters, digits, '.', '_' or '-'"
        )));
    }
    Ok(handle.to_ascii_lowercase())
}
