//! WebSockets the host holds for the object.
//!
//! A client opens one with an HTTP upgrade on the object's route; the
//! object accepts it in [`Object::socket_open`](crate::Object::socket_open)
//! with tags to [`publish`] to. The socket stays open while the object
//! hibernates: its next message wakes the object, which finds its sockets
//! and their attachments with [`sockets`].
//!
//! ```ignore
//! fn socket_open(&mut self, socket: Socket, req: Request) -> Result<Accept> {
//!     socket.set_attachment(&Member { name: "ada".into() })?;
//!     Ok(Accept::new().tag("room"))
//! }
//!
//! fn socket_message(&mut self, socket: Socket, message: Message) -> Result<()> {
//!     sockets::publish("room", &message);
//!     Ok(())
//! }
//! ```
//!
//! What an event sends leaves when it commits: a failed event sends
//! nothing. Attachments and the auto-response change at once.

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::Error;
use crate::bindings::podhost::object::broadcast as wit;
use crate::bindings::podhost::object::types;

pub use crate::bindings::podhost::object::broadcast::SocketError;

/// A WebSocket message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Message {
    Text(String),
    Binary(Vec<u8>),
}

impl Message {
    /// A text message holding `value` as JSON.
    pub fn json<T: Serialize + ?Sized>(value: &T) -> Result<Self, Error> {
        Ok(Message::Text(serde_json::to_string(value)?))
    }

    /// The text, if it is a text message.
    pub fn as_text(&self) -> Option<&str> {
        match self {
            Message::Text(text) => Some(text),
            Message::Binary(_) => None,
        }
    }

    /// The message parsed as JSON (text or binary); a 400 error otherwise.
    pub fn parse_json<T: DeserializeOwned>(&self) -> Result<T, Error> {
        let bytes = match self {
            Message::Text(text) => text.as_bytes(),
            Message::Binary(bytes) => bytes,
        };
        serde_json::from_slice(bytes)
            .map_err(|error| Error::bad_request(format!("invalid JSON message: {error}")))
    }

    pub(crate) fn from_wit(message: types::Message) -> Self {
        match message {
            types::Message::Text(text) => Message::Text(text),
            types::Message::Binary(bytes) => Message::Binary(bytes),
        }
    }

    fn to_wit(&self) -> types::Message {
        match self {
            Message::Text(text) => types::Message::Text(text.clone()),
            Message::Binary(bytes) => types::Message::Binary(bytes.clone()),
        }
    }
}

impl From<&str> for Message {
    fn from(text: &str) -> Self {
        Message::Text(text.to_string())
    }
}

impl From<String> for Message {
    fn from(text: String) -> Self {
        Message::Text(text)
    }
}

/// How [`Object::socket_open`](crate::Object::socket_open) accepts a socket.
#[derive(Debug, Clone, Default)]
pub struct Accept {
    tags: Vec<String>,
}

impl Accept {
    pub fn new() -> Self {
        Accept::default()
    }

    /// Adds a tag to [`publish`] to (at most 10, each up to 256 bytes).
    pub fn tag(mut self, tag: impl Into<String>) -> Self {
        self.tags.push(tag.into());
        self
    }

    pub(crate) fn into_wit(self) -> types::SocketAccept {
        types::SocketAccept { tags: self.tags }
    }
}

/// One of the object's sockets.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Socket(pub u64);

impl Socket {
    /// Sends `message` when the event commits.
    pub fn send(&self, message: impl Into<Message>) -> Result<(), SocketError> {
        crate::only_in_podhost();
        wit::send(self.0, &message.into().to_wit())
    }

    /// Sends `value` as a JSON text message when the event commits.
    pub fn send_json<T: Serialize + ?Sized>(&self, value: &T) -> Result<(), Error> {
        Ok(self.send(Message::json(value)?)?)
    }

    /// Closes the socket with `code` (1000, or 3000 to 4999) when the
    /// event commits. The object gets no `socket_close` for it.
    pub fn close(&self, code: u16, reason: &str) -> Result<(), SocketError> {
        crate::only_in_podhost();
        wit::close(self.0, code, reason)
    }

    /// Stores `value` (as JSON, up to 4 KiB) with the socket; it stays
    /// through hibernation.
    pub fn set_attachment<T: Serialize + ?Sized>(&self, value: &T) -> Result<(), Error> {
        crate::only_in_podhost();
        Ok(wit::set_attachment(self.0, &serde_json::to_vec(value)?)?)
    }

    /// The socket's attachment, if one was set.
    pub fn attachment<T: DeserializeOwned>(&self) -> Result<Option<T>, Error> {
        crate::only_in_podhost();
        decode_attachment(&wit::attachment(self.0)?)
    }
}

/// A socket the client closed, as [`Object::socket_close`](crate::Object::socket_close) gets it.
#[derive(Debug, Clone)]
pub struct Closed {
    pub socket: Socket,
    /// 1006 if the connection was lost without a close.
    pub code: u16,
    pub reason: String,
    pub(crate) attachment: Vec<u8>,
}

impl Closed {
    /// The socket's last attachment, if one was set.
    pub fn attachment<T: DeserializeOwned>(&self) -> Result<Option<T>, Error> {
        decode_attachment(&self.attachment)
    }
}

/// A socket with its tags and attachment, as [`sockets`] lists them.
#[derive(Debug, Clone)]
pub struct SocketInfo {
    pub socket: Socket,
    pub tags: Vec<String>,
    attachment: Vec<u8>,
}

impl SocketInfo {
    /// The socket's attachment, if one was set.
    pub fn attachment<T: DeserializeOwned>(&self) -> Result<Option<T>, Error> {
        decode_attachment(&self.attachment)
    }
}

fn decode_attachment<T: DeserializeOwned>(bytes: &[u8]) -> Result<Option<T>, Error> {
    if bytes.is_empty() {
        return Ok(None);
    }
    serde_json::from_slice(bytes)
        .map(Some)
        .map_err(|error| Error::internal(format!("the attachment has another shape: {error}")))
}

/// Sends `message` to every socket tagged `tag` when the event commits;
/// returns how many sockets have the tag now.
pub fn publish(tag: &str, message: impl Into<Message>) -> u32 {
    crate::only_in_podhost();
    wit::publish(tag, &message.into().to_wit())
}

/// [`publish`]es `value` as a JSON text message.
pub fn publish_json<T: Serialize + ?Sized>(tag: &str, value: &T) -> Result<u32, Error> {
    Ok(publish(tag, Message::json(value)?))
}

/// The object's open sockets, all or those tagged `tag`, oldest first.
pub fn sockets(tag: Option<&str>) -> Vec<SocketInfo> {
    crate::only_in_podhost();
    wit::sockets(tag)
        .into_iter()
        .map(|info| SocketInfo {
            socket: Socket(info.socket),
            tags: info.tags,
            attachment: info.attachment,
        })
        .collect()
}

/// How many sockets are open, all or those tagged `tag`.
pub fn count(tag: Option<&str>) -> u32 {
    crate::only_in_podhost();
    wit::count(tag)
}

/// Lets the host answer a text message equal to `request` with `response`
/// without waking the object (a keepalive ping, say); `None` removes it.
pub fn set_auto_response(pair: Option<(&str, &str)>) {
    crate::only_in_podhost();
    wit::set_auto_response(pair);
}
