//! What an event asks its sockets to do; held until the event's batch
//! commits (the output gate), then handed to the [`Hub`](super::Hub).

use std::sync::Arc;

use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;

use crate::bindings::podhost::object::types::Message as SocketMessage;

/// An event of an object's log, as SSE subscribers get it.
#[derive(Debug, Clone)]
pub struct LoggedEvent {
    pub id: u64,
    pub name: Arc<str>,
    pub data: Arc<str>,
}

pub enum Outgoing {
    Send {
        socket: u64,
        message: Message,
    },
    /// To every socket tagged `tag` when the batch commits.
    Publish {
        tag: String,
        message: Message,
    },
    Close {
        socket: u64,
        code: u16,
        reason: String,
    },
    /// To the object's SSE subscribers.
    Event(LoggedEvent),
}

/// The frame to send for a guest's message; text and binary payloads are
/// reference-counted, so a publish to many sockets shares one copy.
pub fn frame(message: SocketMessage) -> Message {
    match message {
        SocketMessage::Text(text) => Message::Text(text.into()),
        SocketMessage::Binary(bytes) => Message::Binary(bytes.into()),
    }
}

pub fn close_frame(code: u16, reason: &str) -> Message {
    Message::Close(Some(CloseFrame {
        code: code.into(),
        reason: reason.into(),
    }))
}
