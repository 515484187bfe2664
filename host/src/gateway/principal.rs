//! Who makes an `/admin` request: the operator, with the configured
//! `admin_token`, or a tenant, with its own token. A wrong token counts as
//! a failed guess from the client's address, whichever it was meant as.

use axum::extract::FromRequestParts;
use axum::http::request::Parts;

use super::admin::same_secret;
use super::{ApiError, Gateway, credentials};
use crate::accounts::AuthError;
use crate::tenants::Principal;

/// Put it after the `Path` and `Query` extractors, so a malformed path
/// still answers `400`.
impl FromRequestParts<Gateway> for Principal {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, gateway: &Gateway) -> Result<Self, ApiError> {
        let runtime = gateway.runtime();
        let Some(expected) = runtime.config().admin_token.as_ref() else {
            return Err(ApiError::AdminDisabled);
        };
        let Some(given) = credentials::bearer(&parts.headers) else {
            return Err(ApiError::Unauthorized);
        };
        let address = credentials::client_address(
            &parts.headers,
            &parts.extensions,
            &runtime.config().trusted_proxies,
        );
        let throttle = gateway.routes().admin_throttle();
        throttle
            .check(address)
            .map_err(|wait| ApiError::Auth(AuthError::RateLimited(wait)))?;
        if same_secret(given, expected.expose()) {
            return Ok(Principal::Admin);
        }
        if let Some(tenant) = runtime.tenants().authenticate(given) {
            return Ok(Principal::Tenant(tenant));
        }
        tracing::warn!(?address, "a wrong admin or tenant token was given");
        throttle.failed(address);
        Err(ApiError::Unauthorized)
    }
}
