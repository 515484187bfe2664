//! Routes that write the catalog (sign-up, login, keys, handles, deploys,
//! tenants, ...) answer only once their commit is shipped, and, when the
//! catalog is `replicated`, durable in the store; otherwise 503
//! `replication_unavailable`, like an object's event. Objects' own routes
//! are not under it: their writes are replicated by their own streams.

use axum::extract::{Request, State};
use axum::http::Method;
use axum::middleware::Next;
use axum::response::{IntoResponse as _, Response};

use super::{ApiError, Gateway};

/// After a successful request that may have written the catalog.
pub async fn wait(State(gateway): State<Gateway>, request: Request, next: Next) -> Response {
    let reads_only = matches!(
        *request.method(),
        Method::GET | Method::HEAD | Method::OPTIONS
    );
    let response = next.run(request).await;
    if reads_only || !response.status().is_success() {
        return response;
    }
    match gateway.runtime().catalog_durable().await {
        Ok(()) => response,
        Err(error) => ApiError::ReplicationUnavailable(error.to_string()).into_response(),
    }
}
