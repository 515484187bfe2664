//! `podhost:object/kv`: a sorted key-value store in the object's
//! `_podhost_kv` table, so its writes commit with the event's SQL.

use rusqlite::types::Value as SqlValue;
use rusqlite::{Connection, OptionalExtension, params, params_from_iter};

use crate::bindings::podhost::object::kv::{Host, ListOptions};
use crate::bindings::{StorageError, StorageErrorCode};
use crate::capabilities::ObjectState;
use crate::config::KV;

impl Host for ObjectState {
    fn get(&mut self, key: String) -> Result<Option<Vec<u8>>, StorageError> {
        check_key(&key)?;
        Ok(get(self.transaction()?.host(), &key)?)
    }

    fn get_many(&mut self, keys: Vec<String>) -> Result<Vec<Option<Vec<u8>>>, StorageError> {
        check_batch(keys.len())?;
        keys.iter().try_for_each(|key| check_key(key))?;
        let conn = self.transaction()?.host();
        Ok(keys
            .iter()
            .map(|key| get(conn, key))
            .collect::<rusqlite::Result<_>>()?)
    }

    fn put(&mut self, key: String, value: Vec<u8>) -> Result<(), StorageError> {
        check_entry(&key, &value)?;
        let db = self.transaction()?;
        Ok(db.host_write(|conn| put(conn, &key, &value))?)
    }

    fn put_many(&mut self, entries: Vec<(String, Vec<u8>)>) -> Result<(), StorageError> {
        check_batch(entries.len())?;
        entries
            .iter()
            .try_for_each(|(key, value)| check_entry(key, value))?;
        let db = self.transaction()?;
        Ok(db.host_write(|conn| {
            entries
                .iter()
                .try_for_each(|(key, value)| put(conn, key, value))
        })?)
    }

    fn delete(&mut self, key: String) -> Result<bool, StorageError> {
        check_key(&key)?;
        let conn = self.transaction()?.host();
        let deleted = conn
            .prepare_cached("DELETE FROM _podhost_kv WHERE key = ?1")?
            .execute([&key])?;
        Ok(deleted > 0)
    }

    fn list(&mut self, options: ListOptions) -> Result<Vec<(String, Vec<u8>)>, StorageError> {
        let conn = self.transaction()?.host();
        list(conn, &options)
    }

    fn delete_all(&mut self) -> Result<(), StorageError> {
        let conn = self.transaction()?.host();
        conn.prepare_cached("DELETE FROM _podhost_kv")?
            .execute([])?;
        Ok(())
    }
}

fn get(conn: &Connection, key: &str) -> rusqlite::Result<Option<Vec<u8>>> {
    conn.prepare_cached("SELECT value FROM _podhost_kv WHERE key = ?1")?
        .query_row([key], |row| row.get(0))
        .optional()
}

fn put(conn: &Connection, key: &str, value: &[u8]) -> rusqlite::Result<()> {
    conn.prepare_cached(
        "INSERT INTO _podhost_kv (key, value) VALUES (?1, ?2)
         ON CONFLICT (key) DO UPDATE SET value = excluded.value",
    )?
    .execute(params![key, value])?;
    Ok(())
}

/// Lists keys in `[lower, upper)`, where the bounds combine `start`, `end`
/// and `prefix`, so SQLite walks only the matching part of the index.
fn list(conn: &Connection, options: &ListOptions) -> Result<Vec<(String, Vec<u8>)>, StorageError> {
    let prefix = options.prefix.as_deref().unwrap_or("");
    let lower = match options.start.as_deref() {
        Some(start) if start > prefix => start,
        _ => prefix,
    };
    let upper = match (options.end.as_deref(), prefix_successor(prefix)) {
        (Some(end), Some(after_prefix)) => Some(if end < after_prefix.as_str() {
            end.to_string()
        } else {
            after_prefix
        }),
        (Some(end), None) => Some(end.to_string()),
        (None, bound) => bound,
    };
    let order = if options.reverse { "DESC" } else { "ASC" };
    let limit = options.limit.map_or(-1, i64::from);
    let (mut stmt, bounds) = match &upper {
        Some(upper) => (
            conn.prepare_cached(&format!(
                "SELECT key, value FROM _podhost_kv WHERE key >= ?1 AND key < ?2 ORDER BY key {order} LIMIT ?3"
            ))?,
            vec![SqlValue::from(lower.to_string()), SqlValue::from(upper.clone()), SqlValue::from(limit)],
        ),
        None => (
            conn.prepare_cached(&format!(
                "SELECT key, value FROM _podhost_kv WHERE key >= ?1 ORDER BY key {order} LIMIT ?2"
            ))?,
            vec![SqlValue::from(lower.to_string()), SqlValue::from(limit)],
        ),
    };
    let mut rows = stmt.query(params_from_iter(bounds))?;
    let mut entries = Vec::new();
    let mut bytes = 0usize;
    while let Some(row) = rows.next()? {
        let key: String = row.get(0)?;
        let value: Vec<u8> = row.get(1)?;
        bytes += key.len() + value.len();
        check_list_size(bytes)?;
        entries.push((key, value));
    }
    Ok(entries)
}

/// The smallest string greater than every string starting with `prefix`,
/// or `None` if there is none (empty prefix, or only `char::MAX`).
fn prefix_successor(prefix: &str) -> Option<String> {
    let mut chars: Vec<char> = prefix.chars().collect();
    while let Some(last) = chars.pop() {
        let next = (last as u32 + 1..=char::MAX as u32).find_map(char::from_u32);
        if let Some(next) = next {
            chars.push(next);
            return Some(chars.into_iter().collect());
        }
    }
    None
}

fn check_list_size(bytes: usize) -> Result<(), StorageError> {
    if bytes > KV.max_list_bytes {
        return Err(StorageError::new(
            StorageErrorCode::TooBig,
            format!(
                "the listed entries exceed {} bytes: pass a limit and list in pages",
                KV.max_list_bytes
            ),
        ));
    }
    Ok(())
}

fn check_key(key: &str) -> Result<(), StorageError> {
    if key.len() > KV.max_key_bytes {
        return Err(StorageError::new(
            StorageErrorCode::TooBig,
            format!(
                "the key is {} bytes long; the limit is {}",
                key.len(),
                KV.max_key_bytes
            ),
        ));
    }
    Ok(())
}

fn check_entry(key: &str, value: &[u8]) -> Result<(), StorageError> {
    check_key(key)?;
    if value.len() > KV.max_value_bytes {
        return Err(StorageError::new(
            StorageErrorCode::TooBig,
            format!(
                "the value of {key:?} is {} bytes; the limit is {}",
                value.len(),
                KV.max_value_bytes
            ),
        ));
    }
    Ok(())
}

fn check_batch(len: usize) -> Result<(), StorageError> {
    if len > KV.max_batch {
        return Err(StorageError::new(
            StorageErrorCode::TooBig,
            format!("{len} keys in one call; the limit is {}", KV.max_batch),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn store() -> Connection {
        let conn = Connection::open_in_memory().expect("in-memory database");
        conn.execute_batch(
            "CREATE TABLE _podhost_kv (key TEXT PRIMARY KEY, value BLOB NOT NULL) WITHOUT ROWID",
        )
        .expect("schema");
        for key in ["a", "app", "apple", "apq", "b", "\u{10FFFF}x"] {
            put(&conn, key, key.as_bytes()).expect("put");
        }
        conn
    }

    fn keys(
        conn: &Connection,
        prefix: Option<&str>,
        start: Option<&str>,
        end: Option<&str>,
        limit: Option<u32>,
        reverse: bool,
    ) -> Vec<String> {
        let options = ListOptions {
            prefix: prefix.map(Into::into),
            start: start.map(Into::into),
            end: end.map(Into::into),
            limit,
            reverse,
        };
        list(conn, &options)
            .expect("list")
            .into_iter()
            .map(|(k, _)| k)
            .collect()
    }

    #[test]
    fn list_by_prefix_range_limit_and_order() {
        let conn = store();
        assert_eq!(
            keys(&conn, Some("ap"), None, None, None, false),
            ["app", "apple", "apq"]
        );
        assert_eq!(
            keys(&conn, Some("app"), None, None, None, true),
            ["apple", "app"]
        );
        assert_eq!(
            keys(&conn, None, Some("apple"), Some("b"), None, false),
            ["apple", "apq"]
        );
        assert_eq!(
            keys(&conn, Some("ap"), Some("apple"), Some("apq"), None, false),
            ["apple"]
        );
        assert_eq!(
            keys(&conn, None, None, None, Some(2), true),
            ["\u{10FFFF}x", "b"]
        );
        assert_eq!(
            keys(&conn, Some("\u{10FFFF}"), None, None, None, false),
            ["\u{10FFFF}x"]
        );
        assert_eq!(
            keys(&conn, None, None, None, Some(0), false),
            Vec::<String>::new()
        );
    }

    #[test]
    fn successor_skips_surrogates_and_maximum() {
        assert_eq!(prefix_successor("ab").as_deref(), Some("ac"));
        assert_eq!(prefix_successor("a\u{D7FF}").as_deref(), Some("a\u{E000}"));
        assert_eq!(prefix_successor("a\u{10FFFF}").as_deref(), Some("b"));
        assert_eq!(prefix_successor(""), None);
    }

    #[test]
    fn limits_are_enforced() {
        assert!(check_key(&"k".repeat(KV.max_key_bytes)).is_ok());
        assert_eq!(
            check_key(&"k".repeat(KV.max_key_bytes + 1)).map_err(|e| e.code),
            Err(StorageErrorCode::TooBig)
        );
        assert!(check_entry("k", &vec![0; KV.max_value_bytes]).is_ok());
        assert_eq!(
            check_entry("k", &vec![0; KV.max_value_bytes + 1]).map_err(|e| e.code),
            Err(StorageErrorCode::TooBig)
        );
        assert!(check_batch(KV.max_batch).is_ok());
        assert_eq!(
            check_batch(KV.max_batch + 1).map_err(|e| e.code),
            Err(StorageErrorCode::TooBig)
        );
        assert!(check_list_size(KV.max_list_bytes).is_ok());
        assert!(check_list_size(KV.max_list_bytes + 1).is_err());
    }
}
