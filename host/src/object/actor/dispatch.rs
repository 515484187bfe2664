//! The handler exports an event can call, each typed end to end: what it
//! passes the guest, what the guest returns, and which returns keep the
//! event's writes (an `Err` from the guest is its own failure: the writes
//! are undone and the answer still goes out).

use wasmtime::Store;

use crate::bindings::exports::podhost::object::handler::Guest;
use crate::bindings::podhost::object::types::{Message as SocketMessage, SocketAccept};
use crate::bindings::{Request, Response};
use crate::capabilities::ObjectState;
use crate::sockets::{MAX_TAG_BYTES, MAX_TAGS};

/// What a handler export returns: `Ok` keeps the event's writes, `Err` is
/// the guest's own failure.
pub(super) trait Outcome {
    fn kept(&self) -> bool;
}

impl<T, E> Outcome for Result<T, E> {
    fn kept(&self) -> bool {
        self.is_ok()
    }
}

/// One call of a handler export.
pub(super) trait Handler {
    /// What the guest returned.
    type Returned: Outcome;
    /// For the event's span.
    const KIND: &'static str;
    /// Whether the object's alarm is cleared as the handler starts, in its
    /// transaction (so the handler may set the next one).
    const CLEARS_ALARM: bool = false;

    async fn invoke(
        &self,
        guest: &Guest,
        store: &mut Store<ObjectState>,
    ) -> wasmtime::Result<Self::Returned>;
}

pub(super) struct Fetch<'a>(pub &'a Request);

impl Handler for Fetch<'_> {
    type Returned = Result<Response, Response>;
    const KIND: &'static str = "fetch";

    async fn invoke(
        &self,
        guest: &Guest,
        store: &mut Store<ObjectState>,
    ) -> wasmtime::Result<Self::Returned> {
        guest.call_fetch(store, self.0).await
    }
}

/// The alarm, on attempt `retry_count + 1`.
pub(super) struct Alarm(pub u32);

impl Handler for Alarm {
    type Returned = Result<(), String>;
    const KIND: &'static str = "alarm";
    const CLEARS_ALARM: bool = true;

    async fn invoke(
        &self,
        guest: &Guest,
        store: &mut Store<ObjectState>,
    ) -> wasmtime::Result<Self::Returned> {
        guest.call_alarm(store, self.0).await
    }
}

pub(super) struct SocketOpen<'a> {
    pub socket: u64,
    pub request: &'a Request,
}

impl Handler for SocketOpen<'_> {
    type Returned = Result<SocketAccept, Response>;
    const KIND: &'static str = "socket_open";

    async fn invoke(
        &self,
        guest: &Guest,
        store: &mut Store<ObjectState>,
    ) -> wasmtime::Result<Self::Returned> {
        let accept = guest
            .call_socket_open(store, self.socket, self.request)
            .await?;
        Ok(accept.and_then(checked_accept))
    }
}

pub(super) struct SocketMessageEvent<'a> {
    pub socket: u64,
    pub message: &'a SocketMessage,
}

impl Handler for SocketMessageEvent<'_> {
    type Returned = Result<(), String>;
    const KIND: &'static str = "socket_message";

    async fn invoke(
        &self,
        guest: &Guest,
        store: &mut Store<ObjectState>,
    ) -> wasmtime::Result<Self::Returned> {
        guest
            .call_socket_message(store, self.socket, self.message)
            .await
    }
}

pub(super) struct SocketClose<'a> {
    pub socket: u64,
    pub code: u16,
    pub reason: &'a str,
    pub attachment: &'a [u8],
}

impl Handler for SocketClose<'_> {
    type Returned = Result<(), String>;
    const KIND: &'static str = "socket_close";

    async fn invoke(
        &self,
        guest: &Guest,
        store: &mut Store<ObjectState>,
    ) -> wasmtime::Result<Self::Returned> {
        guest
            .call_socket_close(store, self.socket, self.code, self.reason, self.attachment)
            .await
    }
}

/// The accept a guest returned, if its tags are within the limits; a 500
/// refusal naming the problem otherwise.
fn checked_accept(accept: SocketAccept) -> Result<SocketAccept, Response> {
    let problem = if accept.tags.len() > MAX_TAGS {
        Some(format!("a socket has at most {MAX_TAGS} tags"))
    } else if accept
        .tags
        .iter()
        .any(|tag| tag.is_empty() || tag.len() > MAX_TAG_BYTES)
    {
        Some(format!("a socket tag has 1 to {MAX_TAG_BYTES} bytes"))
    } else {
        None
    };
    match problem {
        None => Ok(accept),
        Some(problem) => Err(Response {
            status: 500,
            headers: vec![("content-type".into(), b"application/json".to_vec())],
            body: serde_json::json!({ "error": { "code": "invalid_socket_accept", "message": problem } })
                .to_string()
                .into_bytes(),
        }),
    }
}
