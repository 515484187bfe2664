//! `POST /admin/objects/{class}/{name}/restore`: an object's database
//! rebuilt from the replication store at a point in its history, checked,
//! and swapped in like an import (the live object is closed first; its
//! sockets stay open).

use std::sync::Arc;

use axum::Json;
use axum::extract::{Path, State};
use serde::Deserialize;
use serde_json::{Value, json};

use super::ApiError;
use super::auth::JsonBody;
use super::objects::check_name;
use crate::object::ObjectAddr;
use crate::replication::restore::{Point, RestoreError, Restored, restore};
use crate::runtime::Runtime;
use crate::storage::check_import;
use crate::tenants::Principal;

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RestoreBody {
    /// The state as of this time (RFC 3339, UTC).
    at: Option<String>,
    /// The state right after this transaction.
    txid: Option<u64>,
    /// Restore into this object of the same class instead.
    #[serde(rename = "as")]
    as_name: Option<String>,
}

pub async fn restore_object(
    State(runtime): State<Arc<Runtime>>,
    Path((class, name)): Path<(String, String)>,
    principal: Principal,
    JsonBody(body): JsonBody<RestoreBody>,
) -> Result<Json<Value>, ApiError> {
    runtime.tenants().may_manage(&principal, &class)?;
    check_name(&name)?;
    runtime.class(&class)?;
    let target = body.as_name.clone().unwrap_or_else(|| name.clone());
    check_name(&target)?;
    let point = Point::parse(body.at.as_deref(), body.txid).map_err(ApiError::BadRequest)?;
    let restored = rebuild(&runtime, &class, &name, &target, point)
        .await?
        .ok_or_else(|| ApiError::RestoreRefused(RestoreError::NoHistory.to_string()))?;
    tracing::info!(class, name, target, txid = restored.txid, "object restored");
    Ok(Json(json!({
        "restored": true,
        "class": class,
        "name": target,
        "generation": restored.generation,
        "txid": restored.txid,
        "committed_at": humantime::format_rfc3339_millis(
            std::time::UNIX_EPOCH
                + std::time::Duration::from_millis(restored.committed_ms.unsigned_abs())
        )
        .to_string(),
    })))
}

/// Rebuilds object `name` of `class` from the replication store at
/// `point` into object `target` (the same or another of the class): the
/// database is restored to a scratch file, checked, and swapped in like
/// an import. `None`: the store has no history of the object.
pub(crate) async fn rebuild(
    runtime: &Arc<Runtime>,
    class: &str,
    name: &str,
    target: &str,
    point: Point,
) -> Result<Option<Restored>, ApiError> {
    let Some(replication) = runtime.replication() else {
        return Err(ApiError::RestoreRefused(
            "replication is off: set [replication] url".into(),
        ));
    };
    let source = ObjectAddr::new(class, name);
    let file = super::inspect::scratch_file(runtime, "restore-").await?;
    let restored = match restore(
        replication.store().as_ref(),
        class,
        source.id(),
        point,
        &file,
    )
    .await
    {
        Ok(restored) => restored,
        Err(RestoreError::NoHistory) => return Ok(None),
        Err(error @ RestoreError::Store(_)) => {
            return Err(ApiError::ReplicationUnavailable(error.to_string()));
        }
        Err(other) => return Err(ApiError::RestoreRefused(other.to_string())),
    };
    let path = file.to_path_buf();
    let check = tokio::task::spawn_blocking(move || check_import(&path))
        .await
        .map_err(|error| ApiError::Internal(error.to_string()))?
        .map_err(ApiError::RestoreRefused)?;
    runtime
        .import(class, target, file.to_path_buf(), check.migrations)
        .await?;
    drop(file);
    Ok(Some(restored))
}
