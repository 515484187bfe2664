//! `podhost:object/broadcast`: the object's WebSockets. Messages and closes
//! go to the event's outbox and leave only when its batch commits; reads
//! and attachments go straight to the [`Hub`](crate::sockets::Hub).

use crate::bindings::podhost::object::broadcast::{Host, SocketError, SocketInfo};
use crate::bindings::podhost::object::types::Message as SocketMessage;
use crate::capabilities::ObjectState;
use crate::sockets::{MAX_ATTACHMENT_BYTES, MAX_CLOSE_REASON_BYTES, Outgoing, frame};

impl Host for ObjectState {
    fn send(&mut self, socket: u64, message: SocketMessage) -> Result<(), SocketError> {
        self.own_socket(socket)?;
        self.outbox.push(Outgoing::Send {
            socket,
            message: frame(message),
        });
        Ok(())
    }

    fn publish(&mut self, tag: String, message: SocketMessage) -> u32 {
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

    /// The messages and closes of the event so far, to keep if it
    /// succeeds (or drop if it does not).
    pub fn take_outbox(&mut self) -> Vec<Outgoing> {
        std::mem::take(&mut self.outbox)
    }
}
