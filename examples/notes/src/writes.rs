//! The three writes (create, update, delete), shared by REST and the
//! socket: each changes `notes` and records its change for the clients.

use podhost_sdk::{Error, Response, Result, StatusCode};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::note::{self, Content, Note};
use crate::origin::Origin;
use crate::{outbox, replay};

/// A write a client asks for.
pub enum Write<'a> {
    Create(Content<'a>),
    Update {
        id: i64,
        version: i64,
        content: Content<'a>,
    },
    Delete {
        id: i64,
    },
}

/// A note's fields as a client sends them, for a create or an update
/// (`POST`/`PUT` bodies, the socket's `put`).
#[derive(Deserialize)]
pub struct NoteBody {
    pub title: String,
    pub body: String,
    #[serde(default)]
    pub version: Option<u64>,
    #[serde(default)]
    pub request_id: Option<String>,
}

impl NoteBody {
    /// A create without `id`, an update of note `id` (which needs the
    /// `version` it is based on) with one.
    pub fn write(&self, id: Option<i64>) -> Result<Write<'_>> {
        let content = Content {
            title: &self.title,
            body: &self.body,
        };
        let Some(id) = id else {
            return Ok(Write::Create(content));
        };
        let version = self.version.ok_or_else(|| {
            Error::bad_request("`version` is missing: send the version your edit is based on")
        })?;
        Ok(Write::Update {
            id,
            version: note::check_version(version)?,
            content,
        })
    }
}

/// Why a write was not made. Nothing was written either way.
pub enum Refused {
    /// The update was based on an older version than `current`.
    Conflict(Note),
    Error(Error),
}

impl From<Error> for Refused {
    fn from(error: Error) -> Self {
        Refused::Error(error)
    }
}

/// A write's outcome as status and JSON body (the REST answer; the
/// socket's `reply` carries the same fields).
pub struct Outcome {
    pub status: StatusCode,
    pub body: Value,
}

impl Outcome {
    pub fn into_response(self) -> Response {
        Response::json(&self.body).with_status(self.status)
    }
}

impl Refused {
    /// The answer to a refused write: the host's error shape, plus the
    /// current note on a conflict.
    pub fn outcome(&self) -> Outcome {
        match self {
            Refused::Conflict(current) => Outcome {
                status: StatusCode::CONFLICT,
                body: json!({
                    "error": {
                        "code": "conflict",
                        "message": format!(
                            "note {} is at version {}; merge with `current` and send its version",
                            current.id, current.version
                        ),
                    },
                    "current": current,
                }),
            },
            Refused::Error(error) => Outcome {
                status: error.status(),
                body: json!({ "error": { "code": error.code(), "message": error.message() } }),
            },
        }
    }
}

/// Makes `write` and records its change; creates and updates reach the
/// clients at the end of the current 150 ms window, deletes at once. A
/// write already made with the same client and request id is answered as
/// it was then, and not made again.
pub fn apply(write: Write<'_>, origin: &Origin) -> std::result::Result<Outcome, Refused> {
    if let Some(first) = replay::find(origin)? {
        return Ok(first);
    }
    let outcome = make(write, origin)?;
    replay::remember(origin, &outcome)?;
    Ok(outcome)
}

fn make(write: Write<'_>, origin: &Origin) -> std::result::Result<Outcome, Refused> {
    match write {
        Write::Create(content) => {
            content.check()?;
            let note = note::insert(&content)?;
            outbox::upsert(&note, origin)?;
            Ok(Outcome {
                status: StatusCode::CREATED,
                body: json!({ "note": note }),
            })
        }
        Write::Update {
            id,
            version,
            content,
        } => {
            content.check()?;
            let current = found(note::find(id)?, id)?;
            if current.version != version {
                return Err(Refused::Conflict(current));
            }
            let note = note::update(current, &content)?;
            outbox::upsert(&note, origin)?;
            Ok(Outcome {
                status: StatusCode::OK,
                body: json!({ "note": note }),
            })
        }
        Write::Delete { id } => {
            if !note::remove(id)? {
                return Err(not_found(id).into());
            }
            outbox::delete(id, origin)?;
            Ok(Outcome {
                status: StatusCode::OK,
                body: json!({ "deleted": true, "id": id }),
            })
        }
    }
}

pub fn found(note: Option<Note>, id: i64) -> Result<Note> {
    note.ok_or_else(|| not_found(id))
}

fn not_found(id: i64) -> Error {
    Error::not_found(format!("no note {id}"))
}
