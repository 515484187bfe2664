//! Inboxes (the "InboxKit" pattern): one object per inbox, a registry that
//! signs people up, and a `stats` object that keeps totals across them.
//! One component serves three classes, each `public`, so each object checks
//! who asks:
//!
//! - `inboxes` (`registry.rs`): `POST /objects/inboxes/signup {"handle"}`
//!   creates inbox `inbox/<random id>`, gives it the handle and an API key
//!   through the `routing` capability, and answers `201 {"handle",
//!   "api_key"}` once; `409` if the handle is taken.
//! - `inbox` (`inbox.rs`): mail arrives at `POST
//!   /handles/inbox/{handle}/incoming` (a raw RFC 5322 message, with the
//!   ingress token or the admin token); its owner reads it with the key
//!   under `/key/messages` and `/key/settings`.
//! - `stats` (`stats.rs`): every inbox reports signups and deliveries to
//!   `stats/global` through `objects.call`; `GET /objects/stats/global`
//!   (admin token) answers the totals.

mod inbox;
mod mail;
mod registry;
mod stats;

use podhost_sdk::{Error, Object, Request, Response, Result, context};

/// The inbox's schema, oldest first (only ever appended to). Every class
/// of the component runs them; only inboxes use the tables.
#[cfg(not(feature = "two-migrations"))]
const MIGRATIONS: &[&str] = &[MESSAGES, SETTINGS, MESSAGE_ID];
#[cfg(feature = "two-migrations")]
const MIGRATIONS: &[&str] = &[MESSAGES, SETTINGS];

const MESSAGES: &str = "CREATE TABLE messages (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    sender TEXT NOT NULL,
    recipients TEXT NOT NULL,
    subject TEXT NOT NULL,
    text TEXT NOT NULL,
    received_at INTEGER NOT NULL,
    read INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX messages_unread ON messages (read, id)";

const SETTINGS: &str = "CREATE TABLE settings (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    handle TEXT,
    document TEXT NOT NULL DEFAULT '{}'
)";

/// The third: the message's `Message-ID` header, kept from then on.
#[cfg(not(feature = "two-migrations"))]
const MESSAGE_ID: &str = "ALTER TABLE messages ADD COLUMN message_id TEXT";

/// Which of the three classes this object is.
enum App {
    Inbox,
    Registry,
    Stats,
}

impl Object for App {
    const MIGRATIONS: &'static [&'static str] = MIGRATIONS;

    fn activate() -> Result<Self> {
        match context::this_object().class.as_str() {
            "inbox" => Ok(App::Inbox),
            "inboxes" => Ok(App::Registry),
            "stats" => Ok(App::Stats),
            other => Err(Error::internal(format!(
                "this component serves the classes inbox, inboxes and stats, not {other:?}"
            ))),
        }
    }

    fn fetch(&mut self, req: Request) -> Result<Response> {
        match self {
            App::Inbox => inbox::fetch(req),
            App::Registry => registry::fetch(req),
            App::Stats => stats::fetch(req),
        }
    }
}

podhost_sdk::export!(App);
