//! `/admin/users`: the operator finds, disables, enables and deletes
//! accounts. Admin token only: a tenant's token gets `403`.

use axum::Json;
use axum::extract::{Path, Query, State};
use serde::Deserialize;
use serde_json::{Value, json};

use super::admin::AdminToken;
use super::{ApiError, Gateway};
use crate::config::Access;

#[derive(Deserialize)]
pub struct FindQuery {
    email: Option<String>,
}

/// `GET /admin/users?email=E`: the user with that email (`users` holds
/// one or none); without `email`, the oldest 1000 users.
pub async fn find(
    State(gateway): State<Gateway>,
    Query(query): Query<FindQuery>,
    _admin: AdminToken,
) -> Result<Json<Value>, ApiError> {
    let users = gateway
        .accounts()?
        .find_users(query.email.as_deref())
        .await?;
    Ok(Json(json!({ "users": users })))
}

/// `GET /admin/users/{id}`.
pub async fn get(
    State(gateway): State<Gateway>,
    Path(id): Path<String>,
    _admin: AdminToken,
) -> Result<Json<Value>, ApiError> {
    let user = gateway.accounts()?.user_info(&id).await?;
    Ok(Json(json!(user)))
}

/// `POST /admin/users/{id}/disable`: they can no longer log in or
/// refresh, and their sessions (with their sockets and streams) end now.
pub async fn disable(
    State(gateway): State<Gateway>,
    Path(id): Path<String>,
    _admin: AdminToken,
) -> Result<Json<Value>, ApiError> {
    let user = gateway.accounts()?.set_disabled(&id, true).await?;
    Ok(Json(json!(user)))
}

/// `POST /admin/users/{id}/enable`: they may log in again.
pub async fn enable(
    State(gateway): State<Gateway>,
    Path(id): Path<String>,
    _admin: AdminToken,
) -> Result<Json<Value>, ApiError> {
    let user = gateway.accounts()?.set_disabled(&id, false).await?;
    Ok(Json(json!(user)))
}

#[derive(Deserialize)]
pub struct DeleteQuery {
    objects: Option<String>,
}

/// `DELETE /admin/users/{id}[?objects=delete|keep]`: deletes the account
/// and ends its sessions at once. Their per-user objects (the object
/// named by their id in each `access = "user"` class) are kept unless
/// `objects=delete`.
pub async fn delete(
    State(gateway): State<Gateway>,
    Path(id): Path<String>,
    Query(query): Query<DeleteQuery>,
    _admin: AdminToken,
) -> Result<Json<Value>, ApiError> {
    let delete_objects = match query.objects.as_deref() {
        None | Some("keep") => false,
        Some("delete") => true,
        Some(other) => {
            return Err(ApiError::BadRequest(format!(
                "`objects` is `delete` or `keep`, not {other:?}"
            )));
        }
    };
    let accounts = gateway.accounts()?;
    accounts.delete_user(&id).await?;
    let runtime = gateway.runtime();
    let mut deleted = Vec::new();
    if delete_objects {
        for (class, spec) in runtime.classes() {
            if spec.settings().access != Access::User {
                continue;
            }
            if runtime.delete(&class, &id).await? {
                deleted.push(json!({ "class": class, "name": id }));
            }
        }
    }
    Ok(Json(json!({ "deleted": true, "objects_deleted": deleted })))
}
