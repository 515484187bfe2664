//! `/admin/objects/{class}/{name}` (`GET`), `.../query`, `.../export` and
//! `.../import`: the operator's look inside an object, its backup and
//! restore. Each goes through the object's actor, between its batches and
//! without an instance (see `object::admin`); the files in transit live in
//! the data directory's `tmp/`. A tenant's token works for the objects of
//! its own classes (another's class is `404`, as for `DELETE`).

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;

use axum::Json;
use axum::body::{Body, Bytes};
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, header};
use axum::response::{IntoResponse, Response};
use futures_util::StreamExt as _;
use serde::Deserialize;
use serde_json::{Value, json};
use tokio::sync::mpsc;

use super::objects::check_name;
use super::{ApiError, Gateway};
use crate::object::ObjectAddr;
use crate::runtime::Runtime;
use crate::storage::dump::Dump;
use crate::storage::{QueryLimits, check_import, from_json};
use crate::tenants::Principal;

/// `GET /admin/objects/{class}/{name}`: what the object is and holds.
pub async fn inspect(
    State(gateway): State<Gateway>,
    Path((class, name)): Path<(String, String)>,
    principal: Principal,
) -> Result<Json<Value>, ApiError> {
    let runtime = Arc::clone(gateway.runtime());
    runtime.tenants().may_manage(&principal, &class)?;
    let hash = runtime.class(&class)?.hash().to_string();
    let timeout = runtime.config().inspect.query_timeout;
    let inspection = runtime.inspect(&class, &name, timeout).await?;
    let object = ObjectAddr::new(&class, &name);
    let catalog = Arc::clone(runtime.catalog());
    let id = object.id().to_string();
    let record = tokio::task::spawn_blocking(move || catalog.object(&id))
        .await
        .map_err(|error| ApiError::Internal(error.to_string()))?
        .map_err(|error| ApiError::Internal(format!("cannot read the catalog: {error}")))?;
    let sockets = runtime.sockets().list(object.id(), None);
    let mut tags: BTreeMap<String, usize> = BTreeMap::new();
    for socket in &sockets {
        for tag in &socket.tags {
            *tags.entry(tag.clone()).or_default() += 1;
        }
    }
    let last_active = match (inspection.last_active, &record) {
        (Some(seen), Some(record)) => Some(seen.max(record.last_active_at)),
        (seen, record) => seen.or(record.as_ref().map(|r| r.last_active_at)),
    };
    let contents = &inspection.contents;
    let state = if inspection.live {
        "live"
    } else if inspection.open {
        "open"
    } else {
        "hibernated"
    };
    Ok(Json(json!({
        "class": class,
        "name": object.name(),
        "id": object.id(),
        "class_hash": hash,
        "created_at": record.as_ref().map(|r| r.created_at),
        "last_active_at": last_active,
        "live": inspection.live,
        "state": state,
        "size_bytes": inspection.size_bytes,
        "tables": contents.tables,
        "internal_tables": contents.internal_tables,
        "migrations": contents.migrations,
        "alarm": contents.alarm,
        "sockets": { "count": sockets.len(), "tags": tags },
        "event_log": contents.event_log.map(|(first, last)| json!({ "first": first, "last": last })),
    })))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct QueryBody {
    sql: String,
    #[serde(default)]
    params: Vec<Value>,
}

/// `POST /admin/objects/{class}/{name}/query {"sql", "params"}`: one
/// read-only statement, capped in rows, bytes and time.
pub async fn query(
    State(runtime): State<Arc<Runtime>>,
    Path((class, name)): Path<(String, String)>,
    principal: Principal,
    super::auth::JsonBody(body): super::auth::JsonBody<QueryBody>,
) -> Result<Json<Value>, ApiError> {
    runtime.tenants().may_manage(&principal, &class)?;
    let params = body
        .params
        .iter()
        .map(from_json)
        .collect::<Result<Vec<_>, _>>()
        .map_err(ApiError::BadRequest)?;
    let settings = &runtime.config().inspect;
    let limits = QueryLimits {
        max_rows: settings.query_max_rows,
        max_bytes: settings.query_max_bytes,
        timeout: settings.query_timeout,
    };
    let result = runtime
        .query(&class, &name, body.sql, params, limits)
        .await?;
    Ok(Json(json!(result)))
}

#[derive(Deserialize)]
pub struct ExportQuery {
    format: Option<String>,
    /// Comma-separated table names, for `format=json`.
    tables: Option<String>,
}

/// `GET /admin/objects/{class}/{name}/export[?format=json&tables=a,b]`:
/// the object's database as of a moment between its events, as an SQLite
/// file or a JSON dump of tables.
pub async fn export(
    State(runtime): State<Arc<Runtime>>,
    Path((class, name)): Path<(String, String)>,
    Query(query): Query<ExportQuery>,
    principal: Principal,
) -> Result<Response, ApiError> {
    runtime.tenants().may_manage(&principal, &class)?;
    let json = match query.format.as_deref() {
        None | Some("sqlite") => false,
        Some("json") => true,
        Some(other) => {
            return Err(ApiError::BadRequest(format!(
                "unknown format {other:?}: use sqlite (the default) or json"
            )));
        }
    };
    if !runtime.object_exists(&class, &name)? {
        return Err(ApiError::ObjectNotFound { class, name });
    }
    let snapshot = scratch_file(&runtime, "export-").await?;
    runtime
        .export(&class, &name, snapshot.to_path_buf())
        .await?;
    if json {
        let tables = query.tables.map(|tables| {
            tables
                .split(',')
                .filter(|t| !t.is_empty())
                .map(str::to_string)
                .collect()
        });
        return json_dump(snapshot, tables).await;
    }
    let file = std::fs::File::open(&snapshot)
        .map_err(|error| ApiError::Internal(format!("cannot read the export: {error}")))?;
    let length = file
        .metadata()
        .map_err(|error| ApiError::Internal(format!("cannot read the export: {error}")))?
        .len();
    // The open file keeps the data: the name can go now.
    drop(snapshot);
    let stream = blocking_stream(move |out| {
        let mut file = file;
        std::io::copy(&mut file, out)?;
        Ok(())
    });
    let mut response = Body::from_stream(stream).into_response();
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/vnd.sqlite3"),
    );
    headers.insert(header::CONTENT_LENGTH, HeaderValue::from(length));
    let filename = format!("{}-{}.sqlite", file_safe(&class), file_safe(&name));
    if let Ok(value) = HeaderValue::from_str(&format!("attachment; filename=\"{filename}\"")) {
        headers.insert(header::CONTENT_DISPOSITION, value);
    }
    Ok(response)
}

/// Streams a JSON dump of `tables` of the snapshot, read on a blocking
/// thread as the client takes it.
async fn json_dump(
    snapshot: tempfile::TempPath,
    tables: Option<Vec<String>>,
) -> Result<Response, ApiError> {
    let path = snapshot.to_path_buf();
    let dump = tokio::task::spawn_blocking(move || Dump::open(&path, tables))
        .await
        .map_err(|error| ApiError::Internal(error.to_string()))?
        .map_err(|error| ApiError::Internal(format!("cannot read the export: {error:#}")))?
        .map_err(ApiError::BadRequest)?;
    let stream = blocking_stream(move |out| {
        dump.write(out)?;
        drop(snapshot);
        Ok(())
    });
    let mut response = Body::from_stream(stream).into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    Ok(response)
}

/// A response body that `produce` writes on a blocking thread, as fast as
/// the client takes it; an error ends the body early (the client sees a
/// cut response, not a whole one).
fn blocking_stream(
    produce: impl FnOnce(&mut dyn std::io::Write) -> anyhow::Result<()> + Send + 'static,
) -> impl futures_util::Stream<Item = Result<Bytes, std::io::Error>> + Send + 'static {
    let (sender, receiver) = mpsc::channel::<Result<Bytes, std::io::Error>>(4);
    tokio::task::spawn_blocking(move || {
        let mut out = std::io::BufWriter::with_capacity(64 << 10, ChannelWriter(sender.clone()));
        let written = produce(&mut out).and_then(|()| {
            use std::io::Write as _;
            out.flush()?;
            Ok(())
        });
        if let Err(error) = written {
            tracing::debug!("an export ended early: {error:#}");
            let _ = sender.blocking_send(Err(std::io::Error::other(error.to_string())));
        }
    });
    futures_util::stream::unfold(receiver, |mut receiver| async move {
        receiver.recv().await.map(|item| (item, receiver))
    })
}

/// Hands what is written to the response's stream; fails once the client
/// is gone.
struct ChannelWriter(mpsc::Sender<Result<Bytes, std::io::Error>>);

impl std::io::Write for ChannelWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0
            .blocking_send(Ok(Bytes::copy_from_slice(buf)))
            .map_err(|_| std::io::Error::from(std::io::ErrorKind::BrokenPipe))?;
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// `PUT /admin/objects/{class}/{name}/import` (body: an SQLite file):
/// replaces the object's data, creating the object if it has none.
pub async fn import(
    State(runtime): State<Arc<Runtime>>,
    Path((class, name)): Path<(String, String)>,
    principal: Principal,
    headers: HeaderMap,
    body: Body,
) -> Result<Json<Value>, ApiError> {
    runtime.tenants().may_manage(&principal, &class)?;
    check_name(&name)?;
    let max_storage = runtime
        .class(&class)?
        .settings()
        .database()
        .max_storage_bytes;
    let limit = runtime.config().inspect.import_max_bytes;
    if super::body::content_length(&headers).is_some_and(|length| length > limit) {
        super::body::drain(body.into_data_stream()).await;
        return Err(ApiError::BodyTooLarge {
            limit: usize::try_from(limit).unwrap_or(usize::MAX),
        });
    }
    let upload = scratch_file(&runtime, "import-").await?;
    let size = receive(body, &upload, limit).await?;
    if size > max_storage {
        return Err(ApiError::ImportRefused(format!(
            "it is {size} bytes, larger than the class's storage limit of {max_storage} bytes"
        )));
    }
    let path = upload.to_path_buf();
    let check = tokio::task::spawn_blocking(move || check_import(&path))
        .await
        .map_err(|error| ApiError::Internal(error.to_string()))?
        .map_err(ApiError::ImportRefused)?;
    runtime
        .import(&class, &name, upload.to_path_buf(), check.migrations)
        .await?;
    // Renamed into place by now; dropping the name removes nothing.
    drop(upload);
    Ok(Json(json!({ "imported": true, "size_bytes": size })))
}

/// Writes the request body to `to`, at most `limit` bytes, and syncs it
/// (on a blocking thread, chunk by chunk as they arrive).
async fn receive(body: Body, to: &std::path::Path, limit: u64) -> Result<u64, ApiError> {
    let io =
        |error: std::io::Error| ApiError::Internal(format!("cannot store the upload: {error}"));
    let file = std::fs::OpenOptions::new()
        .write(true)
        .truncate(true)
        .open(to)
        .map_err(io)?;
    let (sender, mut chunks) = mpsc::channel::<Bytes>(4);
    let writer = tokio::task::spawn_blocking(move || {
        use std::io::Write as _;
        let mut file = file;
        while let Some(chunk) = chunks.blocking_recv() {
            file.write_all(&chunk)?;
        }
        file.sync_all()
    });
    let mut stream = body.into_data_stream();
    let mut size = 0u64;
    let received = async {
        while let Some(chunk) = stream.next().await {
            let chunk = chunk
                .map_err(|error| ApiError::BadRequest(format!("the upload failed: {error}")))?;
            size += chunk.len() as u64;
            if size > limit {
                super::body::drain(&mut stream).await;
                return Err(ApiError::BodyTooLarge {
                    limit: usize::try_from(limit).unwrap_or(usize::MAX),
                });
            }
            if sender.send(chunk).await.is_err() {
                break;
            }
        }
        Ok(())
    }
    .await;
    drop(sender);
    let written = writer
        .await
        .map_err(|error| ApiError::Internal(error.to_string()))?;
    received?;
    written.map_err(io)?;
    Ok(size)
}

/// A new empty file in the data directory's `tmp/`, removed when the
/// returned path is dropped.
pub(super) async fn scratch_file(
    runtime: &Runtime,
    prefix: &str,
) -> Result<tempfile::TempPath, ApiError> {
    let dir: PathBuf = runtime.data_dir().scratch();
    let prefix = prefix.to_string();
    tokio::task::spawn_blocking(move || {
        std::fs::create_dir_all(&dir)?;
        tempfile::Builder::new()
            .prefix(&prefix)
            .suffix(".sqlite")
            .tempfile_in(&dir)
            .map(tempfile::NamedTempFile::into_temp_path)
    })
    .await
    .map_err(|error| ApiError::Internal(error.to_string()))?
    .map_err(|error| ApiError::Internal(format!("cannot make a scratch file: {error}")))
}

/// `text` with only characters safe in a file name.
fn file_safe(text: &str) -> String {
    text.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect()
}
