//! `/admin/*`: the operator's API, behind the configured `admin_token`;
//! tenants reach the parts about their own classes with their tokens.

use std::sync::Arc;

use axum::Json;
use axum::extract::{FromRequestParts, Path, Query, State};
use axum::http::request::Parts;
use axum::http::{Extensions, HeaderMap};
use serde::Deserialize;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq as _;

use super::{ApiError, Gateway, credentials};
use crate::accounts::AuthError;
use crate::runtime::Runtime;
use crate::tenants::Principal;

#[derive(Deserialize)]
pub struct ListQuery {
    class: Option<String>,
}

/// `GET /admin/objects[?class=C]`: the catalog's objects; a tenant sees
/// only those of its own classes (another's class is `404`).
pub async fn list_objects(
    State(runtime): State<Arc<Runtime>>,
    Query(query): Query<ListQuery>,
    principal: Principal,
) -> Result<Json<Value>, ApiError> {
    if let Some(class) = &query.class {
        runtime.tenants().may_manage(&principal, class)?;
    }
    // What happened before this request (an object created or deleted,
    // by a client or another object) is listed, though the writer is behind.
    runtime.catalog_flushed().await;
    let catalog = Arc::clone(runtime.catalog());
    let mut objects = tokio::task::spawn_blocking(move || catalog.objects(query.class.as_deref()))
        .await
        .map_err(|error| ApiError::Internal(error.to_string()))?
        .map_err(|error| ApiError::Internal(format!("cannot read the catalog: {error}")))?;
    if principal != Principal::Admin {
        let tenants = runtime.tenants();
        objects.retain(|object| tenants.sees(&principal, &object.class));
    }
    Ok(Json(json!({ "objects": objects })))
}

/// `DELETE /admin/objects/{class}/{name}`: deletes an object for good,
/// with its API keys and handles; `404` if it has no database.
/// `?purge=true`: remove the object's replicated history at once too.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeleteQuery {
    #[serde(default)]
    purge: bool,
}

pub async fn delete_object(
    State(runtime): State<Arc<Runtime>>,
    Path((class, name)): Path<(String, String)>,
    Query(query): Query<DeleteQuery>,
    principal: Principal,
) -> Result<Json<Value>, ApiError> {
    runtime.tenants().may_manage(&principal, &class)?;
    let deleted = runtime.delete(&class, &name).await?;
    if query.purge {
        // Its history may outlive its data (a restore can bring it back):
        // purge even when nothing was left to delete here.
        runtime.purge_history(&class, &name);
    }
    if !deleted {
        return Err(ApiError::ObjectNotFound { class, name });
    }
    Ok(Json(json!({ "deleted": deleted, "purged": query.purge })))
}

/// The operator's credential: a handler taking it runs only for requests
/// bearing the admin token (and with the admin API on); a tenant's token
/// gets `403`. Put it after the `Path` and `Query` extractors, so a
/// malformed path still answers `400`.
pub struct AdminToken;

impl FromRequestParts<Gateway> for AdminToken {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, gateway: &Gateway) -> Result<Self, ApiError> {
        match Principal::from_request_parts(parts, gateway).await? {
            Principal::Admin => Ok(AdminToken),
            Principal::Tenant(_) => Err(ApiError::AdminOnly),
        }
    }
}

/// Whether the request bears the admin token. A wrong bearer token counts
/// as a failed guess from the client's address when the route takes
/// nothing else (`required`), or when it is as long as the admin token
/// (elsewhere, as on public classes, apps' own bearer tokens go by); an
/// address with too many failures gets `429` where the token is required,
/// and is not taken for the operator elsewhere, until its window ends.
pub(super) fn bears_admin_token(
    gateway: &Gateway,
    headers: &HeaderMap,
    extensions: &Extensions,
    required: bool,
) -> Result<bool, ApiError> {
    let runtime = gateway.runtime();
    let Some(expected) = runtime.config().admin_token.as_ref() else {
        return Ok(false);
    };
    let Some(given) = credentials::bearer(headers) else {
        return Ok(false);
    };
    let address =
        credentials::client_address(headers, extensions, &runtime.config().trusted_proxies);
    let throttle = gateway.routes().admin_throttle();
    if let Err(wait) = throttle.check(address) {
        return if required {
            Err(ApiError::Auth(AuthError::RateLimited(wait)))
        } else {
            Ok(false)
        };
    }
    if same_secret(given, expected.expose()) {
        return Ok(true);
    }
    if required || given.len() == expected.expose().len() {
        tracing::warn!(?address, "a wrong admin token was given");
        throttle.failed(address);
    }
    Ok(false)
}

/// Compares digests in constant time: comparing the fixed-length digests
/// rather than the strings keeps the time taken from telling either how
/// much of a guess was right or the token's length.
pub(super) fn same_secret(given: &str, expected: &str) -> bool {
    let (a, b) = (
        Sha256::digest(given.as_bytes()),
        Sha256::digest(expected.as_bytes()),
    );
    a.as_slice().ct_eq(b.as_slice()).into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn compares_tokens_exactly() {
        assert!(same_secret("secret", "secret"));
        assert!(!same_secret("secret", "secreT"));
        assert!(!same_secret("secret", "secret2"));
        assert!(!same_secret("", "secret"));
    }
}
