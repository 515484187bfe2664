//! SQL functions replaced on every object's connection because SQLite's own
//! take time proportional to the product of their arguments' lengths in one
//! VM step, where no interrupt can reach them: `instr('aaaa…', 'aa…ab')`
//! over megabytes ran for seconds past any limit. These find substrings in
//! linear time (`memchr::memmem`) and otherwise answer as SQLite's do.

use std::borrow::Cow;

use rusqlite::functions::{Context, FunctionFlags};
use rusqlite::types::{Value, ValueRef};
use rusqlite::{Connection, Error, Result};

/// Registers the replacements on `conn`.
pub fn replace_quadratic_functions(conn: &Connection, max_length: usize) -> Result<()> {
    let flags = FunctionFlags::SQLITE_UTF8
        | FunctionFlags::SQLITE_DETERMINISTIC
        | FunctionFlags::SQLITE_INNOCUOUS;
    conn.create_scalar_function("instr", 2, flags, instr)?;
    conn.create_scalar_function("replace", 3, flags, move |ctx| replace(ctx, max_length))
}

/// An argument as SQLite's string functions see it: its bytes, and whether
/// it is a blob. `None` for NULL.
fn argument<'a>(ctx: &'a Context<'_>, index: usize) -> Result<Option<(Cow<'a, [u8]>, bool)>> {
    Ok(match ctx.get_raw(index) {
        ValueRef::Null => None,
        ValueRef::Blob(bytes) => Some((Cow::Borrowed(bytes), true)),
        ValueRef::Text(bytes) => Some((Cow::Borrowed(bytes), false)),
        ValueRef::Integer(i) => Some((Cow::Owned(i.to_string().into_bytes()), false)),
        ValueRef::Real(r) => {
            // SQLite's own spelling of a real, which differs from Rust's.
            // SAFETY: the connection is only used for this one query,
            // within the call, on the calling thread.
            let conn = unsafe { ctx.get_connection()? };
            let text: String =
                conn.query_row("SELECT CAST(?1 AS TEXT)", [Value::Real(r)], |row| {
                    row.get(0)
                })?;
            Some((Cow::Owned(text.into_bytes()), false))
        }
    })
}

/// `instr(X, Y)`: 1 + the characters (bytes, if both are blobs) before the
/// first Y in X; 0 if none; NULL if either is NULL.
fn instr(ctx: &Context<'_>) -> Result<Option<i64>> {
    let (Some((haystack, blob_x)), Some((needle, blob_y))) = (argument(ctx, 0)?, argument(ctx, 1)?)
    else {
        return Ok(None);
    };
    let Some(at) = memchr::memmem::find(&haystack, &needle) else {
        return Ok(Some(0));
    };
    let before = if blob_x && blob_y {
        at
    } else {
        // Characters: every byte that does not continue a UTF-8 sequence.
        haystack[..at]
            .iter()
            .filter(|b| (**b & 0xC0) != 0x80)
            .count()
    };
    Ok(Some(
        i64::try_from(before).unwrap_or(i64::MAX).saturating_add(1),
    ))
}

/// `replace(X, Y, Z)`: X with every Y (left to right, not overlapping)
/// replaced by Z; X itself if Y is empty; NULL if any is NULL.
fn replace(ctx: &Context<'_>, max_length: usize) -> Result<Option<Value>> {
    let (Some((text, _)), Some((pattern, _)), Some((with, _))) =
        (argument(ctx, 0)?, argument(ctx, 1)?, argument(ctx, 2)?)
    else {
        return Ok(None);
    };
    if pattern.is_empty() {
        return Ok(Some(text_value(text.into_owned())));
    }
    let mut out = Vec::with_capacity(text.len());
    let mut from = 0;
    for at in memchr::memmem::find_iter(&text, &*pattern) {
        out.extend_from_slice(&text[from..at]);
        out.extend_from_slice(&with);
        from = at + pattern.len();
        if out.len() > max_length {
            return Err(too_big());
        }
    }
    out.extend_from_slice(&text[from..]);
    if out.len() > max_length {
        return Err(too_big());
    }
    Ok(Some(text_value(out)))
}

/// A string result (SQLite's string functions answer text, blobs too).
fn text_value(bytes: Vec<u8>) -> Value {
    Value::Text(match String::from_utf8(bytes) {
        Ok(text) => text,
        Err(invalid) => String::from_utf8_lossy(invalid.as_bytes()).into_owned(),
    })
}

fn too_big() -> Error {
    Error::SqliteFailure(
        rusqlite::ffi::Error::new(rusqlite::ffi::SQLITE_TOOBIG),
        Some("string or blob too big".into()),
    )
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, Instant};

    use super::*;

    fn both() -> (Connection, Connection) {
        let ours = Connection::open_in_memory().expect("db");
        replace_quadratic_functions(&ours, 16 << 20).expect("registered");
        (ours, Connection::open_in_memory().expect("db"))
    }

    #[test]
    fn answers_as_sqlite_does() {
        let (ours, sqlite) = both();
        for sql in [
            "SELECT instr('hello', 'l')",
            "SELECT instr('héllo wörld', 'wö')",
            "SELECT instr('abc', '')",
            "SELECT instr('', '')",
            "SELECT instr('abc', 'x')",
            "SELECT instr(NULL, 'x')",
            "SELECT instr('x', NULL)",
            "SELECT instr(x'00010203', x'0203')",
            "SELECT instr(12345, 34)",
            "SELECT instr(1.5e20, 'e')",
            "SELECT replace('a.b.c', '.', '::')",
            "SELECT replace('aaaa', 'aa', 'b')",
            "SELECT replace('héllo', 'é', 'e')",
            "SELECT replace('abc', '', 'x')",
            "SELECT typeof(replace(x'6162', '', 'x'))",
            "SELECT replace(NULL, 'a', 'b')",
            "SELECT replace('a', 'a', NULL)",
            "SELECT replace(123123, 2, 9.5)",
            "SELECT typeof(replace(x'616263', 'b', 'x'))",
        ] {
            let answer = |conn: &Connection| {
                conn.query_row(sql, [], |row| row.get::<_, Value>(0))
                    .expect(sql)
            };
            assert_eq!(answer(&ours), answer(&sqlite), "{sql}");
        }
    }

    #[test]
    fn long_arguments_take_linear_time() {
        let (ours, _) = both();
        let started = Instant::now();
        let found: i64 = ours
            .query_row(
                "SELECT instr(printf('%.*c', 8000000, 'a'), printf('%.*c', 100000, 'a') || 'b')",
                [],
                |row| row.get(0),
            )
            .expect("instr");
        assert_eq!(found, 0);
        let replaced: i64 = ours
            .query_row(
                "SELECT length(replace(printf('%.*c', 8000000, 'a'), printf('%.*c', 100000, 'a') || 'b', 'x'))",
                [],
                |row| row.get(0),
            )
            .expect("replace");
        assert_eq!(replaced, 8_000_000);
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "{:?}",
            started.elapsed()
        );
    }

    #[test]
    fn a_result_past_the_length_limit_is_refused() {
        let ours = Connection::open_in_memory().expect("db");
        replace_quadratic_functions(&ours, 1000).expect("registered");
        let error = ours
            .query_row(
                "SELECT replace(printf('%.*c', 600, 'a'), 'a', 'bb')",
                [],
                |row| row.get::<_, String>(0),
            )
            .expect_err("too big");
        // rusqlite reports a function's error with SQLite's generic code.
        assert!(error.to_string().contains("too big"), "{error}");
    }
}
