//! Chat rooms: one object per room. Clients connect over WebSocket, get
//! the recent history, and every message is stored in SQL and broadcast to
//! the room. Who is present comes from the sockets' attachments, so it
//! survives the room's hibernation without a table.
//!
//! Routes below `/objects/chat/{room}`:
//!
//! - `GET /ws?name=ada` with `Upgrade: websocket`: joins the room. The
//!   client first gets `{"type": "history", "messages": [...]}`, then
//!   `{"type": "message", "id", "name", "text", "at_ms", "client_id"}` for
//!   every message (its own included: the echo is its acknowledgement),
//!   and `{"type": "join" | "leave", "name"}` while the room has fewer
//!   than 100 members.
//!   It sends `{"text": "...", "client_id": "..."}` (`client_id` optional,
//!   echoed back). A text `ping` is answered `pong` by the host.
//! - `GET /messages?after=ID&limit=N`: stored messages, oldest first.
//! - `GET /presence`: the names of the connected members.
//! - `GET /_events` (Server-Sent Events): every message as an event
//!   `message`; reconnecting with `Last-Event-ID` resumes without a gap.

use std::sync::LazyLock;

use podhost_sdk::sockets::{self, Accept, Closed, Message, Socket};
use podhost_sdk::{Error, Object, Request, Response, Result, Router, events, sql, time};
use serde::{Deserialize, Serialize};
use serde_json::json;

const ROOM: &str = "room";
const HISTORY: i64 = 50;
const MAX_NAME_BYTES: usize = 32;
const MAX_TEXT_BYTES: usize = 4096;
/// Rooms this big stop announcing joins and leaves to everyone (each would
/// cost a message per member); their clients read `/presence` instead.
const ANNOUNCED_UP_TO: u32 = 100;

struct Chat;

static ROUTES: LazyLock<Router<Chat>> = LazyLock::new(|| {
    Router::<Chat>::new()
        .get("/messages", |_, req, _| {
            let after = number(&req, "after")?.unwrap_or(0);
            let limit = number(&req, "limit")?.unwrap_or(HISTORY).clamp(1, 1000);
            Ok(Response::json(&messages_after(after, limit)?))
        })
        .get("/presence", |_, _, _| Ok(Response::json(&presence()?)))
});

/// Kept with each socket.
#[derive(Serialize, Deserialize)]
struct Member {
    name: String,
}

#[derive(Deserialize)]
struct Said {
    text: String,
    #[serde(default)]
    client_id: Option<String>,
}

#[derive(Serialize)]
struct Stored {
    id: i64,
    name: String,
    text: String,
    at_ms: i64,
}

impl Object for Chat {
    const MIGRATIONS: &'static [&'static str] = &["
        CREATE TABLE messages (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            name TEXT NOT NULL,
            text TEXT NOT NULL,
            at_ms INTEGER NOT NULL
        );"];

    fn activate() -> Result<Self> {
        Ok(Chat)
    }

    fn fetch(&mut self, req: Request) -> Result<Response> {
        ROUTES.handle(self, req)
    }

    fn socket_open(&mut self, socket: Socket, req: Request) -> Result<Accept> {
        if req.segments().as_slice() != ["ws"] {
            return Err(Error::not_found("WebSockets open on /ws"));
        }
        let name = req.query_param("name").unwrap_or_default();
        if name.is_empty() || name.len() > MAX_NAME_BYTES {
            return Err(Error::bad_request(format!(
                "?name= must be 1 to {MAX_NAME_BYTES} bytes"
            )));
        }
        sockets::set_auto_response(Some(("ping", "pong")));
        socket.set_attachment(&Member { name: name.clone() })?;
        socket.send_json(&json!({ "type": "history", "messages": recent()? }))?;
        if sockets::count(Some(ROOM)) < ANNOUNCED_UP_TO {
            sockets::publish_json(ROOM, &json!({ "type": "join", "name": name }))?;
        }
        Ok(Accept::new().tag(ROOM))
    }

    fn socket_message(&mut self, socket: Socket, message: Message) -> Result<()> {
        let said: Said = message.parse_json()?;
        if said.text.is_empty() || said.text.len() > MAX_TEXT_BYTES {
            socket.send_json(&json!({
                "type": "error",
                "error": format!("a message has 1 to {MAX_TEXT_BYTES} bytes"),
                "client_id": said.client_id,
            }))?;
            return Ok(());
        }
        let member: Member = socket
            .attachment()?
            .ok_or_else(|| Error::internal("a socket without a member"))?;
        let at_ms = time::now_ms();
        let id = sql::exec(
            "INSERT INTO messages (name, text, at_ms) VALUES (?, ?, ?)",
            (&member.name, &said.text, at_ms),
        )?
        .last_insert_rowid();
        let message = json!({
            "type": "message",
            "id": id,
            "name": member.name,
            "text": said.text,
            "at_ms": at_ms,
            "client_id": said.client_id,
        });
        sockets::publish_json(ROOM, &message)?;
        events::publish_json("message", &message)?;
        Ok(())
    }

    fn socket_close(&mut self, closed: Closed) -> Result<()> {
        if sockets::count(Some(ROOM)) < ANNOUNCED_UP_TO
            && let Some(member) = closed.attachment::<Member>()?
        {
            sockets::publish_json(ROOM, &json!({ "type": "leave", "name": member.name }))?;
        }
        Ok(())
    }
}

fn number(req: &Request, name: &str) -> Result<Option<i64>> {
    req.query_param(name)
        .map(|value| {
            value
                .parse()
                .map_err(|_| Error::bad_request(format!("?{name}= must be a number")))
        })
        .transpose()
}

fn presence() -> Result<Vec<String>> {
    sockets::sockets(Some(ROOM))
        .iter()
        .map(|info| Ok(info.attachment::<Member>()?.map(|m| m.name)))
        .filter_map(Result::transpose)
        .collect()
}

/// The last [`HISTORY`] messages, oldest first.
fn recent() -> Result<Vec<Stored>> {
    let mut messages = stored(
        "SELECT id, name, text, at_ms FROM messages ORDER BY id DESC LIMIT ?",
        (HISTORY,),
    )?;
    messages.reverse();
    Ok(messages)
}

fn messages_after(after: i64, limit: i64) -> Result<Vec<Stored>> {
    stored(
        "SELECT id, name, text, at_ms FROM messages WHERE id > ? ORDER BY id LIMIT ?",
        (after, limit),
    )
}

fn stored(query: &str, params: impl sql::Params) -> Result<Vec<Stored>> {
    let rows: Vec<(i64, String, String, i64)> = sql::query(query, params)?;
    Ok(rows
        .into_iter()
        .map(|(id, name, text, at_ms)| Stored {
            id,
            name,
            text,
            at_ms,
        })
        .collect())
}

podhost_sdk::export!(Chat);
