//! Named locks with a time to live. Acquiring returns a secret token that
//! releasing and extending need; a lock nobody releases frees itself when
//! its TTL runs out, by alarm (one `schedule` task per lock).

use std::time::Duration;

use podhost_sdk::{Error, Response, Result, StatusCode, random, schedule, sql, time};
use serde::Deserialize;
use serde_json::json;

const SCHEMA: &str = "CREATE TABLE IF NOT EXISTS locks (
    name TEXT PRIMARY KEY,
    token TEXT NOT NULL,
    acquired_at INTEGER NOT NULL,
    expires_at INTEGER NOT NULL
)";

/// Prefix of the `schedule` task that frees a lock.
pub const TASK_PREFIX: &str = "lock:";
const MAX_TTL_MS: i64 = 24 * 60 * 60 * 1000;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Acquire {
    ttl_ms: i64,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Release {
    token: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Extend {
    token: String,
    ttl_ms: i64,
}

struct Held {
    token: String,
    acquired_at: i64,
    expires_at: i64,
}

fn ensure() -> Result<()> {
    sql::script(SCHEMA)?;
    Ok(())
}

fn ttl(ttl_ms: i64) -> Result<i64> {
    if (1..=MAX_TTL_MS).contains(&ttl_ms) {
        Ok(ttl_ms)
    } else {
        Err(Error::bad_request(format!(
            "`ttl_ms` must be 1 to {MAX_TTL_MS}, not {ttl_ms}"
        )))
    }
}

/// The lock on `name` if it is held and its TTL has not run out (a lock
/// past its TTL whose alarm has not run yet is free already).
fn held(name: &str) -> Result<Option<Held>> {
    ensure()?;
    let row: Option<(String, i64, i64)> = sql::query_one(
        "SELECT token, acquired_at, expires_at FROM locks WHERE name = ? AND expires_at > ?",
        (name, time::now_ms()),
    )?;
    Ok(row.map(|(token, acquired_at, expires_at)| Held {
        token,
        acquired_at,
        expires_at,
    }))
}

/// The lock, if `token` holds it; a 409 otherwise.
fn holding(name: &str, token: &str) -> Result<Held> {
    match held(name)? {
        Some(lock) if lock.token == token => Ok(lock),
        Some(_) => {
            Err(Error::conflict("the lock is held under another token").with_code("not_holder"))
        }
        None => Err(
            Error::conflict("the lock is not held: it was released or its TTL ran out")
                .with_code("not_held"),
        ),
    }
}

fn expire_in(name: &str, ttl_ms: i64) -> Result<()> {
    let delay = Duration::from_millis(ttl_ms.unsigned_abs());
    schedule::after(&format!("{TASK_PREFIX}{name}"), delay, &())?;
    Ok(())
}

pub fn acquire(name: &str, body: Acquire) -> Result<Response> {
    let ttl = ttl(body.ttl_ms)?;
    if let Some(lock) = held(name)? {
        return Ok(Response::json(&json!({
            "error": { "code": "lock_held", "message": "the lock is held" },
            "expires_at": lock.expires_at,
        }))
        .with_status(StatusCode::CONFLICT));
    }
    let now = time::now_ms();
    let token = random::token()?;
    let expires_at = now + ttl;
    sql::execute(
        "INSERT OR REPLACE INTO locks (name, token, acquired_at, expires_at) VALUES (?, ?, ?, ?)",
        (name, &token, now, expires_at),
    )?;
    expire_in(name, ttl)?;
    Ok(Response::json(&json!({
        "name": name,
        "token": token,
        "acquired_at": now,
        "expires_at": expires_at,
    })))
}

pub fn release(name: &str, body: Release) -> Result<Response> {
    holding(name, &body.token)?;
    sql::execute("DELETE FROM locks WHERE name = ?", (name,))?;
    schedule::cancel(&format!("{TASK_PREFIX}{name}"))?;
    Ok(Response::json(&json!({ "name": name, "released": true })))
}

pub fn extend(name: &str, body: Extend) -> Result<Response> {
    let ttl = ttl(body.ttl_ms)?;
    let lock = holding(name, &body.token)?;
    let expires_at = time::now_ms() + ttl;
    sql::execute(
        "UPDATE locks SET expires_at = ? WHERE name = ?",
        (expires_at, name),
    )?;
    expire_in(name, ttl)?;
    Ok(Response::json(&json!({
        "name": name,
        "acquired_at": lock.acquired_at,
        "expires_at": expires_at,
    })))
}

/// Whether the lock is held and until when (never its token).
pub fn show(name: &str) -> Result<Response> {
    Ok(Response::json(&match held(name)? {
        Some(lock) => json!({
            "name": name,
            "held": true,
            "acquired_at": lock.acquired_at,
            "expires_at": lock.expires_at,
        }),
        None => json!({ "name": name, "held": false }),
    }))
}

/// From the alarm: frees the lock if its TTL has run out (it may have been
/// extended since the task was taken).
pub fn expire_if_due(name: &str) -> Result<()> {
    ensure()?;
    sql::execute(
        "DELETE FROM locks WHERE name = ? AND expires_at <= ?",
        (name, time::now_ms()),
    )?;
    Ok(())
}
