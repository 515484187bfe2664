//! WebSockets and event streams held by the host for objects.
//!
//! A socket belongs to the [`Hub`], not to the object's actor: it stays
//! open while the object hibernates, and a message on it wakes the object
//! as any event would. Each connection runs as two tasks
//! ([`connection`]): a reader that turns frames into events, and a writer
//! that drains the socket's queue ([`queue`]), which the hub fills after
//! each commit.
//! Server-Sent Events subscribers are held the same way and get the
//! object's logged events after each commit.

mod codec;
pub(crate) mod connection;
mod hub;
mod io;
mod outbox;
mod queue;

pub use codec::config as codec_config;
pub use hub::{Control, Hub, SocketInfo, SocketRefused};
pub use io::{CODEC_READ_BYTES, SharedReads};
pub use outbox::{LoggedEvent, Outgoing, frame};
pub use queue::{Interrupted, QueueReceiver, QueueSender, queue};

/// An accepted WebSocket, on the connection hyper handed over.
pub type WebSocket = tokio_tungstenite::WebSocketStream<
    SharedReads<hyper_util::rt::TokioIo<hyper::upgrade::Upgraded>>,
>;

/// Tags a socket may have, and how long each may be.
pub const MAX_TAGS: usize = 10;
pub const MAX_TAG_BYTES: usize = 256;
/// The largest attachment a socket may carry.
pub const MAX_ATTACHMENT_BYTES: usize = 4096;
/// The longest close reason the protocol allows (a control frame's 125
/// bytes, less the code).
pub const MAX_CLOSE_REASON_BYTES: usize = 123;
