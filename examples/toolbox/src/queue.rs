//! Job queues with priorities, attempts and visibility timeouts.
//!
//! A job is `pending`, `running`, `completed` or `failed`. `pop` hands out
//! the pending job of highest priority (then the oldest) and counts an
//! attempt; `fail` puts it back while attempts remain, else marks it
//! `failed`. A running job not completed within its visibility timeout is
//! treated like a failure with the error `"visibility timeout"`, by alarm
//! (one `schedule` task per running job).

use std::time::Duration;

use podhost_sdk::{Error, Request, Response, Result, StatusCode, schedule, sql, time};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS jobs (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    queue TEXT NOT NULL,
    payload TEXT NOT NULL,
    priority INTEGER NOT NULL,
    status TEXT NOT NULL,
    attempts INTEGER NOT NULL,
    max_attempts INTEGER NOT NULL,
    error TEXT,
    created_at INTEGER NOT NULL,
    updated_at INTEGER NOT NULL,
    visible_at INTEGER
);
CREATE INDEX IF NOT EXISTS jobs_next ON jobs (queue, status, priority DESC, id);";

/// Prefix of the `schedule` task that ends a job's visibility timeout.
pub const TASK_PREFIX: &str = "job:";
const DEFAULT_MAX_ATTEMPTS: i64 = 3;
const MAX_ATTEMPTS: i64 = 1000;
const DEFAULT_VISIBILITY_MS: i64 = 30_000;
const MAX_VISIBILITY_MS: i64 = 12 * 60 * 60 * 1000;
const MAX_PAYLOAD_BYTES: usize = 256 << 10;
const MAX_ERROR_BYTES: usize = 4096;
const MAX_PAGE: i64 = 1000;
const STATUSES: [&str; 4] = ["pending", "running", "completed", "failed"];
const COLUMNS: &str = "id, queue, payload, priority, status, attempts, max_attempts, error, \
                       created_at, updated_at, visible_at";

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewJob {
    payload: Value,
    #[serde(default)]
    priority: Option<i64>,
    #[serde(default)]
    max_attempts: Option<i64>,
}

#[derive(Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Pop {
    visibility_timeout_ms: Option<i64>,
}

#[derive(Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Fail {
    error: Option<String>,
}

/// A job as stored; `payload` is JSON text, sent back parsed.
#[derive(Deserialize)]
struct Stored {
    id: i64,
    queue: String,
    payload: String,
    priority: i64,
    status: String,
    attempts: i64,
    max_attempts: i64,
    error: Option<String>,
    created_at: i64,
    updated_at: i64,
    visible_at: Option<i64>,
}

#[derive(Serialize)]
struct Job {
    id: i64,
    queue: String,
    payload: Value,
    priority: i64,
    status: String,
    attempts: i64,
    max_attempts: i64,
    error: Option<String>,
    created_at: i64,
    updated_at: i64,
    /// While running: when the job goes back to its queue.
    visible_at: Option<i64>,
}

impl From<Stored> for Job {
    fn from(s: Stored) -> Self {
        Job {
            id: s.id,
            queue: s.queue,
            payload: serde_json::from_str(&s.payload).unwrap_or(Value::Null),
            priority: s.priority,
            status: s.status,
            attempts: s.attempts,
            max_attempts: s.max_attempts,
            error: s.error,
            created_at: s.created_at,
            updated_at: s.updated_at,
            visible_at: s.visible_at,
        }
    }
}

fn ensure() -> Result<()> {
    sql::script(SCHEMA)?;
    Ok(())
}

fn find(id: i64) -> Result<Option<Job>> {
    ensure()?;
    let stored: Option<Stored> =
        sql::query_as(&format!("SELECT {COLUMNS} FROM jobs WHERE id = ?"), (id,))?.pop();
    Ok(stored.map(Job::from))
}

fn job_response(job: Job) -> Response {
    Response::json(&json!({ "job": job }))
}

fn task(id: i64) -> String {
    format!("{TASK_PREFIX}{id}")
}

pub fn push(queue: &str, new: NewJob) -> Result<Response> {
    let max_attempts = new.max_attempts.unwrap_or(DEFAULT_MAX_ATTEMPTS);
    if !(1..=MAX_ATTEMPTS).contains(&max_attempts) {
        return Err(Error::bad_request(format!(
            "`max_attempts` must be 1 to {MAX_ATTEMPTS}"
        )));
    }
    let payload = new.payload.to_string();
    if payload.len() > MAX_PAYLOAD_BYTES {
        return Err(Error::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("`payload` has at most {MAX_PAYLOAD_BYTES} bytes of JSON"),
        ));
    }
    ensure()?;
    let now = time::now_ms();
    let rows = sql::exec(
        "INSERT INTO jobs (queue, payload, priority, status, attempts, max_attempts, created_at, updated_at)
         VALUES (?, ?, ?, 'pending', 0, ?, ?, ?)",
        (queue, payload, new.priority.unwrap_or(0), max_attempts, now, now),
    )?;
    let job = find(rows.last_insert_rowid())?.ok_or_else(|| Error::internal("the job vanished"))?;
    Ok(job_response(job).with_status(StatusCode::CREATED))
}

/// The next pending job, now running; 204 when there is none.
pub fn pop(queue: &str, pop: Pop) -> Result<Response> {
    let visibility = pop.visibility_timeout_ms.unwrap_or(DEFAULT_VISIBILITY_MS);
    if !(1..=MAX_VISIBILITY_MS).contains(&visibility) {
        return Err(Error::bad_request(format!(
            "`visibility_timeout_ms` must be 1 to {MAX_VISIBILITY_MS}"
        )));
    }
    ensure()?;
    let next: Option<i64> = sql::query_one(
        "SELECT id FROM jobs WHERE queue = ? AND status = 'pending' ORDER BY priority DESC, id LIMIT 1",
        (queue,),
    )?;
    let Some(id) = next else {
        return Ok(Response::new(StatusCode::NO_CONTENT));
    };
    let now = time::now_ms();
    sql::execute(
        "UPDATE jobs SET status = 'running', attempts = attempts + 1, updated_at = ?, visible_at = ?
         WHERE id = ?",
        (now, now + visibility, id),
    )?;
    schedule::after(
        &task(id),
        Duration::from_millis(visibility.unsigned_abs()),
        &(),
    )?;
    let job = find(id)?.ok_or_else(|| Error::internal("the job vanished"))?;
    Ok(job_response(job))
}

/// The running job `id`: a 404 if there is none, a 409 if it is not
/// running (completed, failed, or back in its queue after a timeout).
fn running(id: i64) -> Result<Job> {
    let job = find(id)?.ok_or_else(|| Error::not_found("no such job"))?;
    if job.status != "running" {
        return Err(
            Error::conflict(format!("the job is {}, not running", job.status))
                .with_code("job_not_running"),
        );
    }
    Ok(job)
}

pub fn complete(id: i64) -> Result<Response> {
    running(id)?;
    sql::execute(
        "UPDATE jobs SET status = 'completed', updated_at = ?, visible_at = NULL WHERE id = ?",
        (time::now_ms(), id),
    )?;
    schedule::cancel(&task(id))?;
    let job = find(id)?.ok_or_else(|| Error::internal("the job vanished"))?;
    Ok(job_response(job))
}

pub fn fail(id: i64, fail: Fail) -> Result<Response> {
    let job = running(id)?;
    let error = fail.error.unwrap_or_default();
    if error.len() > MAX_ERROR_BYTES {
        return Err(Error::bad_request(format!(
            "`error` has at most {MAX_ERROR_BYTES} bytes"
        )));
    }
    schedule::cancel(&task(id))?;
    retry_or_fail(&job, &error)?;
    let job = find(id)?.ok_or_else(|| Error::internal("the job vanished"))?;
    Ok(job_response(job))
}

/// Back to `pending` while attempts remain, else `failed`.
fn retry_or_fail(job: &Job, error: &str) -> Result<()> {
    let status = if job.attempts >= job.max_attempts {
        "failed"
    } else {
        "pending"
    };
    sql::execute(
        "UPDATE jobs SET status = ?, error = ?, updated_at = ?, visible_at = NULL WHERE id = ?",
        (status, error, time::now_ms(), job.id),
    )?;
    Ok(())
}

/// From the alarm: a job still running past its visibility timeout goes
/// back to its queue (or fails, out of attempts).
pub fn time_out_if_due(id: i64) -> Result<()> {
    if let Some(job) = find(id)?
        && job.status == "running"
        && job.visible_at.is_some_and(|at| at <= time::now_ms())
    {
        retry_or_fail(&job, "visibility timeout")?;
    }
    Ok(())
}

/// `GET /queues/{q}/jobs[?status=&limit=]`: oldest first.
pub fn list(queue: &str, req: &Request) -> Result<Response> {
    let status = req.query_param("status").filter(|s| !s.is_empty());
    if let Some(status) = &status
        && !STATUSES.contains(&status.as_str())
    {
        return Err(Error::bad_request(format!(
            "`status` must be one of {}",
            STATUSES.join(", ")
        )));
    }
    let limit = match req.query_param("limit") {
        Some(limit) => limit
            .parse::<i64>()
            .ok()
            .filter(|l| (1..=MAX_PAGE).contains(l))
            .ok_or_else(|| Error::bad_request(format!("`limit` must be 1 to {MAX_PAGE}")))?,
        None => MAX_PAGE,
    };
    ensure()?;
    let stored: Vec<Stored> = sql::query_as(
        &format!(
            "SELECT {COLUMNS} FROM jobs WHERE queue = ? AND (?2 IS NULL OR status = ?2)
             ORDER BY id LIMIT ?3"
        ),
        (queue, status, limit),
    )?;
    let jobs: Vec<Job> = stored.into_iter().map(Job::from).collect();
    Ok(Response::json(&json!({ "jobs": jobs })))
}
