//! Realtime notes: one object per signed-in user at `/me/notes`. Notes
//! are written over REST (or the socket); every tab's WebSocket gets the
//! changes in batches it acknowledges, resent until it does, kept in SQL
//! across hibernation and restarts. The protocol is in this example's
//! README.md.
//!
//! - `note.rs`: a note, its limits (with the running total of their size), its row;
//! - `origin.rs`: the client and request ids a write carries;
//! - `writes.rs`: create, update (with its version check), delete;
//! - `replay.rs`: the first answer again for a retried write;
//! - `outbox.rs`: changes waiting for their 150 ms window;
//! - `delivery.rs`: batches, client ids, acknowledgements and resends;
//! - `socket.rs`: what a client sends on its socket.

mod delivery;
mod note;
mod origin;
mod outbox;
mod replay;
mod socket;
mod writes;

use std::sync::LazyLock;

use podhost_sdk::sockets::{self, Accept, Closed, Message, Socket};
use podhost_sdk::{Error, Object, Params, Request, Response, Result, Router, schedule};
use serde::Deserialize;
use serde_json::json;

use crate::origin::Origin;
use crate::writes::{NoteBody, Refused, Write};

struct Notes;

/// What a socket remembers: its client id.
#[derive(serde::Serialize, Deserialize)]
struct Tab {
    client_id: String,
}

static ROUTES: LazyLock<Router<Notes>> = LazyLock::new(|| {
    Router::<Notes>::new()
        .get("/notes", |_, _, _| {
            Ok(Response::json(&json!({ "notes": note::all()? })))
        })
        .get("/notes/:id", |_, _, params| {
            let id = id(params)?;
            let note = writes::found(note::find(id)?, id)?;
            Ok(Response::json(&json!({ "note": note })))
        })
        .post("/notes", |_, req, _| {
            let body: NoteBody = req.json()?;
            let origin = Origin::of_request(&req, body.request_id.clone())?;
            answer(writes::apply(body.write(None)?, &origin))
        })
        .put("/notes/:id", |_, req, params| {
            let id = id(params)?;
            let body: NoteBody = req.json()?;
            let origin = Origin::of_request(&req, body.request_id.clone())?;
            answer(writes::apply(body.write(Some(id))?, &origin))
        })
        .delete("/notes/:id", |_, req, params| {
            let id = id(params)?;
            let origin = Origin::of_request(&req, None)?;
            answer(writes::apply(Write::Delete { id }, &origin))
        })
});

impl Object for Notes {
    const MIGRATIONS: &'static [&'static str] = &[
        "
        CREATE TABLE notes (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            title TEXT NOT NULL,
            body TEXT NOT NULL,
            version INTEGER NOT NULL,
            created_at INTEGER NOT NULL,
            updated_at INTEGER NOT NULL
        );
        CREATE INDEX notes_by_update ON notes (updated_at, id);
        CREATE TABLE outbox (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            change TEXT NOT NULL
        );
        CREATE TABLE batches (
            seq INTEGER PRIMARY KEY AUTOINCREMENT,
            changes TEXT
        );
        CREATE TABLE clients (
            client_id TEXT PRIMARY KEY,
            last_seen INTEGER NOT NULL
        ) WITHOUT ROWID;
        CREATE INDEX clients_by_last_seen ON clients (last_seen);
        CREATE TABLE deliveries (
            client_id TEXT NOT NULL,
            seq INTEGER NOT NULL,
            sends INTEGER NOT NULL,
            next_at INTEGER,
            PRIMARY KEY (client_id, seq)
        ) WITHOUT ROWID;
        CREATE INDEX deliveries_by_next ON deliveries (next_at);
        CREATE INDEX deliveries_by_seq ON deliveries (seq);",
        "
        CREATE TABLE answers (
            client_id TEXT NOT NULL,
            request_id TEXT NOT NULL,
            status INTEGER NOT NULL,
            body TEXT NOT NULL,
            at INTEGER NOT NULL,
            PRIMARY KEY (client_id, request_id)
        );
        CREATE INDEX answers_by_time ON answers (at);",
        "
        CREATE TABLE usage (bytes INTEGER NOT NULL);
        INSERT INTO usage (bytes)
            SELECT coalesce(sum(length(CAST(title AS BLOB)) + length(CAST(body AS BLOB)) + 100), 0)
            FROM notes;",
    ];

    fn activate() -> Result<Self> {
        Ok(Notes)
    }

    fn fetch(&mut self, req: Request) -> Result<Response> {
        req.require_user()?;
        ROUTES.handle(self, req)
    }

    fn alarm(&mut self, _retry_count: u32) -> Result<()> {
        for task in schedule::take_due()? {
            match task.name.as_str() {
                outbox::FLUSH => outbox::flush()?,
                delivery::RESEND => delivery::resend_due()?,
                other => eprintln!("notes: no such task {other:?}; dropped"),
            }
        }
        Ok(())
    }

    fn socket_open(&mut self, socket: Socket, req: Request) -> Result<Accept> {
        if req.segments().as_slice() != ["ws"] {
            return Err(Error::not_found("WebSockets open on /ws?client_id=..."));
        }
        req.require_user()?;
        let client_id = req
            .query_param("client_id")
            .ok_or_else(|| Error::bad_request("`?client_id=` is missing"))
            .and_then(origin::check_client_id)?;
        sockets::set_auto_response(Some(("ping", "pong")));
        socket.set_attachment(&Tab {
            client_id: client_id.clone(),
        })?;
        delivery::connect(&client_id, socket)?;
        Ok(Accept::new()
            .tag(delivery::ALL)
            .tag(delivery::client_tag(&client_id)))
    }

    fn socket_message(&mut self, socket: Socket, message: Message) -> Result<()> {
        let tab: Tab = socket
            .attachment()?
            .ok_or_else(|| Error::internal("a socket without its client id"))?;
        socket::handle(socket, &tab.client_id, &message)
    }

    fn socket_close(&mut self, closed: Closed) -> Result<()> {
        if let Some(tab) = closed.attachment::<Tab>()? {
            delivery::seen(&tab.client_id)?;
        }
        Ok(())
    }
}

/// A write's answer: refusals other than a conflict roll back (there is
/// nothing to keep), a conflict is an answer like any other.
fn answer(result: std::result::Result<writes::Outcome, Refused>) -> Result<Response> {
    match result {
        Ok(outcome) => Ok(outcome.into_response()),
        Err(Refused::Error(error)) => Err(error),
        Err(conflict) => Ok(conflict.outcome().into_response()),
    }
}

/// The `{id}` of the path; anything but a number is a note that does not
/// exist.
fn id(params: &Params) -> Result<i64> {
    params
        .number("id")?
        .ok_or_else(|| Error::not_found("no such note"))
}

podhost_sdk::export!(Notes);
