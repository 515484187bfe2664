//! `/admin/tenants`: the operator makes, lists and removes tenants; a
//! tenant may read its own entry (quotas and usage).

use std::sync::Arc;

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::{Value, json};

use super::ApiError;
use super::admin::AdminToken;
use super::auth::{self, JsonBody};
use crate::runtime::Runtime;
use crate::tenants::{Principal, QuotaOverrides, TenantError, Tenants};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewTenant {
    name: Option<String>,
    max_classes: Option<u64>,
    max_objects: Option<u64>,
    max_storage_bytes: Option<u64>,
}

/// `POST /admin/tenants {name, [max_classes], [max_objects],
/// [max_storage_bytes]}`: a new tenant; the answer is the only place its
/// token appears.
pub async fn create(
    State(runtime): State<Arc<Runtime>>,
    _: AdminToken,
    JsonBody(body): JsonBody<NewTenant>,
) -> Result<Response, ApiError> {
    let name = auth::required(body.name, "name")?;
    let overrides = QuotaOverrides {
        max_classes: body.max_classes,
        max_objects: body.max_objects,
        max_storage_bytes: body.max_storage_bytes,
    };
    let created = blocking(&runtime, move |tenants| tenants.create(&name, overrides)).await?;
    Ok((StatusCode::CREATED, Json(created)).into_response())
}

/// `GET /admin/tenants`: every tenant with its classes, quotas and usage.
pub async fn list(
    State(runtime): State<Arc<Runtime>>,
    _: AdminToken,
) -> Result<Json<Value>, ApiError> {
    let tenants = blocking(&runtime, |tenants| tenants.list()).await?;
    Ok(Json(json!({ "tenants": tenants })))
}

/// `GET /admin/tenants/{name}`: one tenant, for the operator or itself.
pub async fn get(
    State(runtime): State<Arc<Runtime>>,
    Path(name): Path<String>,
    principal: Principal,
) -> Result<Json<Value>, ApiError> {
    if principal.tenant().is_some_and(|tenant| tenant != name) {
        return Err(TenantError::NoSuchTenant(name).into());
    }
    let listed = blocking(&runtime, |tenants| tenants.list()).await?;
    listed
        .into_iter()
        .find(|tenant| tenant.name == name)
        .map(|tenant| Json(json!(tenant)))
        .ok_or_else(|| TenantError::NoSuchTenant(name).into())
}

/// `DELETE /admin/tenants/{name}`: refused (`409`) while it owns classes.
pub async fn delete(
    State(runtime): State<Arc<Runtime>>,
    Path(name): Path<String>,
    _: AdminToken,
) -> Result<Json<Value>, ApiError> {
    let deleted = name.clone();
    blocking(&runtime, move |tenants| tenants.delete(&name)).await?;
    Ok(Json(json!({ "deleted": deleted })))
}

/// Runs `f` on a blocking thread: it may write the catalog.
async fn blocking<T: Send + 'static>(
    runtime: &Runtime,
    f: impl FnOnce(&Tenants) -> Result<T, TenantError> + Send + 'static,
) -> Result<T, ApiError> {
    let tenants = Arc::clone(runtime.tenants());
    tokio::task::spawn_blocking(move || f(&tenants))
        .await
        .map_err(|error| ApiError::Internal(error.to_string()))?
        .map_err(ApiError::from)
}
