//! A WebSocket upgrade on an object's route: the socket is registered,
//! the object's `socket-open` decides, and an accepted socket is upgraded
//! and handed to its connection tasks (`sockets::connection`).

use std::sync::Arc;

use axum::extract::FromRequestParts;
use axum::extract::ws::WebSocketUpgrade;
use axum::http::request::Parts;
use axum::response::{IntoResponse, Response};

use super::ApiError;
use super::objects::from_object_response;
use crate::accounts::Revocation;
use crate::bindings;
use crate::metrics::OpenSocket;
use crate::object::{ObjectAddr, SocketEvent, SocketOutcome};
use crate::runtime::Runtime;
use crate::sockets::connection::{self, Accepted, Registered};

/// The read buffer of an idle socket: small, so that idle sockets cost a
/// few KB; a larger message grows it while it arrives.
const READ_BUFFER_BYTES: usize = 2048;

pub async fn open(
    runtime: Arc<Runtime>,
    class: String,
    name: String,
    request: bindings::Request,
    mut parts: Parts,
    revocation: Revocation,
) -> Result<Response, ApiError> {
    let upgrade = match WebSocketUpgrade::from_request_parts(&mut parts, &()).await {
        Ok(upgrade) => upgrade,
        Err(rejection) => return Ok(rejection.into_response()),
    };
    let settings = runtime.config().sockets.clone();
    let hub = Arc::clone(runtime.sockets());
    let object_id = ObjectAddr::new(&class, &name).id().to_string();
    let socket = hub.next_socket();
    let (queue_in, queue) = crate::sockets::queue(settings.max_queued_messages);
    let control = hub.register(&object_id, socket, queue_in, settings.max_per_object)?;
    let registered = Registered::new(
        Arc::clone(&runtime),
        class.clone(),
        name.clone(),
        object_id.clone(),
        socket,
    );
    let opened = runtime
        .socket_event(&class, &name, socket, SocketEvent::Open(request))
        .await;
    let refused = match opened {
        Ok(SocketOutcome::Accepted) => None,
        Ok(SocketOutcome::Refused(response)) => {
            let limit = runtime.class(&class)?.settings().limits.max_response_bytes;
            Some(from_object_response(response, limit))
        }
        Ok(SocketOutcome::Handled) => Some(Err(ApiError::Internal(
            "the socket was neither accepted nor refused".into(),
        ))),
        Err(error) => Some(Err(error.into())),
    };
    if let Some(response) = refused {
        registered.withdraw();
        return response;
    }
    runtime.metrics().sockets_opened.inc();
    let gauge = runtime.metrics().class(&class).sockets_open.clone();
    hub.count_open(&object_id, socket, OpenSocket::new(gauge));
    let accepted = Accepted {
        registered,
        queue,
        control,
        revoked: Box::pin(revocation.ended()),
    };
    // If the upgrade fails, the callback below is never given `accepted`:
    // dropping it unregisters the socket and tells the object.
    Ok(upgrade
        .read_buffer_size(READ_BUFFER_BYTES)
        .write_buffer_size(0)
        .max_message_size(settings.max_message_bytes)
        .max_frame_size(settings.max_message_bytes)
        .on_failed_upgrade(move |error| {
            tracing::debug!(socket, %error, "the WebSocket upgrade failed");
        })
        .on_upgrade(move |ws| connection::run(ws, accepted)))
}
