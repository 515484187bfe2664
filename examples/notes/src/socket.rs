//! What a client sends on its socket: acknowledgements, and writes that
//! are answered with a `reply` (their changes come in batches as well).

use podhost_sdk::sockets::{Message, Socket};
use podhost_sdk::{Error, Result};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::delivery;
use crate::origin::{self, Origin};
use crate::writes::{self, NoteBody, Outcome, Refused, Write};

#[derive(Deserialize)]
#[serde(tag = "type", rename_all = "lowercase")]
enum Incoming {
    Ack {
        seq: i64,
    },
    Put {
        #[serde(default)]
        id: Option<i64>,
        #[serde(flatten)]
        note: NoteBody,
    },
    Delete {
        id: i64,
        #[serde(default)]
        request_id: Option<String>,
    },
}

/// Handles one message of client `client_id`. A message the server cannot
/// read gets an `error` back; a write gets a `reply` with the status and
/// body REST would answer, unless it fails for the server's sake: then
/// it rolls back (`Err`) and sends nothing.
pub fn handle(socket: Socket, client_id: &str, message: &Message) -> Result<()> {
    let incoming = match message.parse_json::<Incoming>() {
        Ok(incoming) => incoming,
        Err(error) => return send_error(socket, &error),
    };
    let (write, request_id) = match &incoming {
        Incoming::Ack { seq } => return delivery::ack(client_id, *seq),
        Incoming::Put { id, note } => (note.write(*id), note.request_id.clone()),
        Incoming::Delete { id, request_id } => (Ok(Write::Delete { id: *id }), request_id.clone()),
    };
    let request_id = match request_id.map(origin::check_request_id).transpose() {
        Ok(request_id) => request_id,
        Err(error) => return reply(socket, None, Refused::Error(error).outcome()),
    };
    let write = match write {
        Ok(write) => write,
        Err(error) => return reply(socket, request_id, Refused::Error(error).outcome()),
    };
    let origin = Origin {
        client_id: Some(client_id.to_string()),
        request_id: request_id.clone(),
    };
    let outcome = match writes::apply(write, &origin) {
        Ok(outcome) => outcome,
        Err(Refused::Error(error)) if error.status().is_server_error() => {
            return Err(error);
        }
        Err(refused) => refused.outcome(),
    };
    reply(socket, request_id, outcome)
}

/// Answers a write with its REST status and body's fields.
fn reply(socket: Socket, request_id: Option<String>, outcome: Outcome) -> Result<()> {
    let mut reply = json!({
        "type": "reply",
        "request_id": request_id,
        "status": outcome.status.as_u16(),
    });
    if let (Value::Object(reply), Value::Object(body)) = (&mut reply, outcome.body) {
        reply.extend(body);
    }
    socket.send_json(&reply)
}

/// Answers a message that is not one the server reads.
fn send_error(socket: Socket, error: &Error) -> Result<()> {
    socket.send_json(&json!({
        "type": "error",
        "error": { "code": error.code(), "message": error.message() },
    }))
}
