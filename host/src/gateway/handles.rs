//! Handles: aliases for an object's name within its class (an email
//! address for an inbox, say). `ANY /handles/{class}/{handle}[/{*path}]`
//! reaches the object as `/objects/{class}/{name}` would, with the same
//! access rules; the operator sets and removes handles under `/admin`.

use std::sync::Arc;

use axum::Json;
use axum::extract::{Path, Request, State};
use axum::response::Response;
use serde::Deserialize;
use serde_json::{Value, json};

use super::admin::AdminToken;
use super::auth::JsonBody;
use super::keys::check_object;
use super::routed::Routed;
use super::{ApiError, auth, objects};
use crate::runtime::Runtime;

pub async fn deliver(
    State(runtime): State<Arc<Runtime>>,
    Routed {
        params: [class, handle],
        path,
    }: Routed<2>,
    request: Request,
) -> Result<Response, ApiError> {
    forward_by_handle(&runtime, &class, &handle, &path, request).await
}

async fn forward_by_handle(
    runtime: &Arc<Runtime>,
    class: &str,
    handle: &str,
    path: &str,
    request: Request,
) -> Result<Response, ApiError> {
    let caller = objects::by_name(runtime, class, &request)?;
    let name = resolve(runtime, class, handle).await?;
    objects::forward(runtime, class, &name, path, request, caller).await
}

async fn resolve(runtime: &Runtime, class: &str, handle: &str) -> Result<String, ApiError> {
    runtime
        .routes()
        .resolve_handle(class, handle)
        .await?
        .ok_or_else(|| ApiError::HandleNotFound {
            class: class.to_string(),
            handle: handle.to_string(),
        })
}

#[derive(Deserialize)]
pub struct Target {
    name: Option<String>,
}

/// `PUT /admin/handles/{class}/{handle} {name}`: points the handle at
/// object `name`, replacing what it pointed at.
pub async fn set(
    State(runtime): State<Arc<Runtime>>,
    Path((class, handle)): Path<(String, String)>,
    _: AdminToken,
    JsonBody(body): JsonBody<Target>,
) -> Result<Json<Value>, ApiError> {
    let name = auth::required(body.name, "name")?;
    check_object(&runtime, &class, &name)?;
    let handle = runtime.routes().set_handle(&class, &handle, &name).await?;
    Ok(Json(
        json!({ "class": class, "handle": handle, "name": name }),
    ))
}

/// `GET /admin/handles/{class}/{handle}`: the object it stands for.
pub async fn get(
    State(runtime): State<Arc<Runtime>>,
    Path((class, handle)): Path<(String, String)>,
    _: AdminToken,
) -> Result<Json<Value>, ApiError> {
    let name = resolve(&runtime, &class, &handle).await?;
    Ok(Json(
        json!({ "class": class, "handle": handle, "name": name }),
    ))
}

/// `DELETE /admin/handles/{class}/{handle}`.
pub async fn delete(
    State(runtime): State<Arc<Runtime>>,
    Path((class, handle)): Path<(String, String)>,
    _: AdminToken,
) -> Result<Json<Value>, ApiError> {
    let deleted = runtime.routes().delete_handle(&class, &handle).await?;
    Ok(Json(json!({ "deleted": deleted })))
}

/// `GET /admin/objects/{class}/{name}/handles`.
pub async fn list(
    State(runtime): State<Arc<Runtime>>,
    Path((class, name)): Path<(String, String)>,
    _: AdminToken,
) -> Result<Json<Value>, ApiError> {
    let handles = runtime.routes().handles_of(&class, &name).await?;
    Ok(Json(json!({ "handles": handles })))
}
