//! A write retried with the same client id and request id (its answer was
//! lost: a dropped connection, a restart) gets the first answer again
//! instead of being made twice. Kept for a day, the newest 200 per object.

use podhost_sdk::{Result, StatusCode, sql, time};

use crate::origin::Origin;
use crate::writes::Outcome;

/// Answers remembered at most.
const KEEP: i64 = 200;
/// How long an answer is remembered, in milliseconds.
const KEEP_MS: i64 = 24 * 3600 * 1000;

/// The answer a write with this origin had, if it was made already.
pub fn find(origin: &Origin) -> Result<Option<Outcome>> {
    let (Some(client_id), Some(request_id)) = (&origin.client_id, &origin.request_id) else {
        return Ok(None);
    };
    let row: Option<(i64, String)> = sql::query_one(
        "SELECT status, body FROM answers WHERE client_id = ? AND request_id = ? AND at > ?",
        (
            client_id.as_str(),
            request_id.as_str(),
            time::now_ms() - KEEP_MS,
        ),
    )?;
    let Some((status, body)) = row else {
        return Ok(None);
    };
    Ok(Some(Outcome {
        status: u16::try_from(status)
            .ok()
            .and_then(|status| StatusCode::from_u16(status).ok())
            .unwrap_or(StatusCode::OK),
        body: serde_json::from_str(&body)?,
    }))
}

/// Remembers the answer of a write made with this origin.
pub fn remember(origin: &Origin, outcome: &Outcome) -> Result<()> {
    let (Some(client_id), Some(request_id)) = (&origin.client_id, &origin.request_id) else {
        return Ok(());
    };
    let now = time::now_ms();
    sql::execute(
        "INSERT OR REPLACE INTO answers (client_id, request_id, status, body, at) VALUES (?, ?, ?, ?, ?)",
        (
            client_id.as_str(),
            request_id.as_str(),
            i64::from(outcome.status.as_u16()),
            outcome.body.to_string(),
            now,
        ),
    )?;
    sql::execute(
        "DELETE FROM answers WHERE at <= ? OR rowid NOT IN (SELECT rowid FROM answers ORDER BY at DESC, rowid DESC LIMIT ?)",
        (now - KEEP_MS, KEEP),
    )?;
    Ok(())
}
