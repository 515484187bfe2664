//! Who made a write: the client id of the tab and its request id, both
//! optional on REST, checked the same way wherever they come from.

use podhost_sdk::{Error, Request, Result};

/// Longest client id, in bytes.
pub const MAX_CLIENT_ID_BYTES: usize = 64;
/// Longest request id, in bytes.
pub const MAX_REQUEST_ID_BYTES: usize = 128;

pub const CLIENT_ID_HEADER: &str = "podhost-client-id";
pub const REQUEST_ID_HEADER: &str = "podhost-request-id";

/// The client and request a write came from, carried back in its change.
#[derive(Debug, Clone, Default)]
pub struct Origin {
    pub client_id: Option<String>,
    pub request_id: Option<String>,
}

impl Origin {
    /// From a REST request: headers first, then `?client_id=` and the
    /// request id of the body (or `?request_id=`).
    pub fn of_request(req: &Request, body_request_id: Option<String>) -> Result<Self> {
        let client_id = req
            .header(CLIENT_ID_HEADER)
            .map(str::to_string)
            .or_else(|| req.query_param("client_id"))
            .map(check_client_id)
            .transpose()?;
        let request_id = req
            .header(REQUEST_ID_HEADER)
            .map(str::to_string)
            .or(body_request_id)
            .or_else(|| req.query_param("request_id"))
            .map(check_request_id)
            .transpose()?;
        Ok(Origin {
            client_id,
            request_id,
        })
    }
}

/// A client id: 1 to 64 of `A-Z a-z 0-9 _ -` (it becomes a socket tag).
pub fn check_client_id(id: String) -> Result<String> {
    let fine = !id.is_empty()
        && id.len() <= MAX_CLIENT_ID_BYTES
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
    if fine {
        Ok(id)
    } else {
        Err(Error::bad_request(format!(
            "a client id has 1 to {MAX_CLIENT_ID_BYTES} characters of A-Z, a-z, 0-9, `_` and `-`"
        )))
    }
}

/// A request id: 1 to 128 visible ASCII characters.
pub fn check_request_id(id: String) -> Result<String> {
    let fine = !id.is_empty()
        && id.len() <= MAX_REQUEST_ID_BYTES
        && id.bytes().all(|b| b.is_ascii_graphic());
    if fine {
        Ok(id)
    } else {
        Err(Error::bad_request(format!(
            "a request id has 1 to {MAX_REQUEST_ID_BYTES} visible ASCII characters"
        )))
    }
}
