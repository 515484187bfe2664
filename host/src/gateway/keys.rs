//! API keys: `ANY /key[/{*path}]` with `Authorization: Bearer pk_…`
//! reaches the object the key was made for, whatever its class's access;
//! the operator makes, lists and revokes keys under `/admin`.

use axum::Json;
use axum::extract::{Path, Request, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::{Value, json};

use super::admin::AdminToken;
use super::routed::Routed;
use super::{ApiError, Gateway, auth, credentials, objects};
use crate::accounts::Admission;
use crate::runtime::Runtime;
use crate::tenants::Principal;

pub async fn deliver(
    State(gateway): State<Gateway>,
    routed: Routed<0>,
    request: Request,
) -> Result<Response, ApiError> {
    forward_by_key(&gateway, routed.path(), request).await
}

async fn forward_by_key(
    gateway: &Gateway,
    path: &str,
    request: Request,
) -> Result<Response, ApiError> {
    let key = credentials::bearer(request.headers()).ok_or(ApiError::InvalidKey)?;
    let target = gateway
        .routes()
        .resolve_key(key)
        .await?
        .ok_or(ApiError::InvalidKey)?;
    let admission = Admission::key(target.id);
    let (class, name) = (target.class, target.name);
    objects::forward(gateway, &class, &name, path, request, admission).await
}

#[derive(Deserialize, Default)]
struct NewKey {
    label: Option<String>,
}

/// `POST /admin/objects/{class}/{name}/keys [{label}]`: a new key; the
/// answer is the only place its secret appears.
pub async fn create(
    State(gateway): State<Gateway>,
    Path((class, name)): Path<(String, String)>,
    principal: Principal,
    request: Request,
) -> Result<Response, ApiError> {
    gateway.runtime().tenants().may_manage(&principal, &class)?;
    check_object(gateway.runtime(), &class, &name)?;
    let body = auth::read_body(request).await?;
    let given: NewKey = if body.is_empty() {
        NewKey::default()
    } else {
        auth::json_body(&body)?
    };
    let key = gateway
        .routes()
        .create_key(&class, &name, given.label.as_deref().unwrap_or(""))
        .await?;
    let body = json!({ "class": class, "name": name, "key": key });
    Ok((StatusCode::CREATED, Json(body)).into_response())
}

/// `GET /admin/objects/{class}/{name}/keys`: the object's keys, without
/// their secrets.
pub async fn list(
    State(gateway): State<Gateway>,
    Path((class, name)): Path<(String, String)>,
    principal: Principal,
) -> Result<Json<Value>, ApiError> {
    gateway.runtime().tenants().may_manage(&principal, &class)?;
    let keys = gateway.routes().keys_of(&class, &name).await?;
    Ok(Json(json!({ "keys": keys })))
}

/// `DELETE /admin/keys/{id}`: revokes a key at once. The operator's only:
/// a key's id does not say whose class it is for.
pub async fn revoke(
    State(gateway): State<Gateway>,
    Path(id): Path<String>,
    _: AdminToken,
) -> Result<Json<Value>, ApiError> {
    let revoked = gateway.routes().revoke_key(&id).await?;
    Ok(Json(json!({ "revoked": revoked })))
}

/// A deployed class and a valid object name.
pub(super) fn check_object(runtime: &Runtime, class: &str, name: &str) -> Result<(), ApiError> {
    runtime.class(class)?;
    objects::check_name(name)
}
