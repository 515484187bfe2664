//! A class deployed in several versions by the deploy tests: it says which
//! version answers, over HTTP, its WebSockets and its event log.
//!
//! - `GET /version`: `v1` or `v2`.
//! - `POST /hit`: counts a hit, publishes event `hit` with the version;
//!   returns the count.
//! - `GET /notes` (v2 only): reads the table v2's migration adds.
//! - WebSocket `/ws?name=N` (tag `room`, attachment `N`): each text message
//!   is answered `VERSION NAME TAGGED TEXT`, where `TAGGED` counts the
//!   sockets tagged `room`.

use podhost_sdk::sockets::{self, Accept, Message, Socket};
use podhost_sdk::{Error, Method, Object, Request, Response, Result, events, sql};

const CREATE_HITS: &str = "CREATE TABLE hits (id INTEGER PRIMARY KEY)";

#[cfg(not(any(feature = "v2", feature = "broken", feature = "reordered")))]
const VERSION: &str = "v1";
#[cfg(any(feature = "v2", feature = "broken", feature = "reordered"))]
const VERSION: &str = "v2";

#[cfg(not(any(feature = "v2", feature = "broken", feature = "reordered")))]
const MIGRATIONS: &[&str] = &[CREATE_HITS];
#[cfg(all(feature = "v2", not(feature = "broken"), not(feature = "reordered")))]
const MIGRATIONS: &[&str] = &[CREATE_HITS, "CREATE TABLE notes (text TEXT NOT NULL)"];
#[cfg(feature = "broken")]
const MIGRATIONS: &[&str] = &[CREATE_HITS, "ALTER TABLE missing ADD COLUMN tag TEXT"];
#[cfg(all(feature = "reordered", not(feature = "broken")))]
const MIGRATIONS: &[&str] = &["CREATE TABLE hits (id INTEGER PRIMARY KEY, at INTEGER)"];

struct Versioned;

impl Object for Versioned {
    const MIGRATIONS: &'static [&'static str] = MIGRATIONS;

    fn activate() -> Result<Self> {
        Ok(Versioned)
    }

    fn fetch(&mut self, req: Request) -> Result<Response> {
        match (req.method().clone(), req.segments().as_slice()) {
            (Method::GET, ["version"]) => Ok(Response::text(VERSION)),
            (Method::POST, ["hit"]) => {
                sql::execute("INSERT INTO hits DEFAULT VALUES", ())?;
                events::publish("hit", VERSION)?;
                let rows = sql::exec("SELECT count(*) AS n FROM hits", ())?;
                let count = rows.iter().next().map(|row| row.to_json()["n"].clone());
                Ok(Response::text(count.unwrap_or_default().to_string()))
            }
            #[cfg(feature = "v2")]
            (Method::GET, ["notes"]) => {
                let rows = sql::exec("SELECT count(*) AS n FROM notes", ())?;
                let count = rows.iter().next().map(|row| row.to_json()["n"].clone());
                Ok(Response::text(count.unwrap_or_default().to_string()))
            }
            _ => Err(Error::not_found("no such route")),
        }
    }

    fn socket_open(&mut self, socket: Socket, req: Request) -> Result<Accept> {
        let name = req.query_param("name").unwrap_or_default();
        socket.set_attachment(&name)?;
        Ok(Accept::new().tag("room"))
    }

    fn socket_message(&mut self, socket: Socket, message: Message) -> Result<()> {
        let name: String = socket.attachment()?.unwrap_or_default();
        let tagged = sockets::sockets(Some("room")).len();
        let text = message.as_text().unwrap_or_default();
        socket
            .send(format!("{VERSION} {name} {tagged} {text}"))
            .map_err(|error| Error::internal(format!("{error:?}")))?;
        Ok(())
    }
}

podhost_sdk::export!(Versioned);
