//! Sessions that expire by alarm: one object holds the sessions of an app
//! (or of one user), each with a time to live; the object's alarm ends
//! them when they expire, even if it hibernated meanwhile or the server
//! restarted.
//!
//! Routes below `/objects/sessions/{store}`:
//!
//! - `POST /sessions` with `{"data": any, "ttl_ms": n}` (default one hour)
//!   creates a session: `201 {"id", "expires_at_ms"}`.
//! - `GET /sessions/{id}`: the session, or `404` once it expired or ended.
//! - `POST /sessions/{id}/touch` with `{"ttl_ms": n}`: extends it.
//! - `DELETE /sessions/{id}`: ends it now (logout).
//! - `GET /sessions`: the live sessions.
//! - `GET /ended`: the sessions whose cleanup ran, newest first, with why
//!   (`expired` or `ended`).

use std::sync::LazyLock;
use std::time::Duration;

use podhost_sdk::{
    Error, Object, Request, Response, Result, Router, StatusCode, random, schedule, sql, time,
};
use serde::{Deserialize, Serialize};
use serde_json::Value;

const DEFAULT_TTL_MS: i64 = 60 * 60 * 1000;
const MAX_TTL_MS: i64 = 30 * 24 * 60 * 60 * 1000;
/// Entries kept in the `ended` log.
const ENDED_KEPT: i64 = 1000;

struct Sessions;

static ROUTES: LazyLock<Router<Sessions>> = LazyLock::new(|| {
    Router::<Sessions>::new()
        .post("/sessions", |_, req, _| create(req.json()?))
        .get("/sessions", |_, _, _| list())
        .get("/sessions/:id", |_, _, params| {
            Ok(Response::json(&live(params.get("id")?)?))
        })
        .post("/sessions/:id/touch", |_, req, params| {
            touch(params.get("id")?, req.json()?)
        })
        .delete("/sessions/:id", |_, _, params| {
            let id = params.get("id")?;
            live(id)?;
            end(id, "ended")?;
            Ok(Response::new(StatusCode::NO_CONTENT))
        })
        .get("/ended", |_, _, _| ended())
});

#[derive(Deserialize)]
struct Create {
    #[serde(default)]
    data: Value,
    ttl_ms: Option<i64>,
}

#[derive(Deserialize)]
struct Touch {
    ttl_ms: Option<i64>,
}

#[derive(Serialize)]
struct Session {
    id: String,
    data: Value,
    created_at_ms: i64,
    expires_at_ms: i64,
}

impl Object for Sessions {
    const MIGRATIONS: &'static [&'static str] = &["
        CREATE TABLE sessions (
            id TEXT PRIMARY KEY,
            data TEXT NOT NULL,
            created_at_ms INTEGER NOT NULL,
            expires_at_ms INTEGER NOT NULL
        );
        CREATE TABLE ended (
            seq INTEGER PRIMARY KEY AUTOINCREMENT,
            id TEXT NOT NULL,
            reason TEXT NOT NULL,
            ended_at_ms INTEGER NOT NULL
        );"];

    fn activate() -> Result<Self> {
        Ok(Sessions)
    }

    fn fetch(&mut self, req: Request) -> Result<Response> {
        ROUTES.handle(self, req)
    }

    /// Ends every session whose time is up.
    fn alarm(&mut self, _retry_count: u32) -> Result<()> {
        for task in schedule::take_due()? {
            let id: String = task.payload()?;
            end(&id, "expired")?;
        }
        Ok(())
    }
}

fn ttl(ttl_ms: Option<i64>) -> Result<i64> {
    match ttl_ms.unwrap_or(DEFAULT_TTL_MS) {
        ms @ 1..=MAX_TTL_MS => Ok(ms),
        ms => Err(Error::bad_request(format!(
            "ttl_ms must be between 1 and {MAX_TTL_MS}, not {ms}"
        ))),
    }
}

fn create(body: Create) -> Result<Response> {
    let ttl = ttl(body.ttl_ms)?;
    let id = random::token()?;
    let now = time::now_ms();
    let session = Session {
        id,
        data: body.data,
        created_at_ms: now,
        expires_at_ms: now + ttl,
    };
    sql::execute(
        "INSERT INTO sessions (id, data, created_at_ms, expires_at_ms) VALUES (?, ?, ?, ?)",
        (
            &session.id,
            session.data.to_string(),
            session.created_at_ms,
            session.expires_at_ms,
        ),
    )?;
    expire_in(&session.id, ttl)?;
    Ok(Response::json(&session).with_status(StatusCode::CREATED))
}

fn touch(id: &str, body: Touch) -> Result<Response> {
    let ttl = ttl(body.ttl_ms)?;
    let mut session = live(id)?;
    session.expires_at_ms = time::now_ms() + ttl;
    sql::execute(
        "UPDATE sessions SET expires_at_ms = ? WHERE id = ?",
        (session.expires_at_ms, id),
    )?;
    expire_in(id, ttl)?;
    Ok(Response::json(&session))
}

/// (Re)schedules the session's cleanup; one task per session, one alarm.
fn expire_in(id: &str, ttl_ms: i64) -> Result<()> {
    let delay = Duration::from_millis(ttl_ms.unsigned_abs());
    schedule::after(&task_name(id), delay, id)?;
    Ok(())
}

fn task_name(id: &str) -> String {
    format!("expire:{id}")
}

/// The session if it exists and has not expired. An expired session whose
/// alarm has not run yet is already gone to its readers.
fn live(id: &str) -> Result<Session> {
    let row: Option<(String, i64, i64)> = sql::query_one(
        "SELECT data, created_at_ms, expires_at_ms FROM sessions WHERE id = ? AND expires_at_ms > ?",
        (id, time::now_ms()),
    )?;
    let (data, created_at_ms, expires_at_ms) =
        row.ok_or_else(|| Error::not_found("no such session: it expired, ended or never was"))?;
    Ok(Session {
        id: id.to_string(),
        data: serde_json::from_str(&data)?,
        created_at_ms,
        expires_at_ms,
    })
}

fn list() -> Result<Response> {
    let rows: Vec<(String, String, i64, i64)> = sql::query(
        "SELECT id, data, created_at_ms, expires_at_ms FROM sessions
         WHERE expires_at_ms > ? ORDER BY created_at_ms, id",
        (time::now_ms(),),
    )?;
    let sessions = rows
        .into_iter()
        .map(|(id, data, created_at_ms, expires_at_ms)| {
            Ok(Session {
                id,
                data: serde_json::from_str(&data)?,
                created_at_ms,
                expires_at_ms,
            })
        })
        .collect::<Result<Vec<_>>>()?;
    Ok(Response::json(&sessions))
}

/// The cleanup: removes the session and its task, and logs why it ended.
fn end(id: &str, reason: &str) -> Result<()> {
    if sql::execute("DELETE FROM sessions WHERE id = ?", (id,))? == 0 {
        return Ok(());
    }
    schedule::cancel(&task_name(id))?;
    sql::execute(
        "INSERT INTO ended (id, reason, ended_at_ms) VALUES (?, ?, ?)",
        (id, reason, time::now_ms()),
    )?;
    sql::execute(
        "DELETE FROM ended WHERE seq <= (SELECT max(seq) FROM ended) - ?",
        (ENDED_KEPT,),
    )?;
    Ok(())
}

fn ended() -> Result<Response> {
    let rows: Vec<(String, String, i64)> = sql::query(
        "SELECT id, reason, ended_at_ms FROM ended ORDER BY seq DESC",
        (),
    )?;
    let entries: Vec<Value> = rows
        .into_iter()
        .map(
            |(id, reason, at)| serde_json::json!({ "id": id, "reason": reason, "ended_at_ms": at }),
        )
        .collect();
    Ok(Response::json(&entries))
}

podhost_sdk::export!(Sessions);
