//! A `Table` whose declaration grows between two builds: v1 has notes with
//! a text; v2 adds `pinned` (a bool) and `due` (optional), which the SDK
//! adds to the existing table when an object wakes under v2.
//!
//! `POST /notes` with a note's JSON adds it; `GET /notes` lists them,
//! oldest first.

use podhost_sdk::{Object, Request, Response, Result, Router, StatusCode, Table, Type};
use serde::{Deserialize, Serialize};

#[derive(Serialize, Deserialize)]
struct Note {
    text: String,
    #[cfg(feature = "v2")]
    #[serde(default)]
    pinned: bool,
    #[cfg(feature = "v2")]
    #[serde(default)]
    due: Option<i64>,
}

struct Notes {
    notes: Table<Note>,
}

impl Object for Notes {
    fn activate() -> Result<Self> {
        let notes = Table::<Note>::new("notes").column("text", Type::Text);
        #[cfg(feature = "v2")]
        let notes = notes
            .column("pinned", Type::Bool)
            .optional("due", Type::Integer)
            .index(&["pinned"]);
        notes.migrate()?;
        Ok(Notes { notes })
    }

    fn fetch(&mut self, req: Request) -> Result<Response> {
        Router::<Notes>::new()
            .post("/notes", |this, req, _| {
                let note = this.notes.of(&req)?.insert(&req.json()?)?;
                Ok(Response::json(&note).with_status(StatusCode::CREATED))
            })
            .get("/notes", |this, req, _| {
                Ok(Response::json(&this.notes.of(&req)?.query().all()?))
            })
            .handle(self, req)
    }
}

podhost_sdk::export!(Notes);
