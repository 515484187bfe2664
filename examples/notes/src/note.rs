//! A note: its fields, the limits on them, and its row in `notes`.

use podhost_sdk::{Error, Result, StatusCode, sql, time};
use serde::{Deserialize, Serialize};

/// Longest title, in bytes.
pub const MAX_TITLE_BYTES: usize = 1024;
/// Longest body, in bytes.
pub const MAX_BODY_BYTES: usize = 64 << 10;
/// Most notes one user keeps.
pub const MAX_NOTES: i64 = 1000;
/// Most bytes all of a user's notes take as JSON, so that the list stays
/// one response well under the host's response cap (32 MiB by default)
/// whatever the notes hold (escaping can make a body 6 times longer).
pub const MAX_TOTAL_JSON_BYTES: i64 = 16 << 20;

/// A note as stored and as clients see it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Note {
    pub id: i64,
    pub title: String,
    pub body: String,
    pub version: i64,
    pub created_at: i64,
    pub updated_at: i64,
}

/// What a client may set: checked before anything is written.
pub struct Content<'a> {
    pub title: &'a str,
    pub body: &'a str,
}

impl Content<'_> {
    pub fn check(&self) -> Result<()> {
        if self.title.len() > MAX_TITLE_BYTES {
            return Err(Error::bad_request(format!(
                "`title` has {} bytes; at most {MAX_TITLE_BYTES} are allowed",
                self.title.len()
            )));
        }
        if self.body.len() > MAX_BODY_BYTES {
            return Err(Error::bad_request(format!(
                "`body` has {} bytes; at most {MAX_BODY_BYTES} are allowed",
                self.body.len()
            )));
        }
        Ok(())
    }
}

/// A `version` as a client sends it: a positive integer.
pub fn check_version(version: u64) -> Result<i64> {
    i64::try_from(version)
        .ok()
        .filter(|version| *version >= 1)
        .ok_or_else(|| Error::bad_request("`version` must be a positive integer"))
}

const COLUMNS: &str = "id, title, body, version, created_at, updated_at";

/// Every note, most recently updated first.
pub fn all() -> Result<Vec<Note>> {
    Ok(sql::query_as(
        &format!("SELECT {COLUMNS} FROM notes ORDER BY updated_at DESC, id DESC"),
        (),
    )?)
}

pub fn find(id: i64) -> Result<Option<Note>> {
    Ok(sql::query_as(&format!("SELECT {COLUMNS} FROM notes WHERE id = ?"), (id,))?.pop())
}

pub fn insert(content: &Content<'_>) -> Result<Note> {
    let count: i64 = sql::query_one("SELECT count(*) FROM notes", ())?.unwrap_or(0);
    if count >= MAX_NOTES {
        return Err(Error::new(
            StatusCode::FORBIDDEN,
            format!("a user keeps at most {MAX_NOTES} notes; delete some first"),
        )
        .with_code("too_many_notes"));
    }
    let now = time::now_ms();
    let mut note = Note {
        id: 0,
        title: content.title.to_string(),
        body: content.body.to_string(),
        version: 1,
        created_at: now,
        updated_at: now,
    };
    grow(json_bytes(&note)?)?;
    note.id = sql::exec(
        "INSERT INTO notes (title, body, version, created_at, updated_at) VALUES (?, ?, 1, ?, ?)",
        (content.title, content.body, now, now),
    )?
    .last_insert_rowid();
    Ok(note)
}

/// Writes `content` over `note` as its next version.
pub fn update(note: Note, content: &Content<'_>) -> Result<Note> {
    let updated = Note {
        id: note.id,
        title: content.title.to_string(),
        body: content.body.to_string(),
        version: note.version + 1,
        // Never backwards, even if the clock is.
        created_at: note.created_at,
        updated_at: time::now_ms().max(note.updated_at),
    };
    grow(json_bytes(&updated)? - json_bytes(&note)?)?;
    sql::execute(
        "UPDATE notes SET title = ?, body = ?, version = ?, updated_at = ? WHERE id = ?",
        (
            &updated.title,
            &updated.body,
            updated.version,
            updated.updated_at,
            updated.id,
        ),
    )?;
    Ok(updated)
}

/// Removes note `id`; returns whether it existed.
pub fn remove(id: i64) -> Result<bool> {
    let Some(note) = find(id)? else {
        return Ok(false);
    };
    grow(-json_bytes(&note)?)?;
    Ok(sql::execute("DELETE FROM notes WHERE id = ?", (id,))? > 0)
}

/// How many bytes `note` takes in the list.
fn json_bytes(note: &Note) -> Result<i64> {
    Ok(i64::try_from(serde_json::to_string(note)?.len()).unwrap_or(i64::MAX))
}

/// Adds `delta` to the notes' running total (`usage`), refusing to grow
/// past [`MAX_TOTAL_JSON_BYTES`].
fn grow(delta: i64) -> Result<()> {
    let total: i64 = sql::query_one("SELECT bytes FROM usage", ())?.unwrap_or(0);
    if delta > 0 && total.saturating_add(delta) > MAX_TOTAL_JSON_BYTES {
        return Err(Error::new(
            StatusCode::FORBIDDEN,
            format!(
                "a user's notes take at most {} MiB; this write would need {} bytes more than are left",
                MAX_TOTAL_JSON_BYTES >> 20,
                total.saturating_add(delta) - MAX_TOTAL_JSON_BYTES
            ),
        )
        .with_code("notes_full"));
    }
    sql::execute("UPDATE usage SET bytes = max(0, bytes + ?)", (delta,))?;
    Ok(())
}
