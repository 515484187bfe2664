//! `/admin/classes*`: deploying, listing, rolling back and removing
//! classes (see `deploy`).
//!
//! `PUT /admin/classes/{class}` takes the component's bytes as the body
//! (`Content-Type: application/wasm`) and the class's table of
//! `podhost.toml` (without `path`) as JSON in the `Podhost-Class-Config`
//! header, e.g. `{"access": "user", "limits": {"max_cpu_per_event": "1s"}}`;
//! without the header the new version keeps the active version's table
//! (a new class gets the server's defaults; `null` resets to them).

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::Json;
use axum::body::Body;
use axum::extract::{FromRequestParts, Path, Query, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::{Value, json};

use super::{ApiError, Gateway};
use crate::deploy::{self, CONFIG_HEADER, DeployError, DeployRequest};
use crate::runtime::Runtime;
use crate::storage::versions::VersionRecord;
use crate::tenants::Principal;

/// Who manages classes: the operator (the admin token), on every class,
/// or a tenant (its token), on its own (see `Tenants`). Recorded with a
/// version as "admin" or the tenant's name.
pub struct Deployer {
    pub principal: Principal,
}

impl Deployer {
    fn name(&self) -> String {
        self.principal.tenant().unwrap_or("admin").to_string()
    }
}

impl FromRequestParts<Gateway> for Deployer {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, gateway: &Gateway) -> Result<Self, ApiError> {
        let principal = Principal::from_request_parts(parts, gateway).await?;
        Ok(Deployer { principal })
    }
}

#[derive(Deserialize)]
pub struct DeployQuery {
    /// Accept migrations that do not extend the active version's.
    #[serde(default)]
    force: bool,
    /// Also run the migrations on a copy of this object's database.
    check: Option<String>,
}

/// `PUT /admin/classes/{class}[?force=true][&check=NAME]`: deploys a new
/// version; `201` with it, or `200` when it is the active one already.
pub async fn deploy(
    State(runtime): State<Arc<Runtime>>,
    Path(class): Path<String>,
    Query(query): Query<DeployQuery>,
    deployer: Deployer,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    // Refused before the upload is read (its body then read and dropped,
    // so the client reads the answer and its connection stays usable);
    // the claim is asked again as it goes live.
    let checked = (|| -> Result<Option<Value>, ApiError> {
        crate::config::validate_class_name(&class)
            .map_err(|error| DeployError::BadName(error.to_string()))?;
        let config = match headers.get(CONFIG_HEADER) {
            None => None,
            Some(value) => Some(
                value
                    .to_str()
                    .ok()
                    .and_then(|text| serde_json::from_str::<Value>(text).ok())
                    .ok_or_else(|| {
                        DeployError::BadConfig(format!(
                            "the {CONFIG_HEADER} header must hold the class's table as JSON"
                        ))
                    })?,
            ),
        };
        let deployed = runtime.class(&class).is_ok();
        runtime
            .tenants()
            .check_claim(&deployer.principal, &class, deployed)?;
        Ok(config)
    })();
    let config = match checked {
        Ok(config) => config,
        Err(error) => {
            super::body::drain(body.into_data_stream()).await;
            return Err(error);
        }
    };
    let limit = runtime.config().deploy.max_component_bytes;
    let wasm = read_component(body, &headers, limit).await?;
    let deployed = deploy::deploy(
        &runtime,
        DeployRequest {
            class,
            wasm,
            config,
            deployed_by: deployer.name(),
            principal: deployer.principal,
            force: query.force,
            check: query.check,
        },
    )
    .await?;
    let status = if deployed.unchanged {
        StatusCode::OK
    } else {
        StatusCode::CREATED
    };
    let mut body = version_json(&deployed.version);
    body["unchanged"] = json!(deployed.unchanged);
    Ok((status, Json(body)).into_response())
}

/// `GET /admin/classes`: every class with its versions.
pub async fn list(
    State(runtime): State<Arc<Runtime>>,
    deployer: Deployer,
) -> Result<Json<Value>, ApiError> {
    let versions = all_versions(&runtime, None).await?;
    let mut by_class: BTreeMap<String, Vec<VersionRecord>> = BTreeMap::new();
    let tenants = runtime.tenants();
    for version in versions {
        if !tenants.sees(&deployer.principal, &version.class) {
            continue;
        }
        by_class
            .entry(version.class.clone())
            .or_default()
            .push(version);
    }
    let classes: Vec<Value> = by_class
        .iter()
        .map(|(name, versions)| class_json(name, versions))
        .collect();
    Ok(Json(json!({ "classes": classes })))
}

/// `GET /admin/classes/{class}`: one class, its versions and the active
/// version's config.
pub async fn show(
    State(runtime): State<Arc<Runtime>>,
    Path(class): Path<String>,
    deployer: Deployer,
) -> Result<Json<Value>, ApiError> {
    runtime.tenants().may_manage(&deployer.principal, &class)?;
    let versions = all_versions(&runtime, Some(class.clone())).await?;
    if versions.is_empty() {
        return Err(DeployError::NoSuchClass(class).into());
    }
    Ok(Json(class_json(&class, &versions)))
}

#[derive(Deserialize)]
pub struct RollbackQuery {
    version: Option<u64>,
}

/// `POST /admin/classes/{class}/rollback[?version=N]`: the previous
/// version (or version N) becomes the active one again.
pub async fn rollback(
    State(runtime): State<Arc<Runtime>>,
    Path(class): Path<String>,
    Query(query): Query<RollbackQuery>,
    deployer: Deployer,
) -> Result<Json<Value>, ApiError> {
    runtime.tenants().may_manage(&deployer.principal, &class)?;
    let version = deploy::rollback(&runtime, &class, query.version).await?;
    Ok(Json(version_json(&version)))
}

#[derive(Deserialize)]
pub struct RemoveQuery {
    /// `delete` to delete the class's objects with it.
    objects: Option<String>,
}

/// `DELETE /admin/classes/{class}[?objects=delete]`: removes a class;
/// refused (`409`) while it has objects unless they go with it.
pub async fn remove(
    State(runtime): State<Arc<Runtime>>,
    Path(class): Path<String>,
    Query(query): Query<RemoveQuery>,
    deployer: Deployer,
) -> Result<Json<Value>, ApiError> {
    runtime.tenants().may_manage(&deployer.principal, &class)?;
    let delete_objects = match query.objects.as_deref() {
        None => false,
        Some("delete") => true,
        Some(other) => {
            return Err(ApiError::BadRequest(format!(
                "objects={other:?}: the only value is \"delete\""
            )));
        }
    };
    // Each object's keys and handles go with it (`Runtime::delete`).
    let deleted = deploy::remove(&runtime, &class, delete_objects).await?;
    let tenants = Arc::clone(runtime.tenants());
    let released = class.clone();
    tokio::task::spawn_blocking(move || tenants.release_class(&released))
        .await
        .map_err(|error| ApiError::Internal(error.to_string()))??;
    Ok(Json(
        json!({ "deleted": true, "class": class, "objects_deleted": deleted.len() }),
    ))
}

/// The component, up to `limit` bytes.
async fn read_component(
    body: Body,
    headers: &HeaderMap,
    limit: usize,
) -> Result<Vec<u8>, ApiError> {
    match super::body::read_capped(body, headers, limit).await {
        Ok(wasm) => Ok(wasm.to_vec()),
        Err(ApiError::BodyTooLarge { limit }) => Err(DeployError::TooLarge { limit }.into()),
        Err(error) => Err(error),
    }
}

async fn all_versions(
    runtime: &Arc<Runtime>,
    class: Option<String>,
) -> Result<Vec<VersionRecord>, ApiError> {
    let catalog = Arc::clone(runtime.catalog());
    tokio::task::spawn_blocking(move || catalog.versions(class.as_deref()))
        .await
        .map_err(|error| ApiError::Internal(error.to_string()))?
        .map_err(|error| ApiError::Internal(format!("cannot read the catalog: {error}")))
}

fn version_json(version: &VersionRecord) -> Value {
    serde_json::to_value(version).unwrap_or(Value::Null)
}

fn class_json(name: &str, versions: &[VersionRecord]) -> Value {
    let active = versions.iter().find(|version| version.active);
    let config = active
        .and_then(|version| serde_json::from_str::<Value>(&version.config).ok())
        .unwrap_or(Value::Null);
    json!({
        "name": name,
        "active_version": active.map(|version| version.version),
        "config": config,
        "versions": versions.iter().map(version_json).collect::<Vec<_>>(),
    })
}
