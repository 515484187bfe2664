//! `podhost:object/broadcast`: the object's WebSockets. Messages and closes
//! go to the event's outbox and leave only when its batch commits; reads
//! and attachments go straight to the [`Hub`](crate::sockets::Hub).

use crate::bindings::podhost::object::broadcast::{Host, SocketError, SocketInfo};
use crate::bindings::podhost::object::types::Message as SocketMessage;
use crate::capabilities::ObjectState;
use crate::sockets::{MAX_ATTACHMENT_BYTES, MAX_CLOSE_REASON_BYTES, Outgoing, frame};

/// What an entry of the outbox costs beyond its payload, so that a flood
/// of empty messages is bounded too.
const OUTGOING_OVERHEAD_BYTES: usize = 64;

impl Host for ObjectState {
    fn send(&mut self, socket: u64, message: SocketMessage) -> Result<(), SocketError> {
        self.own_socket(socket)?;
        self.weigh_output(&message).map_err(SocketError::TooBig)?;
        self.outbox.push(Outgoing::Send {
            socket,
            message: frame(message),
        });
        Ok(())
    }

    /// An oversized publish cannot be refused through this interface: it
    /// is dropped with a warning and reaches no socket (0).
    fn publish(&mut self, tag: String, message: SocketMessage) -> u32 {
        if let Err(why) = self.weigh_output(&message) {
            tracing::warn!(
                class = self.object.class(),
                object = self.object.name(),
                "a publish was dropped: {why}"
            );
            return 0;
        }
        let tagged = self.sockets.count(self.object.id(), Some(&tag));
        self.outbox.push(Outgoing::Publish {
            tag,
            message: frame(message),
        });
        u32::try_from(tagged).unwrap_or(u32::MAX)
    }

    fn sockets(&mut self, tag: Option<String>) -> Vec<SocketInfo> {
        self.sockets
            .list(self.object.id(), tag.as_deref())
            .into_iter()
            .map(|info| SocketInfo {
                socket: info.socket,
                tags: info.tags,
                attachment: info.attachment,
            })
            .collect()
    }

    fn count(&mut self, tag: Option<String>) -> u32 {
        let count = self.sockets.count(self.object.id(), tag.as_deref());
        u32::try_from(count).unwrap_or(u32::MAX)
    }

    fn close(&mut self, socket: u64, code: u16, reason: String) -> Result<(), SocketError> {
        if !(code == 1000 || (3000..=4999).contains(&code)) {
            return Err(SocketError::InvalidCode(code));
        }
        if reason.len() > MAX_CLOSE_REASON_BYTES {
            return Err(SocketError::TooBig(format!(
                "a close reason has at most {MAX_CLOSE_REASON_BYTES} bytes"
            )));
        }
        self.own_socket(socket)?;
        self.outbox.push(Outgoing::Close {
            socket,
            code,
            reason,
        });
        Ok(())
    }

    fn set_attachment(&mut self, socket: u64, attachment: Vec<u8>) -> Result<(), SocketError> {
        if attachment.len() > MAX_ATTACHMENT_BYTES {
            return Err(SocketError::TooBig(format!(
                "an attachment has at most {MAX_ATTACHMENT_BYTES} bytes"
            )));
        }
        if self
            .sockets
            .set_attachment(self.object.id(), socket, attachment)
        {
            Ok(())
        } else {
            Err(SocketError::NoSuchSocket)
        }
    }

    fn attachment(&mut self, socket: u64) -> Result<Vec<u8>, SocketError> {
        self.sockets
            .attachment(self.object.id(), socket)
            .ok_or(SocketError::NoSuchSocket)
    }

    fn set_auto_response(&mut self, pair: Option<(String, String)>) {
        let max = self.sockets.socket_settings().max_message_bytes;
        if let Some((request, response)) = &pair
            && (request.len() > max || response.len() > max)
        {
            tracing::warn!(
                class = self.object.class(),
                object = self.object.name(),
                "an auto-response over max_message_bytes was ignored"
            );
            return;
        }
        self.sockets.set_auto_response(self.object.id(), pair);
    }
}

impl ObjectState {
    fn own_socket(&self, socket: u64) -> Result<(), SocketError> {
        if self.sockets.contains(self.object.id(), socket) {
            Ok(())
        } else {
            Err(SocketError::NoSuchSocket)
        }
    }

    /// Counts a message into the event's output, unless it is over
    /// `[sockets] max_message_bytes` or the event's messages would weigh
    /// more than `max_queued_bytes` (no client could take them anyway).
    fn weigh_output(&mut self, message: &SocketMessage) -> Result<(), String> {
        let settings = self.sockets.socket_settings();
        let bytes = match message {
            SocketMessage::Text(text) => text.len(),
            SocketMessage::Binary(bytes) => bytes.len(),
        };
        if bytes > settings.max_message_bytes {
            return Err(format!(
                "a message has at most {} bytes (max_message_bytes)",
                settings.max_message_bytes
            ));
        }
        let total = self.outbox_bytes + bytes + OUTGOING_OVERHEAD_BYTES;
        if total > settings.max_queued_bytes {
            return Err(format!(
                "one event sends at most {} bytes of messages (max_queued_bytes)",
                settings.max_queued_bytes
            ));
        }
        self.outbox_bytes = total;
        Ok(())
    }

    /// The messages and closes of the event so far, to keep if it
    /// succeeds (or drop if it does not).
    pub fn take_outbox(&mut self) -> Vec<Outgoing> {
        self.outbox_bytes = 0;
        std::mem::take(&mut self.outbox)
    }
}
