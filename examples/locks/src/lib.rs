//! Locks with a time to live: one object is a namespace of named locks.
//! Acquiring returns a secret token and a fencing number; releasing or
//! extending needs the token; a lock nobody releases frees itself when its
//! TTL runs out, by alarm, even if the object hibernated or the server
//! restarted in between.
//!
//! Routes below `/objects/locks/{namespace}`:
//!
//! - `POST /locks/{key}/acquire` with `{"ttl_ms": n, "owner": "..."}`:
//!   `200 {"token", "fence", "expires_at_ms", ...}`, or `409` with who
//!   holds it and until when.
//! - `POST /locks/{key}/extend` with `{"token", "ttl_ms"}`: a new expiry.
//! - `POST /locks/{key}/release` with `{"token"}`.
//! - `GET /locks/{key}`: whether it is held, by whom, until when (never
//!   the token).
//! - `GET /log`: acquisitions, releases and expiries, newest first.
//!
//! The fence grows with every acquisition in the namespace: a resource
//! guarded by the lock can refuse writes carrying a smaller fence than one
//! it has seen, so a holder that paused past its TTL cannot do harm.

use std::sync::LazyLock;
use std::time::Duration;

use podhost_sdk::{
    Error, Object, Params, Request, Response, Result, Router, StatusCode, kv, random, schedule,
    sql, time,
};
use serde::{Deserialize, Serialize};
use serde_json::json;

const MAX_TTL_MS: i64 = 24 * 60 * 60 * 1000;
const MAX_KEY_BYTES: usize = 256;
/// Entries kept in the log.
const LOG_KEPT: i64 = 1000;

struct Locks;

static ROUTES: LazyLock<Router<Locks>> = LazyLock::new(|| {
    Router::<Locks>::new()
        .post("/locks/:key/acquire", |_, req, params| {
            acquire(key(params)?, req.json()?)
        })
        .post("/locks/:key/extend", |_, req, params| {
            extend(key(params)?, req.json()?)
        })
        .post("/locks/:key/release", |_, req, params| {
            release(key(params)?, req.json()?)
        })
        .get("/locks/:key", |_, _, params| {
            let key = key(params)?;
            Ok(Response::json(&match held(key)? {
                Some(lock) => json!({ "held": true, "lock": lock }),
                None => json!({ "held": false, "key": key }),
            }))
        })
        .get("/log", |_, _, _| log())
});

#[derive(Deserialize)]
struct Acquire {
    ttl_ms: i64,
    #[serde(default)]
    owner: String,
}

#[derive(Deserialize)]
struct Extend {
    token: String,
    ttl_ms: i64,
}

#[derive(Deserialize)]
struct Release {
    token: String,
}

/// A held lock.
#[derive(Serialize)]
struct Held {
    key: String,
    #[serde(skip)]
    token: String,
    owner: String,
    fence: i64,
    expires_at_ms: i64,
}

impl Object for Locks {
    const MIGRATIONS: &'static [&'static str] = &["
        CREATE TABLE locks (
            key TEXT PRIMARY KEY,
            token TEXT NOT NULL,
            owner TEXT NOT NULL,
            fence INTEGER NOT NULL,
            expires_at_ms INTEGER NOT NULL
        );
        CREATE TABLE log (
            seq INTEGER PRIMARY KEY AUTOINCREMENT,
            key TEXT NOT NULL,
            event TEXT NOT NULL,
            owner TEXT NOT NULL,
            fence INTEGER NOT NULL,
            at_ms INTEGER NOT NULL
        );"];

    fn activate() -> Result<Self> {
        Ok(Locks)
    }

    fn fetch(&mut self, req: Request) -> Result<Response> {
        ROUTES.handle(self, req)
    }

    /// Frees every lock whose TTL ran out.
    fn alarm(&mut self, _retry_count: u32) -> Result<()> {
        for task in schedule::take_due()? {
            let key: String = task.payload()?;
            expire_if_due(&key)?;
        }
        Ok(())
    }
}

/// The `:key` of the path, checked.
fn key(params: &Params) -> Result<&str> {
    checked(params.get("key")?)
}

fn checked(key: &str) -> Result<&str> {
    if key.len() > MAX_KEY_BYTES {
        return Err(Error::bad_request(format!(
            "a lock key has at most {MAX_KEY_BYTES} bytes"
        )));
    }
    Ok(key)
}

fn ttl(ttl_ms: i64) -> Result<i64> {
    if (1..=MAX_TTL_MS).contains(&ttl_ms) {
        Ok(ttl_ms)
    } else {
        Err(Error::bad_request(format!(
            "ttl_ms must be between 1 and {MAX_TTL_MS}, not {ttl_ms}"
        )))
    }
}

fn acquire(key: &str, body: Acquire) -> Result<Response> {
    let ttl = ttl(body.ttl_ms)?;
    if let Some(holder) = held(key)? {
        return Ok(Response::json(&json!({
            "error": { "code": "lock_held", "message": "the lock is held" },
            "owner": holder.owner,
            "expires_at_ms": holder.expires_at_ms,
        }))
        .with_status(StatusCode::CONFLICT));
    }
    let fence = kv::get::<i64>("fence")?.unwrap_or(0) + 1;
    kv::put("fence", &fence)?;
    let lock = Held {
        key: key.to_string(),
        token: random::token()?,
        owner: body.owner,
        fence,
        expires_at_ms: time::now_ms() + ttl,
    };
    sql::execute(
        "INSERT OR REPLACE INTO locks (key, token, owner, fence, expires_at_ms) VALUES (?, ?, ?, ?, ?)",
        (
            &lock.key,
            &lock.token,
            &lock.owner,
            lock.fence,
            lock.expires_at_ms,
        ),
    )?;
    free_in(key, ttl)?;
    record(&lock, "acquired")?;
    Ok(Response::json(&json!({
        "key": lock.key,
        "token": lock.token,
        "owner": lock.owner,
        "fence": lock.fence,
        "expires_at_ms": lock.expires_at_ms,
    })))
}

fn extend(key: &str, body: Extend) -> Result<Response> {
    let ttl = ttl(body.ttl_ms)?;
    let mut lock = holding(key, &body.token)?;
    lock.expires_at_ms = time::now_ms() + ttl;
    sql::execute(
        "UPDATE locks SET expires_at_ms = ? WHERE key = ?",
        (lock.expires_at_ms, key),
    )?;
    free_in(key, ttl)?;
    Ok(Response::json(&lock))
}

fn release(key: &str, body: Release) -> Result<Response> {
    let lock = holding(key, &body.token)?;
    sql::execute("DELETE FROM locks WHERE key = ?", (key,))?;
    schedule::cancel(&task_name(key))?;
    record(&lock, "released")?;
    Ok(Response::json(
        &json!({ "released": true, "fence": lock.fence }),
    ))
}

/// The lock, if `token` holds it; a 409 otherwise.
fn holding(key: &str, token: &str) -> Result<Held> {
    match held(key)? {
        Some(lock) if lock.token == token => Ok(lock),
        Some(_) => Err(Error::conflict("the lock is held under another token")),
        None => Err(Error::conflict(
            "the lock is not held: it was released or its TTL ran out",
        )),
    }
}

/// The lock on `key` if it is held and its TTL has not run out. A lock past
/// its TTL whose alarm has not run yet is free already.
fn held(key: &str) -> Result<Option<Held>> {
    let row: Option<(String, String, i64, i64)> = sql::query_one(
        "SELECT token, owner, fence, expires_at_ms FROM locks WHERE key = ? AND expires_at_ms > ?",
        (key, time::now_ms()),
    )?;
    Ok(row.map(|(token, owner, fence, expires_at_ms)| Held {
        key: key.to_string(),
        token,
        owner,
        fence,
        expires_at_ms,
    }))
}

/// Frees the lock on `key` if its TTL has run out (it may have been
/// extended since the task was taken).
fn expire_if_due(key: &str) -> Result<()> {
    let row: Option<(String, String, i64, i64)> = sql::query_one(
        "SELECT token, owner, fence, expires_at_ms FROM locks WHERE key = ? AND expires_at_ms <= ?",
        (key, time::now_ms()),
    )?;
    if let Some((token, owner, fence, expires_at_ms)) = row {
        sql::execute("DELETE FROM locks WHERE key = ?", (key,))?;
        let lock = Held {
            key: key.to_string(),
            token,
            owner,
            fence,
            expires_at_ms,
        };
        record(&lock, "expired")?;
    }
    Ok(())
}

/// (Re)schedules the lock's expiry; one task per lock, one alarm.
fn free_in(key: &str, ttl_ms: i64) -> Result<()> {
    let delay = Duration::from_millis(ttl_ms.unsigned_abs());
    schedule::after(&task_name(key), delay, key)?;
    Ok(())
}

fn task_name(key: &str) -> String {
    format!("free:{key}")
}

fn record(lock: &Held, event: &str) -> Result<()> {
    sql::execute(
        "INSERT INTO log (key, event, owner, fence, at_ms) VALUES (?, ?, ?, ?, ?)",
        (&lock.key, event, &lock.owner, lock.fence, time::now_ms()),
    )?;
    sql::execute(
        "DELETE FROM log WHERE seq <= (SELECT max(seq) FROM log) - ?",
        (LOG_KEPT,),
    )?;
    Ok(())
}

fn log() -> Result<Response> {
    let rows: Vec<(String, String, String, i64, i64)> = sql::query(
        "SELECT key, event, owner, fence, at_ms FROM log ORDER BY seq DESC",
        (),
    )?;
    let entries: Vec<_> = rows
        .into_iter()
        .map(|(key, event, owner, fence, at_ms)| {
            json!({ "key": key, "event": event, "owner": owner, "fence": fence, "at_ms": at_ms })
        })
        .collect();
    Ok(Response::json(&entries))
}

podhost_sdk::export!(Locks);
