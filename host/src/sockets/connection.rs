//! One accepted WebSocket: a reader that turns the client's messages into
//! the object's events (in order, one at a time), and a writer that sends
//! what the hub queues, pings the client and closes the socket when told.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use axum::extract::ws::{Message, WebSocket};
use futures_util::stream::{SplitSink, SplitStream};
use futures_util::{SinkExt, StreamExt};
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite;

use super::hub::Control;
use super::outbox::close_frame;
use super::{Hub, Outgoing};
use crate::bindings::podhost::object::types::Message as SocketMessage;
use crate::object::EventError;
use crate::runtime::Runtime;

/// 1006: the connection ended without a close frame.
const ABNORMAL: u16 = 1006;
/// 1009: a message over the size limit.
const TOO_BIG: u16 = 1009;
/// How often a message is offered again to an object whose mailbox is
/// full, before the socket gives up (1013).
const OVERLOADED_RETRIES: u32 = 20;

/// An accepted socket of an object, before its connection starts.
pub struct Accepted {
    pub runtime: Arc<Runtime>,
    pub class: String,
    pub name: String,
    pub object_id: String,
    pub socket: u64,
    pub queue: mpsc::Receiver<Message>,
    pub control: Arc<Control>,
}

/// Runs the connection until either side closes it, then tells the object
/// unless the object closed it itself.
pub async fn run(ws: WebSocket, accepted: Accepted) {
    let Accepted {
        runtime,
        class,
        name,
        object_id,
        socket,
        queue,
        control,
    } = accepted;
    let hub = Arc::clone(runtime.sockets());
    let _running = hub.connection();
    let ping_every = runtime.config().sockets.ping_interval;
    let (sink, stream) = ws.split();
    let heard = Arc::new(AtomicBool::new(true));
    let mut writer = tokio::spawn(write(
        sink,
        queue,
        Arc::clone(&control),
        ping_every,
        Arc::clone(&heard),
    ));
    let reader = Reader {
        runtime: &runtime,
        hub: &hub,
        class: &class,
        name: &name,
        object_id: &object_id,
        socket,
        heard: &heard,
    };
    let (code, reason) = tokio::select! {
        closed = reader.read(stream, &control) => closed,
        ended = &mut writer => ended.ok().flatten().unwrap_or((ABNORMAL, String::new())),
    };
    let told = hub.remove(&object_id, socket);
    // Removing the socket dropped its queue: the writer sends what is left
    // and stops. A client that does not read is not waited for long.
    if !writer.is_finished() && tokio::time::timeout(ping_every, &mut writer).await.is_err() {
        writer.abort();
    }
    if let Some(attachment) = told
        && let Err(error) = runtime
            .socket_close(&class, &name, socket, code, reason, attachment)
            .await
    {
        tracing::debug!(object = name, class, socket, %error, "socket-close not delivered");
    }
}

struct Reader<'a> {
    runtime: &'a Arc<Runtime>,
    hub: &'a Hub,
    class: &'a str,
    name: &'a str,
    object_id: &'a str,
    socket: u64,
    heard: &'a AtomicBool,
}

impl Reader<'_> {
    /// Reads until the client closes; returns its close code and reason.
    async fn read(&self, mut stream: SplitStream<WebSocket>, control: &Control) -> (u16, String) {
        while let Some(frame) = stream.next().await {
            self.heard.store(true, Ordering::Relaxed);
            let message = match frame {
                Ok(Message::Text(text)) => {
                    if let Some(reply) = self.hub.auto_reply(self.object_id, text.as_str()) {
                        self.runtime.metrics().socket_auto_responses.inc();
                        self.hub.deliver(
                            self.object_id,
                            vec![Outgoing::Send {
                                socket: self.socket,
                                message: Message::Text(reply.into()),
                            }],
                        );
                        continue;
                    }
                    SocketMessage::Text(text.as_str().to_string())
                }
                Ok(Message::Binary(bytes)) => SocketMessage::Binary(bytes.to_vec()),
                Ok(Message::Ping(_) | Message::Pong(_)) => continue,
                Ok(Message::Close(frame)) => {
                    return frame.map_or((1005, String::new()), |frame| {
                        (frame.code, frame.reason.as_str().to_string())
                    });
                }
                Err(error) => {
                    let too_big = error
                        .into_inner()
                        .downcast_ref::<tungstenite::Error>()
                        .is_some_and(|error| matches!(error, tungstenite::Error::Capacity(_)));
                    if too_big {
                        let reason = "the message is over the size limit";
                        control.force(TOO_BIG, reason);
                        return (TOO_BIG, reason.to_string());
                    }
                    return (ABNORMAL, String::new());
                }
            };
            if let Some(closed) = self.deliver(message, control).await {
                return closed;
            }
        }
        (ABNORMAL, String::new())
    }

    /// Hands one message to the object and waits until it is handled, so
    /// a socket's messages run in order and a fast sender slows down
    /// rather than pile up. Returns a close if the socket must go.
    async fn deliver(&self, message: SocketMessage, control: &Control) -> Option<(u16, String)> {
        self.runtime.metrics().socket_messages.inc();
        let mut delay = Duration::from_millis(5);
        for _ in 0..OVERLOADED_RETRIES {
            match self
                .runtime
                .socket_message(self.class, self.name, self.socket, message.clone())
                .await
            {
                Ok(()) => return None,
                Err(EventError::Overloaded) => {
                    tokio::time::sleep(delay).await;
                    delay = (delay * 2).min(Duration::from_millis(500));
                }
                Err(EventError::ShuttingDown) => return Some((1001, String::new())),
                Err(error) => {
                    // The object failed on this message; the socket stays.
                    tracing::debug!(object = self.name, class = self.class, socket = self.socket, %error, "socket-message failed");
                    return None;
                }
            }
        }
        let reason = "the object is overloaded";
        control.force(1013, reason);
        Some((1013, reason.to_string()))
    }
}

/// Sends the queue's messages and a ping every `ping_every`; stops after a
/// close, when the queue is dropped, when the hub forces a close, or when
/// the client neither answered the last ping nor sent anything. Returns
/// the close it sent, if the hub forced one.
async fn write(
    mut sink: SplitSink<WebSocket, Message>,
    mut queue: mpsc::Receiver<Message>,
    control: Arc<Control>,
    ping_every: Duration,
    heard: Arc<AtomicBool>,
) -> Option<(u16, String)> {
    let mut ping = tokio::time::interval_at(tokio::time::Instant::now() + ping_every, ping_every);
    loop {
        let message = tokio::select! {
            biased;
            () = control.wake.notified() => {
                let forced = control.forced();
                if let Some((code, reason)) = &forced {
                    let _ = tokio::time::timeout(ping_every, sink.send(close_frame(*code, reason))).await;
                }
                return forced;
            }
            next = queue.recv() => match next {
                Some(message) => message,
                None => break,
            },
            _ = ping.tick() => {
                if !heard.swap(false, Ordering::Relaxed) {
                    tracing::debug!("closing a socket whose client stopped answering pings");
                    break;
                }
                Message::Ping(Default::default())
            }
        };
        let closing = matches!(message, Message::Close(_));
        // A client that stopped reading must not keep a forced close (or
        // shutdown) waiting: the connection is dropped instead.
        tokio::select! {
            sent = tokio::time::timeout(ping_every, sink.send(message)) => {
                if closing || !matches!(sent, Ok(Ok(()))) {
                    break;
                }
            }
            () = control.wake.notified() => return control.forced(),
        }
    }
    None
}
