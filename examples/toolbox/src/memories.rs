//! Memories: text with an embedding and metadata, searched by cosine
//! similarity.
//!
//! An embedding is stored as a BLOB of little-endian `f32`s with its norm,
//! and a search scans them in Rust, page by page (SQLite has no vector
//! index; a few tens of thousands of vectors scan in milliseconds).
//! A memory put without an `embedding` gets one from the embeddings
//! endpoint when the class has one ([`crate::embeddings`]), else none (it
//! is kept, but no search finds it).

use podhost_sdk::sql::Value as SqlValue;
use podhost_sdk::{Error, Response, Result, StatusCode, sql, time};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::embeddings;

const SCHEMA: &str = "CREATE TABLE IF NOT EXISTS memories (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    id TEXT NOT NULL UNIQUE,
    content TEXT NOT NULL,
    metadata TEXT,
    embedding BLOB,
    dims INTEGER,
    norm REAL,
    created_at INTEGER NOT NULL,
    updated_at INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS memories_by_dims ON memories (dims, seq);";

const MAX_DIMS: usize = 4096;
const MAX_CONTENT_BYTES: usize = 64 << 10;
const MAX_METADATA_BYTES: usize = 16 << 10;
const DEFAULT_LIMIT: usize = 10;
const MAX_LIMIT: usize = 100;
/// Bytes of vectors read per query while scanning (the host caps a
/// query's result at 32 MiB): 2048 vectors of 384 dimensions.
const SCAN_PAGE_BYTES: usize = 3 << 20;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PutMemory {
    content: String,
    #[serde(default)]
    embedding: Option<Vec<f32>>,
    #[serde(default)]
    metadata: Option<Value>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Search {
    #[serde(default)]
    embedding: Option<Vec<f32>>,
    #[serde(default)]
    query: Option<String>,
    #[serde(default)]
    limit: Option<usize>,
}

#[derive(Deserialize)]
struct Stored {
    id: String,
    content: String,
    metadata: Option<String>,
    embedding: Option<Vec<u8>>,
    created_at: i64,
    updated_at: i64,
}

#[derive(Serialize)]
struct Memory {
    id: String,
    content: String,
    metadata: Value,
    embedding: Option<Vec<f32>>,
    created_at: i64,
    updated_at: i64,
}

impl From<Stored> for Memory {
    fn from(s: Stored) -> Self {
        Memory {
            id: s.id,
            content: s.content,
            metadata: s
                .metadata
                .and_then(|m| serde_json::from_str(&m).ok())
                .unwrap_or(Value::Null),
            embedding: s.embedding.as_deref().map(decode),
            created_at: s.created_at,
            updated_at: s.updated_at,
        }
    }
}

fn ensure() -> Result<()> {
    sql::script(SCHEMA)?;
    Ok(())
}

fn find(id: &str) -> Result<Option<Stored>> {
    ensure()?;
    Ok(sql::query_as(
        "SELECT id, content, metadata, embedding, created_at, updated_at FROM memories WHERE id = ?",
        (id,),
    )?
    .pop())
}

/// 1 to [`MAX_DIMS`] finite numbers.
pub fn check_vector(vector: &[f32]) -> Result<()> {
    if vector.is_empty() || vector.len() > MAX_DIMS {
        return Err(Error::bad_request(format!(
            "an embedding has 1 to {MAX_DIMS} dimensions"
        )));
    }
    if !vector.iter().all(|x| x.is_finite()) {
        return Err(Error::bad_request("an embedding's numbers must be finite"));
    }
    Ok(())
}

fn encode(vector: &[f32]) -> Vec<u8> {
    vector.iter().flat_map(|x| x.to_le_bytes()).collect()
}

fn decode(bytes: &[u8]) -> Vec<f32> {
    bytes
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect()
}

fn norm(vector: &[f32]) -> f64 {
    vector
        .iter()
        .map(|&x| f64::from(x) * f64::from(x))
        .sum::<f64>()
        .sqrt()
}

pub fn put(id: &str, put: PutMemory) -> Result<Response> {
    if id.is_empty() {
        return Err(Error::bad_request("a memory needs an id"));
    }
    if put.content.len() > MAX_CONTENT_BYTES {
        return Err(Error::bad_request(format!(
            "`content` has at most {MAX_CONTENT_BYTES} bytes"
        )));
    }
    let metadata = match &put.metadata {
        None | Some(Value::Null) => None,
        Some(value) => Some(value.to_string()),
    };
    if metadata
        .as_ref()
        .is_some_and(|m| m.len() > MAX_METADATA_BYTES)
    {
        return Err(Error::bad_request(format!(
            "`metadata` has at most {MAX_METADATA_BYTES} bytes of JSON"
        )));
    }
    let embedding = match put.embedding {
        Some(vector) => {
            check_vector(&vector)
                .map_err(|e| Error::bad_request(format!("`embedding`: {}", e.message())))?;
            Some(vector)
        }
        None if embeddings::configured() => Some(embeddings::embed(&put.content)?),
        None => None,
    };
    let existed = find(id)?.is_some();
    let now = time::now_ms();
    sql::execute(
        "INSERT INTO memories (id, content, metadata, embedding, dims, norm, created_at, updated_at)
         VALUES (?, ?, ?, ?, ?, ?, ?, ?)
         ON CONFLICT (id) DO UPDATE SET content = excluded.content, metadata = excluded.metadata,
             embedding = excluded.embedding, dims = excluded.dims, norm = excluded.norm,
             updated_at = excluded.updated_at",
        (
            id,
            &put.content,
            metadata,
            embedding.as_deref().map(encode),
            embedding.as_ref().map(|v| v.len() as i64),
            embedding.as_deref().map(norm),
            now,
            now,
        ),
    )?;
    let memory = find(id)?.ok_or_else(|| Error::internal("the memory vanished"))?;
    let status = if existed {
        StatusCode::OK
    } else {
        StatusCode::CREATED
    };
    Ok(Response::json(&json!({ "memory": Memory::from(memory) })).with_status(status))
}

pub fn show(id: &str) -> Result<Response> {
    let memory = find(id)?.ok_or_else(|| Error::not_found("no such memory"))?;
    Ok(Response::json(&json!({ "memory": Memory::from(memory) })))
}

pub fn delete(id: &str) -> Result<Response> {
    ensure()?;
    if sql::execute("DELETE FROM memories WHERE id = ?", (id,))? == 0 {
        return Err(Error::not_found("no such memory"));
    }
    Ok(Response::json(&json!({ "deleted": true, "id": id })))
}

/// `POST /memories/search`: the `limit` memories closest to `embedding`
/// (or to `query`'s embedding), best first, among those of the same
/// number of dimensions.
pub fn search(search: Search) -> Result<Response> {
    let limit = search.limit.unwrap_or(DEFAULT_LIMIT);
    if !(1..=MAX_LIMIT).contains(&limit) {
        return Err(Error::bad_request(format!(
            "`limit` must be 1 to {MAX_LIMIT}"
        )));
    }
    let target = match (search.embedding, search.query) {
        (Some(vector), None) => {
            check_vector(&vector)
                .map_err(|e| Error::bad_request(format!("`embedding`: {}", e.message())))?;
            vector
        }
        (None, Some(query)) if !query.is_empty() => embeddings::embed(&query)?,
        (None, Some(_)) => return Err(Error::bad_request("`query` is empty")),
        _ => {
            return Err(Error::bad_request(
                "send either `embedding` (a list of numbers) or `query` (text)",
            ));
        }
    };
    let target_norm = norm(&target);
    if target_norm == 0.0 {
        return Err(Error::bad_request("the query's embedding is all zeros"));
    }
    ensure()?;
    let mut scored = scan(&target, target_norm)?;
    let best = limit.min(scored.len());
    if best < scored.len() {
        scored.select_nth_unstable_by(best, |a, b| b.1.total_cmp(&a.1));
        scored.truncate(best);
    }
    scored.sort_by(|a, b| b.1.total_cmp(&a.1));
    let mut results = Vec::with_capacity(scored.len());
    for (seq, score) in scored {
        let row: Option<(String, String, Option<String>)> = sql::query_one(
            "SELECT id, content, metadata FROM memories WHERE seq = ?",
            (seq,),
        )?;
        if let Some((id, content, metadata)) = row {
            let metadata = metadata
                .and_then(|m| serde_json::from_str::<Value>(&m).ok())
                .unwrap_or(Value::Null);
            results.push(
                json!({ "id": id, "content": content, "metadata": metadata, "score": score }),
            );
        }
    }
    Ok(Response::json(&json!({ "results": results })))
}

/// Every memory of the target's dimensions with its cosine similarity.
fn scan(target: &[f32], target_norm: f64) -> Result<Vec<(i64, f64)>> {
    let dims = target.len() as i64;
    let page_rows = (SCAN_PAGE_BYTES / (target.len() * 4)).max(1) as i64;
    let mut scored = Vec::new();
    let mut after = 0i64;
    loop {
        // Read in place (`exec`, not `query`): decoding would copy every
        // vector once more.
        let page = sql::exec(
            "SELECT seq, embedding, norm FROM memories WHERE dims = ? AND seq > ? ORDER BY seq LIMIT ?",
            (dims, after, page_rows),
        )?;
        for row in page.iter() {
            let (seq, bytes, norm) = match row.values() {
                [
                    SqlValue::Integer(seq),
                    SqlValue::Blob(bytes),
                    SqlValue::Real(norm),
                ] => (*seq, bytes, *norm),
                [SqlValue::Integer(seq), ..] => {
                    after = *seq;
                    continue;
                }
                _ => return Err(Error::internal("a memory's row has another shape")),
            };
            after = seq;
            if norm == 0.0 || bytes.len() != target.len() * 4 {
                continue;
            }
            let dot: f32 = bytes
                .chunks_exact(4)
                .zip(target)
                .map(|(c, &t)| f32::from_le_bytes([c[0], c[1], c[2], c[3]]) * t)
                .sum();
            scored.push((seq, f64::from(dot) / (norm * target_norm)));
        }
        if (page.len() as i64) < page_rows {
            break;
        }
    }
    Ok(scored)
}
