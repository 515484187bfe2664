//! A WebSocket upgrade on an object's route: the socket is registered,
//! the object's `socket-open` decides, and an accepted socket is upgraded
//! and handed to its connection tasks (`sockets::connection`).

use std::sync::Arc;

use axum::http::request::Parts;
use axum::response::{IntoResponse, Response};

use super::ApiError;
use super::handshake::Handshake;
use super::objects::from_object_response;
use crate::accounts::Revocation;
use crate::bindings;
use crate::metrics::OpenSocket;
use crate::object::{ObjectAddr, SocketEvent, SocketOutcome};
use crate::runtime::Runtime;
use crate::sockets;
use crate::sockets::connection::{self, Accepted, Registered};

pub async fn open(
    runtime: Arc<Runtime>,
    class: String,
    name: String,
    request: bindings::Request,
    mut parts: Parts,
    revocation: Revocation,
) -> Result<Response, ApiError> {
    let handshake = match Handshake::from_parts(&mut parts) {
        Ok(handshake) => handshake,
        Err(refused) => return Ok(refused.into_response()),
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
    let config = sockets::codec_config(settings.max_message_bytes);
    // If the upgrade fails, the callback below is never given `accepted`:
    // dropping it unregisters the socket and tells the object.
    Ok(handshake.accept(socket, config, move |ws| connection::run(ws, accepted)))
}
