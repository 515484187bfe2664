//! Changes waiting for their batch. Creates and updates wait until 150 ms
//! after the first of them (the `flush` task), a delete flushes at once;
//! a flush turns what waits into batches for every client
//! ([`delivery::deliver`]). The waiting changes are rows of `outbox`, so
//! a hibernation or restart in between loses none.

use std::time::Duration;

use podhost_sdk::{Result, schedule};
use serde_json::{Value, json};

use crate::delivery;
use crate::note::Note;
use crate::origin::Origin;

/// The task that flushes the outbox.
pub const FLUSH: &str = "flush";
/// How long creates and updates are gathered into one batch.
const WINDOW: Duration = Duration::from_millis(150);
/// Largest batch text, so that a burst of big notes is several messages
/// rather than one over a socket's limits.
const MAX_BATCH_BYTES: usize = 256 << 10;

/// Records an upsert of `note`, to go out at the end of the window.
pub fn upsert(note: &Note, origin: &Origin) -> Result<()> {
    push(json!({ "op": "upsert", "note": note }), origin)?;
    if schedule::when(FLUSH)?.is_none() {
        schedule::after(FLUSH, WINDOW, &())?;
    }
    Ok(())
}

/// Records a delete of note `id` and sends it (with what waited) now.
pub fn delete(id: i64, origin: &Origin) -> Result<()> {
    push(json!({ "op": "delete", "id": id }), origin)?;
    flush()
}

fn push(mut change: Value, origin: &Origin) -> Result<()> {
    if let Some(client_id) = &origin.client_id {
        change["client_id"] = client_id.as_str().into();
    }
    if let Some(request_id) = &origin.request_id {
        change["request_id"] = request_id.as_str().into();
    }
    podhost_sdk::sql::execute(
        "INSERT INTO outbox (change) VALUES (?)",
        (change.to_string(),),
    )?;
    Ok(())
}

/// Sends every waiting change, in order, as one batch (or several when
/// they are many bytes).
pub fn flush() -> Result<()> {
    schedule::cancel(FLUSH)?;
    let changes: Vec<String> =
        podhost_sdk::sql::query("SELECT change FROM outbox ORDER BY id", ())?;
    if changes.is_empty() {
        return Ok(());
    }
    podhost_sdk::sql::execute("DELETE FROM outbox", ())?;
    let mut batch = String::from("[");
    for change in changes {
        if batch.len() > 1 && batch.len() + change.len() > MAX_BATCH_BYTES {
            batch.push(']');
            delivery::deliver(&batch)?;
            batch = String::from("[");
        }
        if batch.len() > 1 {
            batch.push(',');
        }
        batch.push_str(&change);
    }
    batch.push(']');
    delivery::deliver(&batch)
}
