//! `/admin/*`: the operator's API, behind the configured `admin_token`.

use std::sync::Arc;

use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, header};
use serde::Deserialize;
use serde_json::{Value, json};

use super::ApiError;
use crate::runtime::Runtime;

#[derive(Deserialize)]
pub struct ListQuery {
    class: Option<String>,
}

/// `GET /admin/objects[?class=C]`: the catalog's objects.
pub async fn list_objects(
    State(runtime): State<Arc<Runtime>>,
    headers: HeaderMap,
    Query(query): Query<ListQuery>,
) -> Result<Json<Value>, ApiError> {
    authorize(&runtime, &headers)?;
    let catalog = Arc::clone(runtime.catalog());
    let objects = tokio::task::spawn_blocking(move || catalog.objects(query.class.as_deref()))
        .await
        .map_err(|error| ApiError::Internal(error.to_string()))?
        .map_err(|error| ApiError::Internal(format!("cannot read the catalog: {error}")))?;
    Ok(Json(json!({ "objects": objects })))
}

/// `DELETE /admin/objects/{class}/{name}`: deletes an object for good,
/// with its API keys and handles.
pub async fn delete_object(
    State(runtime): State<Arc<Runtime>>,
    headers: HeaderMap,
    Path((class, name)): Path<(String, String)>,
) -> Result<Json<Value>, ApiError> {
    authorize(&runtime, &headers)?;
    let deleted = runtime.delete(&class, &name).await?;
    runtime.routes().forget_object(&class, &name).await?;
    Ok(Json(json!({ "deleted": deleted })))
}

/// Whether the request bears the admin token (and the admin API is on).
pub(super) fn is_admin(runtime: &Runtime, headers: &HeaderMap) -> bool {
    authorize(runtime, headers).is_ok()
}

pub(super) fn authorize(runtime: &Runtime, headers: &HeaderMap) -> Result<(), ApiError> {
    let token = runtime
        .config()
        .admin_token
        .as_ref()
        .ok_or(ApiError::AdminDisabled)?;
    let given = headers
        .get(header::AUTHORIZATION)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.strip_prefix("Bearer "))
        .ok_or(ApiError::Unauthorized)?;
    if constant_time_eq(given.as_bytes(), token.expose().as_bytes()) {
        Ok(())
    } else {
        Err(ApiError::Unauthorized)
    }
}

/// Compares without stopping at the first difference, so the time taken
/// does not tell how much of a guess was right.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |diff, (x, y)| diff | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn compares_tokens_exactly() {
        assert!(constant_time_eq(b"secret", b"secret"));
        assert!(!constant_time_eq(b"secret", b"secreT"));
        assert!(!constant_time_eq(b"secret", b"secret2"));
    }
}
