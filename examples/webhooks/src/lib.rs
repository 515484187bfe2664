//! Webhook delivery with an idempotency key: one object is an inbox of
//! outgoing webhooks. Each key is delivered once (as far as this object
//! can tell, see below); failures are retried by alarm with exponential
//! backoff; every attempt is recorded.
//!
//! Routes below `/objects/webhooks/{inbox}`:
//!
//! - `POST /send` with `{"url", "body", "key"}` (and optionally
//!   `"max_attempts"`, default 5, and `"backoff_ms"`, default 1000: the
//!   first retry's delay, doubled each time, at most an hour). The first
//!   attempt is made at once: `200` `{"status": "delivered", ...}`, `202`
//!   `{"status": "retrying", "error", "next_attempt_at_ms", ...}` or `502`
//!   `{"status": "failed", ...}` once `max_attempts` are used up. A key
//!   seen before sends nothing and answers `200` with the delivery as it
//!   stands and `"duplicate": true`. A host the class may not reach
//!   (`classes.webhooks.outbound`) is a `403` naming the host and the key,
//!   and records nothing.
//! - `GET /deliveries`: every delivery, newest first, with its status and
//!   attempts; `GET /deliveries/{key}`: one, with its attempts.
//! - `GET /attempts` (or `?key=...`): the attempts, newest first: when,
//!   the HTTP status or the error, how long it took.
//!
//! `body` is sent as is when it is a string (`text/plain`), as JSON
//! otherwise; every attempt carries `Idempotency-Key: {key}` and
//! `Webhook-Attempt: {n}`. A receiver gets 10 s to answer (and the host's
//! outbound limits apply), then the attempt counts as failed.
//!
//! **At least once.** An attempt is an outbound request, a side effect
//! that happens before the event commits. If the event then fails (the
//! server stops, a limit breaks) the attempt's record is rolled back and
//! the key is not known: the next `send` with it, or the alarm's retry,
//! sends again. Receivers dedupe with the `Idempotency-Key` header. The
//! other choice, at most once, would commit "sending" before the request
//! and give up on a delivery whose outcome is unknown: webhooks would be
//! lost silently, which is worse.

use std::time::Duration;

use podhost_sdk::http::{self, FetchErrorKind};
use podhost_sdk::{
    Error, Method, Object, Request, Response, Result, StatusCode, schedule, sql, time,
};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

const DEFAULT_MAX_ATTEMPTS: i64 = 5;
const MAX_MAX_ATTEMPTS: i64 = 20;
/// Short, for an example; real receivers deserve minutes.
const DEFAULT_BACKOFF_MS: i64 = 1_000;
const MAX_BACKOFF_MS: i64 = 60 * 60 * 1000;
const MAX_KEY_BYTES: usize = 256;
const MAX_URL_BYTES: usize = 2048;
/// How much of a receiver's answer an attempt records.
const KEPT_ANSWER_BYTES: usize = 512;
/// How long a receiver may take to answer (as GitHub gives its hooks).
const RECEIVER_TIMEOUT: Duration = Duration::from_secs(10);
/// Attempts listed at most.
const LISTED: i64 = 1000;

struct Webhooks;

#[derive(Deserialize)]
struct Send {
    url: String,
    body: Value,
    key: String,
    #[serde(default)]
    max_attempts: Option<i64>,
    #[serde(default)]
    backoff_ms: Option<i64>,
}

#[derive(Serialize, Deserialize)]
struct Delivery {
    key: String,
    url: String,
    status: String,
    attempts: i64,
    max_attempts: i64,
    backoff_ms: i64,
    created_at_ms: i64,
    delivered_at_ms: Option<i64>,
    next_attempt_at_ms: Option<i64>,
    last_error: Option<String>,
}

#[derive(Serialize, Deserialize)]
struct Attempt {
    key: String,
    n: i64,
    at_ms: i64,
    duration_ms: i64,
    http_status: Option<i64>,
    error: Option<String>,
    answer: Option<String>,
}

impl Object for Webhooks {
    const MIGRATIONS: &'static [&'static str] = &["
        CREATE TABLE deliveries (
            key TEXT PRIMARY KEY,
            url TEXT NOT NULL,
            body BLOB NOT NULL,
            content_type TEXT NOT NULL,
            status TEXT NOT NULL,
            attempts INTEGER NOT NULL,
            max_attempts INTEGER NOT NULL,
            backoff_ms INTEGER NOT NULL,
            created_at_ms INTEGER NOT NULL,
            delivered_at_ms INTEGER,
            next_attempt_at_ms INTEGER,
            last_error TEXT
        );
        CREATE TABLE attempts (
            seq INTEGER PRIMARY KEY AUTOINCREMENT,
            key TEXT NOT NULL,
            n INTEGER NOT NULL,
            at_ms INTEGER NOT NULL,
            duration_ms INTEGER NOT NULL,
            http_status INTEGER,
            error TEXT,
            answer TEXT
        );
        CREATE INDEX attempts_by_key ON attempts (key, seq);"];

    fn activate() -> Result<Self> {
        Ok(Webhooks)
    }

    fn fetch(&mut self, req: Request) -> Result<Response> {
        match (req.method().clone(), req.segments().as_slice()) {
            (Method::POST, ["send"]) => send(req.json()?),
            (Method::GET, ["deliveries"]) => Ok(Response::json(&sql::query_as::<Delivery>(
                &format!("{DELIVERY} ORDER BY created_at_ms DESC, rowid DESC LIMIT {LISTED}"),
                (),
            )?)),
            (Method::GET, ["deliveries", key]) => {
                let delivery = delivery(key)?.ok_or_else(|| Error::not_found("no such key"))?;
                Ok(Response::json(
                    &json!({ "delivery": delivery, "attempts": attempts(Some(key))? }),
                ))
            }
            (Method::GET, ["attempts"]) => Ok(Response::json(&attempts(
                req.query_param("key").as_deref(),
            )?)),
            _ => Err(Error::not_found("no such route")),
        }
    }

    /// Retries the deliveries whose backoff ran out. A failure is recorded
    /// and rescheduled, so the alarm itself succeeds.
    fn alarm(&mut self, _retry_count: u32) -> Result<()> {
        for task in schedule::take_due()? {
            let key: String = task.payload()?;
            if let Some(delivery) = delivery(&key)?
                && delivery.status == "retrying"
            {
                attempt(&key)?;
            }
        }
        Ok(())
    }
}

const DELIVERY: &str = "SELECT key, url, status, attempts, max_attempts, backoff_ms, created_at_ms, \
     delivered_at_ms, next_attempt_at_ms, last_error FROM deliveries";

fn delivery(key: &str) -> Result<Option<Delivery>> {
    Ok(
        sql::query_as::<Delivery>(&format!("{DELIVERY} WHERE key = ?"), (key,))?
            .into_iter()
            .next(),
    )
}

fn attempts(key: Option<&str>) -> Result<Vec<Attempt>> {
    let columns = "SELECT key, n, at_ms, duration_ms, http_status, error, answer FROM attempts";
    Ok(match key {
        Some(key) => sql::query_as(
            &format!("{columns} WHERE key = ? ORDER BY seq DESC LIMIT {LISTED}"),
            (key,),
        )?,
        None => sql::query_as(&format!("{columns} ORDER BY seq DESC LIMIT {LISTED}"), ())?,
    })
}

fn send(request: Send) -> Result<Response> {
    if request.key.is_empty() || request.key.len() > MAX_KEY_BYTES {
        return Err(Error::bad_request(format!(
            "key must have 1 to {MAX_KEY_BYTES} bytes"
        )));
    }
    if request.url.len() > MAX_URL_BYTES
        || !(request.url.starts_with("http://") || request.url.starts_with("https://"))
    {
        return Err(Error::bad_request(
            "url must be an http:// or https:// URL of at most 2048 bytes",
        ));
    }
    if let Some(existing) = delivery(&request.key)? {
        return Ok(answer(&existing, true));
    }
    let max_attempts = request.max_attempts.unwrap_or(DEFAULT_MAX_ATTEMPTS);
    if !(1..=MAX_MAX_ATTEMPTS).contains(&max_attempts) {
        return Err(Error::bad_request(format!(
            "max_attempts must be between 1 and {MAX_MAX_ATTEMPTS}"
        )));
    }
    let backoff_ms = request.backoff_ms.unwrap_or(DEFAULT_BACKOFF_MS);
    if !(1..=MAX_BACKOFF_MS).contains(&backoff_ms) {
        return Err(Error::bad_request(format!(
            "backoff_ms must be between 1 and {MAX_BACKOFF_MS}"
        )));
    }
    let (body, content_type) = match request.body {
        Value::String(text) => (text.into_bytes(), "text/plain; charset=utf-8"),
        other => (serde_json::to_vec(&other)?, "application/json"),
    };
    sql::execute(
        "INSERT INTO deliveries (key, url, body, content_type, status, attempts, max_attempts, \
         backoff_ms, created_at_ms) VALUES (?, ?, ?, ?, 'retrying', 0, ?, ?, ?)",
        (
            request.key.as_str(),
            request.url.as_str(),
            body,
            content_type,
            max_attempts,
            backoff_ms,
            time::now_ms(),
        ),
    )?;
    let delivery = attempt(&request.key)?;
    Ok(answer(&delivery, false))
}

fn answer(delivery: &Delivery, duplicate: bool) -> Response {
    let status = match delivery.status.as_str() {
        "delivered" => StatusCode::OK,
        _ if duplicate => StatusCode::OK,
        "retrying" => StatusCode::ACCEPTED,
        _ => StatusCode::BAD_GATEWAY,
    };
    let mut body = serde_json::to_value(delivery).unwrap_or(Value::Null);
    if let Value::Object(fields) = &mut body {
        fields.insert("duplicate".into(), duplicate.into());
        if let Some(error) = &delivery.last_error
            && delivery.status != "delivered"
        {
            fields.insert("error".into(), error.clone().into());
        }
    }
    Response::json(&body).with_status(status)
}

/// Makes the next attempt of delivery `key`, records it, and schedules the
/// one after if it failed. A host the class may not reach fails the event.
fn attempt(key: &str) -> Result<Delivery> {
    let (url, body, content_type, attempts, max_attempts, backoff_ms): (
        String,
        Vec<u8>,
        String,
        i64,
        i64,
        i64,
    ) = sql::query_one(
        "SELECT url, body, content_type, attempts, max_attempts, backoff_ms \
         FROM deliveries WHERE key = ?",
        (key,),
    )?
    .ok_or_else(|| Error::not_found("no such key"))?;
    let n = attempts + 1;
    let started = time::now_ms();
    let sent = http::fetch(
        http::Request::post(&url)
            .header("content-type", &content_type)
            .header("idempotency-key", key)
            .header("webhook-attempt", n.to_string())
            .timeout(RECEIVER_TIMEOUT)
            .body(body),
    );
    let duration_ms = time::now_ms() - started;
    let (http_status, error, answer) = match sent {
        Ok(response) => {
            let status = response.status();
            let answer = String::from_utf8_lossy(response.body());
            let answer: String = answer.chars().take(KEPT_ANSWER_BYTES).collect();
            let error = (!status.is_success()).then(|| format!("the receiver answered {status}"));
            (Some(i64::from(status.as_u16())), error, Some(answer))
        }
        Err(error) if error.kind() == FetchErrorKind::Denied => {
            // A setting to fix, not a failure to retry: nothing is kept.
            return Err(Error::new(
                StatusCode::FORBIDDEN,
                format!("{error} (webhook key {key:?})"),
            ));
        }
        Err(error) => (None, Some(error.to_string()), None),
    };
    sql::execute(
        "INSERT INTO attempts (key, n, at_ms, duration_ms, http_status, error, answer) \
         VALUES (?, ?, ?, ?, ?, ?, ?)",
        (
            key,
            n,
            started,
            duration_ms,
            http_status,
            error.clone(),
            answer,
        ),
    )?;
    match error {
        None => {
            sql::execute(
                "UPDATE deliveries SET status = 'delivered', attempts = ?, delivered_at_ms = ?, \
                 next_attempt_at_ms = NULL, last_error = NULL WHERE key = ?",
                (n, time::now_ms(), key),
            )?;
        }
        Some(error) if n < max_attempts => {
            let delay_ms = backoff_ms
                .saturating_mul(1_i64 << (n - 1).min(30))
                .min(MAX_BACKOFF_MS);
            let next = time::now_ms() + delay_ms;
            schedule::after(
                &format!("retry:{key}"),
                Duration::from_millis(delay_ms.unsigned_abs()),
                key,
            )?;
            sql::execute(
                "UPDATE deliveries SET status = 'retrying', attempts = ?, next_attempt_at_ms = ?, \
                 last_error = ? WHERE key = ?",
                (n, next, error, key),
            )?;
        }
        Some(error) => {
            sql::execute(
                "UPDATE deliveries SET status = 'failed', attempts = ?, next_attempt_at_ms = NULL, \
                 last_error = ? WHERE key = ?",
                (n, error, key),
            )?;
        }
    }
    delivery(key)?.ok_or_else(|| Error::internal("the delivery vanished"))
}

podhost_sdk::export!(Webhooks);
