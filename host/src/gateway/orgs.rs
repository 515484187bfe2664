//! Organizations: `ANY /orgs/{org}/{class}[/{*path}]` reaches the
//! organization's object of an `access = "org"` class, for its members
//! only; `/auth/orgs/...` creates organizations and manages members.

use axum::Json;
use axum::extract::{Path, Request, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::{Value, json};

use super::auth::{JsonBody, SignedIn};
use super::routed::Routed;
use super::{ApiError, Gateway, auth, objects};
use crate::accounts::{Admission, Role};
use crate::config::Access;

pub async fn deliver(
    State(gateway): State<Gateway>,
    routed: Routed<2>,
    request: Request,
) -> Result<Response, ApiError> {
    let [org, class] = routed.params();
    forward_to_org(&gateway, org, class, routed.path(), request).await
}

async fn forward_to_org(
    gateway: &Gateway,
    org: &str,
    class: &str,
    path: &str,
    request: Request,
) -> Result<Response, ApiError> {
    let (accounts, signed_in) = auth::signed_in(gateway, request.headers())?;
    let role = accounts.role(org, &signed_in.user).await?;
    let access = gateway.runtime().class(class)?.settings().access;
    if access != Access::Org {
        return Err(ApiError::WrongRoute {
            class: class.to_string(),
            access,
        });
    }
    let admission = Admission::member(signed_in.user, &signed_in.session, org, role);
    objects::forward(gateway, class, org, path, request, admission).await
}

#[derive(Deserialize)]
pub struct NewOrg {
    name: Option<String>,
}

#[derive(Deserialize)]
pub struct NewMember {
    email: Option<String>,
    role: Option<String>,
}

/// `POST /auth/orgs {name}`: a new organization, owned by the caller.
pub async fn create(
    State(gateway): State<Gateway>,
    SignedIn(signed_in): SignedIn,
    JsonBody(body): JsonBody<NewOrg>,
) -> Result<Response, ApiError> {
    let accounts = gateway.accounts()?;
    let name = auth::required(body.name, "name")?;
    let org = accounts.create_org(&signed_in.user, &name).await?;
    Ok((StatusCode::CREATED, Json(json!({ "org": org }))).into_response())
}

/// `GET /auth/orgs`: the caller's organizations and roles.
pub async fn list(
    State(gateway): State<Gateway>,
    SignedIn(signed_in): SignedIn,
) -> Result<Json<Value>, ApiError> {
    let accounts = gateway.accounts()?;
    let orgs = accounts.orgs_of(&signed_in.user).await?;
    Ok(Json(json!({ "orgs": orgs })))
}

/// `GET /auth/orgs/{org}/members`: for members.
pub async fn members(
    State(gateway): State<Gateway>,
    Path(org): Path<String>,
    SignedIn(signed_in): SignedIn,
) -> Result<Json<Value>, ApiError> {
    let accounts = gateway.accounts()?;
    let members = accounts.members(&org, &signed_in.user).await?;
    Ok(Json(json!({ "members": members })))
}

/// `PUT /auth/orgs/{org}/members {email, role}`: adds a member or changes
/// their role.
pub async fn set_member(
    State(gateway): State<Gateway>,
    Path(org): Path<String>,
    SignedIn(signed_in): SignedIn,
    JsonBody(body): JsonBody<NewMember>,
) -> Result<Json<Value>, ApiError> {
    let accounts = gateway.accounts()?;
    let email = auth::required(body.email, "email")?;
    let role = auth::required(body.role, "role")?;
    let role = Role::parse(&role).ok_or_else(|| {
        ApiError::BadRequest("`role` must be \"owner\", \"admin\" or \"member\"".into())
    })?;
    accounts
        .set_member(&org, &signed_in.user, &email, role)
        .await?;
    let members = accounts.members(&org, &signed_in.user).await?;
    Ok(Json(json!({ "members": members })))
}

/// `DELETE /auth/orgs/{org}/members/{user}`: removes a member (or lets the
/// caller leave).
pub async fn remove_member(
    State(gateway): State<Gateway>,
    Path((org, user)): Path<(String, String)>,
    SignedIn(signed_in): SignedIn,
) -> Result<Json<Value>, ApiError> {
    let accounts = gateway.accounts()?;
    accounts.remove_member(&org, &signed_in.user, &user).await?;
    Ok(Json(json!({ "removed": true })))
}
