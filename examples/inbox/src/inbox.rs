//! One inbox: mail in through its handle, read by its owner's API key.
//!
//! - `POST /incoming` (reached as `/handles/inbox/{handle}/incoming`): a
//!   raw RFC 5322 message, with `Authorization: Bearer <INGRESS_TOKEN>`
//!   (or `X-Ingress-Token`), or the admin token. `201 {"message": {...}}`.
//! - With the inbox's key (`/key/...`): `GET /messages?unread=true&limit=
//!   &before=` (newest first; `next` is the `before` of the next page),
//!   `GET /messages/{id}`, `PATCH /messages/{id} {"read": bool}`, `DELETE
//!   /messages/{id}`, `GET /settings`, `PUT /settings {...}` (a JSON
//!   object of the owner's, replaced whole).
//! - `POST /setup {"handle"}` from the `inboxes` registry only.
//!
//! Everyone else gets 401: the class is `public` so that mail can come
//! in by handle, and the ingress token can do nothing but deliver.

use std::sync::LazyLock;

use podhost_sdk::caller::Caller;
use podhost_sdk::sql::{self, Value};
use podhost_sdk::{
    Error, Method, Params, Request, Response, Result, Router, StatusCode, config, objects, time,
};
use serde::Deserialize;
use serde_json::{Map, Value as Json, json};

use crate::mail;

/// Most messages one page lists, and the default.
const MAX_PAGE: i64 = 200;
const DEFAULT_PAGE: i64 = 50;
/// The largest settings document, in bytes of JSON.
const MAX_SETTINGS_BYTES: usize = 16 * 1024;

struct Inbox;

static OWNER: LazyLock<Router<Inbox>> = LazyLock::new(|| {
    Router::<Inbox>::new()
        .get("/messages", |_, req, _| list(&req))
        .get("/messages/:id", |_, _, params| {
            let message = find(id(params)?)?;
            Ok(Response::json(&json!({ "message": message })))
        })
        .patch("/messages/:id", |_, req, params| mark(&req, id(params)?))
        .delete("/messages/:id", |_, _, params| {
            let id = id(params)?;
            if sql::execute("DELETE FROM messages WHERE id = ?1", [id])? == 0 {
                return Err(no_message());
            }
            Ok(Response::json(&json!({ "deleted": true, "id": id })))
        })
        .get("/settings", |_, _, _| {
            Ok(Response::json(&json!({ "settings": settings()? })))
        })
        .put("/settings", |_, req, _| put_settings(&req))
});

pub fn fetch(req: Request) -> Result<Response> {
    match (req.method(), req.path()) {
        (&Method::POST, "/incoming") => {
            if !may_deliver(&req) {
                return Err(Error::unauthorized(
                    "delivering mail needs the ingress token: `Authorization: Bearer <INGRESS_TOKEN>`",
                ));
            }
            deliver(&req)
        }
        (&Method::POST, "/setup") => {
            match req.caller() {
                Some(Caller::Object(from)) if from.class == "inboxes" => {}
                _ => {
                    return Err(Error::forbidden(
                        "only the inboxes registry sets an inbox up",
                    ));
                }
            }
            setup(&req)
        }
        _ => {
            match req.caller() {
                Some(Caller::Key(_) | Caller::Admin) => {}
                _ => {
                    return Err(Error::unauthorized(
                        "this needs the inbox's API key: `Authorization: Bearer pk_...` at /key/...",
                    ));
                }
            }
            OWNER.handle(&mut Inbox, req)
        }
    }
}

/// The operator, or the ingress token in `Authorization: Bearer` or
/// `X-Ingress-Token`, compared without telling how much of it was right.
fn may_deliver(req: &Request) -> bool {
    if matches!(req.caller(), Some(Caller::Admin)) {
        return true;
    }
    let Some(expected) = config::secret("INGRESS_TOKEN") else {
        return false;
    };
    let bearer = req
        .header("authorization")
        .and_then(|value| value.split_once(' '))
        .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
        .map(|(_, token)| token.trim());
    let given = bearer.or_else(|| req.header("x-ingress-token").map(str::trim));
    given.is_some_and(|given| same_secret(given.as_bytes(), expected.expose().as_bytes()))
}

/// Compares in time that depends only on the lengths.
fn same_secret(given: &[u8], expected: &[u8]) -> bool {
    if expected.is_empty() {
        return false;
    }
    let mut difference = u8::from(given.len() != expected.len());
    for (at, byte) in given.iter().enumerate() {
        difference |= byte ^ expected[at % expected.len()];
    }
    difference == 0
}

fn deliver(req: &Request) -> Result<Response> {
    let parsed = mail::parse(req.body())?;
    let to = serde_json::to_string(&parsed.to).map_err(|e| Error::internal(e.to_string()))?;
    let now = time::now_ms();
    let params: Vec<Value> = vec![
        parsed.from.clone().into(),
        to.into(),
        parsed.subject.clone().into(),
        parsed.text.clone().into(),
        now.into(),
    ];
    #[cfg(not(feature = "two-migrations"))]
    let inserted = {
        let mut params = params;
        params.push(parsed.message_id.clone().map_or(Value::Null, Value::from));
        sql::exec(
            "INSERT INTO messages (sender, recipients, subject, text, received_at, message_id)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            params,
        )?
    };
    #[cfg(feature = "two-migrations")]
    let inserted = sql::exec(
        "INSERT INTO messages (sender, recipients, subject, text, received_at)
         VALUES (?1, ?2, ?3, ?4, ?5)",
        params,
    )?;
    let id = inserted.last_insert_rowid();
    // Last, so that a failing report fails the delivery (the sender tries
    // again) and the totals never count a message that was not kept.
    report("/delivered", json!({ "bytes": req.body().len() }))?;
    let message = find(id)?;
    Ok(Response::json(&json!({ "message": message })).with_status(StatusCode::CREATED))
}

/// Tells `stats/global` what happened.
pub fn report(path: &str, body: Json) -> Result<()> {
    let bytes = serde_json::to_vec(&body).map_err(|e| Error::internal(e.to_string()))?;
    let response = objects::get("stats", "global")
        .call(Method::POST, path, bytes)
        .map_err(|error| error.into_error())?;
    if !response.status().is_success() {
        return Err(Error::new(
            StatusCode::SERVICE_UNAVAILABLE,
            format!("the stats object answered {}", response.status()),
        ));
    }
    Ok(())
}

#[derive(Deserialize)]
struct Setup {
    handle: String,
}

fn setup(req: &Request) -> Result<Response> {
    let setup: Setup = req.json()?;
    sql::execute(
        "INSERT INTO settings (id, handle) VALUES (1, ?1)
         ON CONFLICT (id) DO UPDATE SET handle = excluded.handle",
        [setup.handle],
    )?;
    Ok(Response::json(&json!({ "ok": true })))
}

fn id(params: &Params) -> Result<i64> {
    params
        .number("id")?
        .ok_or_else(|| Error::bad_request("`id` must be a message id"))
}

fn no_message() -> Error {
    Error::not_found("no such message in this inbox")
}

/// The columns a message is shown with (`text` only alone).
const SUMMARY: &str = "id, sender, recipients, subject, received_at, read";

fn summary(row: &sql::Row<'_>) -> Result<Json> {
    let recipients: String = row.get(2)?;
    Ok(json!({
        "id": row.get::<i64>(0)?,
        "from": row.get::<String>(1)?,
        "to": serde_json::from_str::<Json>(&recipients).unwrap_or(Json::Null),
        "subject": row.get::<String>(3)?,
        "received_at": row.get::<i64>(4)?,
        "read": row.get::<i64>(5)? != 0,
    }))
}

fn find(id: i64) -> Result<Json> {
    let rows = sql::exec(
        &format!("SELECT {SUMMARY}, text FROM messages WHERE id = ?1"),
        [id],
    )?;
    let row = rows.iter().next().ok_or_else(no_message)?;
    let mut message = summary(&row)?;
    message["text"] = Json::String(row.get(6)?);
    #[cfg(not(feature = "two-migrations"))]
    {
        let found: Option<Option<String>> =
            sql::query_one("SELECT message_id FROM messages WHERE id = ?1", [id])?;
        message["message_id"] = found.flatten().map_or(Json::Null, Json::String);
    }
    Ok(message)
}

fn list(req: &Request) -> Result<Response> {
    let unread = match req.query_param("unread").as_deref() {
        None | Some("false") => false,
        Some("true") => true,
        Some(_) => return Err(Error::bad_request("`unread` must be true or false")),
    };
    let limit = match req.query_param("limit") {
        None => DEFAULT_PAGE,
        Some(text) => text
            .parse::<i64>()
            .ok()
            .filter(|n| (1..=MAX_PAGE).contains(n))
            .ok_or_else(|| Error::bad_request(format!("`limit` must be 1 to {MAX_PAGE}")))?,
    };
    let before = match req.query_param("before") {
        None => i64::MAX,
        Some(text) => text
            .parse::<i64>()
            .map_err(|_| Error::bad_request("`before` must be a message id"))?,
    };
    let filter = if unread { " AND read = 0" } else { "" };
    let rows = sql::exec(
        &format!("SELECT {SUMMARY} FROM messages WHERE id < ?1{filter} ORDER BY id DESC LIMIT ?2"),
        [before, limit + 1],
    )?;
    let mut messages = rows
        .iter()
        .map(|row| summary(&row))
        .collect::<Result<Vec<_>>>()?;
    let next = if messages.len() as i64 > limit {
        messages.truncate(limit as usize);
        messages.last().map(|last| last["id"].clone())
    } else {
        None
    };
    let unread_count: i64 =
        sql::query_one("SELECT count(*) FROM messages WHERE read = 0", ())?.unwrap_or(0);
    Ok(Response::json(
        &json!({ "messages": messages, "next": next, "unread": unread_count }),
    ))
}

fn mark(req: &Request, id: i64) -> Result<Response> {
    let body: Map<String, Json> = req.json()?;
    let read = body
        .get("read")
        .and_then(Json::as_bool)
        .ok_or_else(|| Error::bad_request("`read` must be true or false"))?;
    if sql::execute(
        "UPDATE messages SET read = ?1 WHERE id = ?2",
        [i64::from(read), id],
    )? == 0
    {
        return Err(no_message());
    }
    Ok(Response::json(&json!({ "message": find(id)? })))
}

/// The owner's settings, with the inbox's handle.
fn settings() -> Result<Json> {
    let row: Option<(Option<String>, String)> =
        sql::query_one("SELECT handle, document FROM settings WHERE id = 1", ())?;
    let (handle, document) = row.unwrap_or((None, "{}".into()));
    let mut settings: Map<String, Json> = serde_json::from_str(&document).unwrap_or_default();
    settings.insert("handle".into(), handle.map_or(Json::Null, Json::String));
    Ok(Json::Object(settings))
}

fn put_settings(req: &Request) -> Result<Response> {
    if req.body().len() > MAX_SETTINGS_BYTES {
        return Err(Error::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("settings are at most {MAX_SETTINGS_BYTES} bytes of JSON"),
        ));
    }
    let Json::Object(mut document) = req.json::<Json>()? else {
        return Err(Error::bad_request("settings must be a JSON object"));
    };
    // The handle is the registry's to set, not the owner's.
    document.remove("handle");
    let text = Json::Object(document).to_string();
    sql::execute(
        "INSERT INTO settings (id, document) VALUES (1, ?1)
         ON CONFLICT (id) DO UPDATE SET document = excluded.document",
        [text],
    )?;
    Ok(Response::json(&json!({ "settings": settings()? })))
}
