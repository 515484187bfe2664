//! WebSocket-like sessions with an object, without a connection: the
//! socket is registered in the hub and its events are delivered the way
//! the gateway's connection tasks deliver them (`sockets::connection`).

use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context as _, bail};
use tokio_tungstenite::tungstenite::Message;

use super::{TestObject, TestResponse};
use crate::bindings;
use crate::bindings::podhost::object::types::Message as SocketMessage;
use crate::object::{ObjectAddr, SocketEvent, SocketOutcome};
use crate::runtime::Runtime;
use crate::sockets::Outgoing;
use crate::sockets::{Control, Interrupted, QueueReceiver};

/// How long [`TestSocket::recv`] waits for the object to send something.
const RECV_TIMEOUT: Duration = Duration::from_secs(10);

/// What the object sent on a socket.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SocketFrame {
    Text(String),
    Binary(Vec<u8>),
    /// The object (or the host) closed the socket.
    Close {
        code: u16,
        reason: String,
    },
}

/// A socket the object accepted. Dropping it without
/// [`close`](Self::close) unregisters it without telling the object.
pub struct TestSocket {
    runtime: Arc<Runtime>,
    class: String,
    name: String,
    object_id: String,
    socket: u64,
    queue: QueueReceiver<Message>,
    control: Arc<Control>,
    closed: bool,
}

impl TestObject<'_> {
    /// Opens a socket at `path`: the object's `socket-open` runs with a
    /// `GET` request to it. `Err` with the object's response if it refused.
    pub async fn socket(&self, path: &str) -> anyhow::Result<Result<TestSocket, TestResponse>> {
        let runtime = Arc::clone(self.harness.runtime());
        let settings = runtime.config().sockets.clone();
        let path_with_query = if path.starts_with('/') {
            path.to_string()
        } else {
            format!("/{path}")
        };
        let request = bindings::Request {
            method: "GET".into(),
            path_with_query,
            headers: Vec::new(),
            body: Vec::new(),
            caller: None,
            // As a client at 127.0.0.1, like the harness's requests.
            client_address: Some("127.0.0.1".into()),
        };
        let object_id = ObjectAddr::new(&self.class, &self.name).id().to_string();
        let hub = Arc::clone(runtime.sockets());
        let socket = hub.next_socket();
        let (queue_in, queue) = crate::sockets::queue(settings.max_queued_messages);
        let control = hub
            .register(&object_id, socket, queue_in, settings.max_per_object)
            .context("the object has too many sockets")?;
        let opened = runtime
            .socket_event(&self.class, &self.name, socket, SocketEvent::Open(request))
            .await;
        let refused = match opened {
            Ok(SocketOutcome::Accepted) => None,
            Ok(SocketOutcome::Refused(response)) => Some(TestResponse {
                status: http::StatusCode::from_u16(response.status)
                    .context("the object refused with an invalid status")?,
                headers: response
                    .headers
                    .into_iter()
                    .filter_map(|(name, value)| {
                        Some((
                            http::HeaderName::from_bytes(name.as_bytes()).ok()?,
                            http::HeaderValue::from_bytes(&value).ok()?,
                        ))
                    })
                    .collect(),
                body: response.body,
            }),
            Ok(SocketOutcome::Handled) => {
                hub.remove(&object_id, socket);
                bail!("the socket was neither accepted nor refused");
            }
            Err(error) => {
                hub.remove(&object_id, socket);
                return Err(error).context("socket-open failed");
            }
        };
        if let Some(response) = refused {
            hub.remove(&object_id, socket);
            return Ok(Err(response));
        }
        Ok(Ok(TestSocket {
            runtime,
            class: self.class.clone(),
            name: self.name.clone(),
            object_id,
            socket,
            queue,
            control,
            closed: false,
        }))
    }
}

impl TestSocket {
    /// The socket's number, as the object sees it.
    pub fn id(&self) -> u64 {
        self.socket
    }

    /// Sends a text message and waits until the object handled it (or its
    /// auto-response answered it). `Err` if the object failed on it.
    pub async fn send_text(&self, text: &str) -> anyhow::Result<()> {
        if let Some(reply) = self.runtime.sockets().auto_reply(&self.object_id, text) {
            self.runtime.sockets().deliver(
                &self.object_id,
                vec![Outgoing::Send {
                    socket: self.socket,
                    message: Message::Text(reply.into()),
                }],
            );
            return Ok(());
        }
        self.send(SocketMessage::Text(text.to_string())).await
    }

    /// Sends a binary message and waits until the object handled it.
    pub async fn send_binary(&self, bytes: &[u8]) -> anyhow::Result<()> {
        self.send(SocketMessage::Binary(bytes.to_vec())).await
    }

    async fn send(&self, message: SocketMessage) -> anyhow::Result<()> {
        if self.closed
            || !self
                .runtime
                .sockets()
                .contains(&self.object_id, self.socket)
        {
            bail!("the socket is closed");
        }
        self.runtime
            .socket_message(&self.class, &self.name, self.socket, message)
            .await
            .context("socket-message failed")
    }

    /// The next thing the object sent, waiting up to 10 s. `None` if it
    /// sent nothing in that time or the socket is gone.
    pub async fn recv(&mut self) -> Option<SocketFrame> {
        self.recv_within(RECV_TIMEOUT).await
    }

    /// The next thing the object sent within `limit`.
    pub async fn recv_within(&mut self, limit: Duration) -> Option<SocketFrame> {
        let next = match tokio::time::timeout(limit, self.queue.recv()).await.ok()? {
            Ok(next) => next?,
            Err(Interrupted) => {
                let (code, reason) = self.control.forced()?;
                return Some(SocketFrame::Close { code, reason });
            }
        };
        self.control.dequeued(&next);
        match next {
            Message::Text(text) => Some(SocketFrame::Text(text.as_str().to_string())),
            Message::Binary(bytes) => Some(SocketFrame::Binary(bytes.to_vec())),
            Message::Close(frame) => Some(frame.map_or(
                SocketFrame::Close {
                    code: 1005,
                    reason: String::new(),
                },
                |frame| SocketFrame::Close {
                    code: frame.code.into(),
                    reason: frame.reason.as_str().to_string(),
                },
            )),
            Message::Ping(_) | Message::Pong(_) | Message::Frame(_) => {
                Box::pin(self.recv_within(limit)).await
            }
        }
    }

    /// Closes the socket as a client would, and waits until the object's
    /// `socket-close` handled it. Does nothing more if the object closed
    /// it already.
    pub async fn close(mut self, code: u16, reason: &str) -> anyhow::Result<()> {
        self.closed = true;
        let Some(attachment) = self.runtime.sockets().remove(&self.object_id, self.socket) else {
            return Ok(());
        };
        self.runtime
            .socket_close(
                &self.class,
                &self.name,
                self.socket,
                code,
                reason.to_string(),
                attachment,
            )
            .await
            .context("socket-close failed")
    }
}

impl Drop for TestSocket {
    fn drop(&mut self) {
        if !self.closed {
            self.runtime.sockets().remove(&self.object_id, self.socket);
        }
    }
}
