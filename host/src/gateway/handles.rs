//! Handles: aliases for an object's name within its class (an email
//! address for an inbox, say). `ANY /handles/{class}/{handle}[/{*path}]`
//! reaches the object as `/objects/{class}/{name}` would, with the same
//! access rules; the operator sets and removes handles under `/admin`.

use axum::Json;
use axum::extract::{Path, Request, State};
use axum::response::Response;
use serde::Deserialize;
use serde_json::{Value, json};

use super::auth::JsonBody;
use super::keys::check_object;
use super::routed::Routed;
use super::{ApiError, Gateway, auth, objects};
use crate::tenants::Principal;

pub async fn deliver(
    State(gateway): State<Gateway>,
    routed: Routed<2>,
    request: Request,
) -> Result<Response, ApiError> {
    let [class, handle] = routed.params();
    forward_by_handle(&gateway, class, handle, routed.path(), request).await
}

async fn forward_by_handle(
    gateway: &Gateway,
    class: &str,
    handle: &str,
    path: &str,
    request: Request,
) -> Result<Response, ApiError> {
    let caller = objects::by_name(gateway, class, &request)?;
    let name = resolve(gateway, class, handle).await?;
    objects::forward(gateway, class, &name, path, request, caller).await
}

async fn resolve(gateway: &Gateway, class: &str, handle: &str) -> Result<String, ApiError> {
    gateway
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
    State(gateway): State<Gateway>,
    Path((class, handle)): Path<(String, String)>,
    principal: Principal,
    JsonBody(body): JsonBody<Target>,
) -> Result<Json<Value>, ApiError> {
    gateway.runtime().tenants().may_manage(&principal, &class)?;
    let name = auth::required(body.name, "name")?;
    check_object(gateway.runtime(), &class, &name)?;
    let handle = gateway.routes().set_handle(&class, &handle, &name).await?;
    Ok(Json(
        json!({ "class": class, "handle": handle, "name": name }),
    ))
}

/// `GET /admin/handles/{class}/{handle}`: the object it stands for.
pub async fn get(
    State(gateway): State<Gateway>,
    Path((class, handle)): Path<(String, String)>,
    principal: Principal,
) -> Result<Json<Value>, ApiError> {
    gateway.runtime().tenants().may_manage(&principal, &class)?;
    let name = resolve(&gateway, &class, &handle).await?;
    Ok(Json(
        json!({ "class": class, "handle": handle, "name": name }),
    ))
}

/// `DELETE /admin/handles/{class}/{handle}`.
pub async fn delete(
    State(gateway): State<Gateway>,
    Path((class, handle)): Path<(String, String)>,
    principal: Principal,
) -> Result<Json<Value>, ApiError> {
    gateway.runtime().tenants().may_manage(&principal, &class)?;
    let deleted = gateway.routes().delete_handle(&class, &handle).await?;
    Ok(Json(json!({ "deleted": deleted })))
}

/// `GET /admin/objects/{class}/{name}/handles`.
pub async fn list(
    State(gateway): State<Gateway>,
    Path((class, name)): Path<(String, String)>,
    principal: Principal,
) -> Result<Json<Value>, ApiError> {
    gateway.runtime().tenants().may_manage(&principal, &class)?;
    let handles = gateway.routes().handles_of(&class, &name).await?;
    Ok(Json(json!({ "handles": handles })))
}
