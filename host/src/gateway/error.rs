//! Every error the gateway answers with: a status and a JSON body
//! `{"error": {"code": "...", "message": "..."}}`.

use axum::Json;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::json;

use crate::accounts::AuthError;
use crate::cluster::ClusterError;
use crate::config::Access;
use crate::deploy::DeployError;
use crate::engine::ClassError;
use crate::limits::LimitExceeded;
use crate::object::{AdminError, EventError};
use crate::sockets::SocketRefused;
use crate::storage::QueryFailure;
use crate::tenants::TenantError;

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("no route matches this path")]
    RouteNotFound,
    #[error("static files are only read: use GET or HEAD")]
    MethodNotAllowed,
    #[error("the admin API is off: set admin_token in the config to turn it on")]
    AdminDisabled,
    #[error(
        "this needs the admin token (Authorization: Bearer <admin_token>), or for a tenant's own classes its token"
    )]
    Unauthorized,
    #[error("internal error: {0}")]
    Internal(String),
    #[error("{0}")]
    BadRequest(String),
    #[error("the request body is larger than the limit of {limit} bytes")]
    BodyTooLarge { limit: usize },
    #[error("the object answered with an invalid response: {0}")]
    InvalidResponse(String),
    #[error("the object's response body is larger than the limit of {limit} bytes")]
    ResponseTooLarge { limit: usize },
    #[error("{max} WebSocket upgrades are in progress, the server's limit; try again")]
    TooManyHandshakes { max: usize },
    #[error(transparent)]
    TooManySockets(#[from] SocketRefused),
    #[error(transparent)]
    Event(#[from] EventError),
    #[error(transparent)]
    Auth(#[from] AuthError),
    #[error(
        "accounts are off: give a class `access = \"user\"` or `\"org\"`, or add an [auth] section to the config"
    )]
    AccountsDisabled,
    #[error("{}", access_hint(class, *access))]
    AccessDenied { class: String, access: Access },
    #[error("class {class} is not reached this way (its access is {}); {}", access.as_str(), access_hint(class, *access))]
    WrongRoute { class: String, access: Access },
    #[error(
        "requests to /auth from other sites' pages or objects' sandboxed pages are refused (the Origin header does not match the Host, or Sec-Fetch-Site is not same-origin)"
    )]
    CrossOrigin,
    #[error("this needs a live API key: Authorization: Bearer pk_...")]
    InvalidKey,
    #[error("class {class} has no handle {handle:?}")]
    HandleNotFound { class: String, handle: String },
    #[error("object {name:?} of class {class:?} does not exist")]
    ObjectNotFound { class: String, name: String },
    #[error(transparent)]
    Query(#[from] QueryFailure),
    #[error("the database was not imported: {0}")]
    ImportRefused(String),
    #[error("the object was not restored: {0}")]
    RestoreRefused(String),
    #[error("the replication store cannot be reached: {0}")]
    ReplicationUnavailable(String),
    #[error("this needs the admin token: a tenant's token acts only on its own classes")]
    AdminOnly,
    #[error(transparent)]
    Tenant(#[from] TenantError),
    #[error(transparent)]
    Deploy(#[from] DeployError),
    #[error(transparent)]
    Cluster(#[from] ClusterError),
}

impl From<AdminError> for ApiError {
    fn from(error: AdminError) -> Self {
        match error {
            AdminError::NotFound { class, name } => ApiError::ObjectNotFound { class, name },
            AdminError::Query(failure) => ApiError::Query(failure),
            AdminError::ImportRefused(reason) => ApiError::ImportRefused(reason),
            AdminError::Event(event) => ApiError::Event(event),
            AdminError::Internal(message) => ApiError::Internal(message),
        }
    }
}

/// How objects of `class` are reached, given its access.
fn access_hint(class: &str, access: Access) -> String {
    match access {
        Access::Public => format!("reach its objects at /objects/{class}/{{name}}"),
        Access::User => format!("each user reaches their own object at /me/{class}"),
        Access::Org => {
            format!("members reach their organization's object at /orgs/{{org}}/{class}")
        }
        Access::Key => "it is reached with an API key at /key".to_string(),
        Access::Admin => format!("class {class} is reached only with the admin token"),
    }
}

impl ApiError {
    pub(crate) fn status_and_code(&self) -> (StatusCode, &'static str) {
        match self {
            ApiError::RouteNotFound => (StatusCode::NOT_FOUND, "route_not_found"),
            ApiError::MethodNotAllowed => (StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed"),
            ApiError::AdminDisabled => (StatusCode::NOT_FOUND, "admin_disabled"),
            ApiError::Unauthorized => (StatusCode::UNAUTHORIZED, "unauthorized"),
            ApiError::Internal(_) => (StatusCode::INTERNAL_SERVER_ERROR, "internal"),
            ApiError::BadRequest(_) => (StatusCode::BAD_REQUEST, "bad_request"),
            ApiError::BodyTooLarge { .. } => (StatusCode::PAYLOAD_TOO_LARGE, "body_too_large"),
            ApiError::InvalidResponse(_) => (StatusCode::INTERNAL_SERVER_ERROR, "invalid_response"),
            ApiError::ResponseTooLarge { .. } => {
                (StatusCode::INTERNAL_SERVER_ERROR, "response_too_large")
            }
            ApiError::TooManyHandshakes { .. } => {
                (StatusCode::SERVICE_UNAVAILABLE, "too_many_handshakes")
            }
            ApiError::TooManySockets(_) => (StatusCode::SERVICE_UNAVAILABLE, "too_many_sockets"),
            ApiError::AccountsDisabled => (StatusCode::NOT_FOUND, "accounts_disabled"),
            ApiError::AccessDenied { .. } => (StatusCode::FORBIDDEN, "access_denied"),
            ApiError::WrongRoute { .. } => (StatusCode::NOT_FOUND, "wrong_route"),
            ApiError::InvalidKey => (StatusCode::UNAUTHORIZED, "invalid_key"),
            ApiError::CrossOrigin => (StatusCode::FORBIDDEN, "cross_origin"),
            ApiError::HandleNotFound { .. } => (StatusCode::NOT_FOUND, "handle_not_found"),
            ApiError::ObjectNotFound { .. } => (StatusCode::NOT_FOUND, "object_not_found"),
            ApiError::Query(QueryFailure::Refused(_)) => (StatusCode::BAD_REQUEST, "query_refused"),
            ApiError::Query(QueryFailure::Timeout(_)) => (StatusCode::BAD_REQUEST, "query_timeout"),
            ApiError::Query(QueryFailure::Failed(_)) => (StatusCode::BAD_REQUEST, "query_failed"),
            ApiError::ImportRefused(_) => (StatusCode::UNPROCESSABLE_ENTITY, "import_refused"),
            ApiError::RestoreRefused(_) => (StatusCode::UNPROCESSABLE_ENTITY, "restore_refused"),
            ApiError::ReplicationUnavailable(_) => {
                (StatusCode::SERVICE_UNAVAILABLE, "replication_unavailable")
            }
            ApiError::AdminOnly => (StatusCode::FORBIDDEN, "forbidden"),
            ApiError::Tenant(tenant) => tenant_status(tenant),
            ApiError::Deploy(deploy) => deploy_status(deploy),
            ApiError::Cluster(cluster) => (StatusCode::SERVICE_UNAVAILABLE, cluster.code()),
            ApiError::Auth(auth) => match auth {
                AuthError::Invalid(_) => (StatusCode::BAD_REQUEST, "bad_request"),
                AuthError::WeakPassword(_) => (StatusCode::BAD_REQUEST, "weak_password"),
                AuthError::EmailTaken => (StatusCode::CONFLICT, "email_taken"),
                AuthError::BadCredentials => (StatusCode::UNAUTHORIZED, "bad_credentials"),
                AuthError::RateLimited(_) => (StatusCode::TOO_MANY_REQUESTS, "rate_limited"),
                AuthError::Unauthenticated => (StatusCode::UNAUTHORIZED, "unauthenticated"),
                AuthError::InvalidToken => (StatusCode::UNAUTHORIZED, "invalid_token"),
                AuthError::TokenExpired => (StatusCode::UNAUTHORIZED, "token_expired"),
                AuthError::SessionEnded => (StatusCode::UNAUTHORIZED, "session_ended"),
                AuthError::NoSuchOrg => (StatusCode::NOT_FOUND, "org_not_found"),
                AuthError::NoSuchUser => (StatusCode::NOT_FOUND, "user_not_found"),
                AuthError::UnknownUserId => (StatusCode::NOT_FOUND, "user_not_found"),
                AuthError::AccountDisabled => (StatusCode::FORBIDDEN, "account_disabled"),
                AuthError::RoleTooLow(_) => (StatusCode::FORBIDDEN, "role_too_low"),
                AuthError::LastOwner => (StatusCode::CONFLICT, "last_owner"),
                AuthError::Internal(_) => (StatusCode::INTERNAL_SERVER_ERROR, "internal"),
            },
            ApiError::Event(event) => match event {
                EventError::NoSuchClass(_) => (StatusCode::NOT_FOUND, "class_not_found"),
                EventError::Trapped => (StatusCode::INTERNAL_SERVER_ERROR, "object_trapped"),
                EventError::LimitExceeded(LimitExceeded::Cpu(_)) => {
                    (StatusCode::INTERNAL_SERVER_ERROR, "cpu_limit_exceeded")
                }
                EventError::LimitExceeded(LimitExceeded::Memory(_)) => {
                    (StatusCode::INTERNAL_SERVER_ERROR, "memory_limit_exceeded")
                }
                EventError::LimitExceeded(LimitExceeded::Wall(_)) => {
                    (StatusCode::INTERNAL_SERVER_ERROR, "wall_time_exceeded")
                }
                EventError::LimitExceeded(LimitExceeded::HostMemory(_)) => {
                    (StatusCode::SERVICE_UNAVAILABLE, "host_memory_exhausted")
                }
                EventError::Activation => (StatusCode::INTERNAL_SERVER_ERROR, "activation_failed"),
                EventError::EventLog => (StatusCode::INTERNAL_SERVER_ERROR, "event_log_failed"),
                EventError::DeleteFailed | EventError::ReferencesRemain => {
                    (StatusCode::INTERNAL_SERVER_ERROR, "delete_failed")
                }
                EventError::DeferredConstraint => (StatusCode::CONFLICT, "constraint_failed"),
                EventError::Migration(_) => (StatusCode::INTERNAL_SERVER_ERROR, "migration_failed"),
                EventError::Commit => (StatusCode::INTERNAL_SERVER_ERROR, "commit_failed"),
                EventError::Overloaded => (StatusCode::SERVICE_UNAVAILABLE, "object_overloaded"),
                EventError::ReplicationUnavailable => {
                    (StatusCode::SERVICE_UNAVAILABLE, "replication_unavailable")
                }
                EventError::TooManyActive => {
                    (StatusCode::SERVICE_UNAVAILABLE, "too_many_active_objects")
                }
                EventError::ShuttingDown => (StatusCode::SERVICE_UNAVAILABLE, "shutting_down"),
                EventError::QuotaExceeded(_) => (StatusCode::FORBIDDEN, "quota_exceeded"),
                EventError::Cluster(cluster) => (StatusCode::SERVICE_UNAVAILABLE, cluster.code()),
            },
        }
    }
}

/// A refused deploy is the client's to fix (4xx), but for the host's own
/// failures.
fn deploy_status(error: &DeployError) -> (StatusCode, &'static str) {
    match error {
        DeployError::BadName(_) => (StatusCode::BAD_REQUEST, "invalid_class_name"),
        DeployError::TooLarge { .. } => (StatusCode::PAYLOAD_TOO_LARGE, "component_too_large"),
        DeployError::BadConfig(_) => (StatusCode::BAD_REQUEST, "invalid_class_config"),
        DeployError::Component(component) => match component {
            ClassError::NotWasm => (StatusCode::BAD_REQUEST, "not_wasm"),
            ClassError::CoreModule => (StatusCode::BAD_REQUEST, "core_module"),
            ClassError::Invalid(_) => (StatusCode::BAD_REQUEST, "invalid_component"),
            ClassError::UnknownImport(_) => (StatusCode::BAD_REQUEST, "unknown_import"),
            ClassError::NotOurWorld(_) => (StatusCode::BAD_REQUEST, "wrong_world"),
        },
        DeployError::Migration(_) => (StatusCode::BAD_REQUEST, "migration_failed"),
        DeployError::NotAppendOnly { .. } => (StatusCode::CONFLICT, "migrations_not_append_only"),
        DeployError::Busy(_) => (StatusCode::CONFLICT, "deploy_in_progress"),
        DeployError::NoSuchClass(_) => (StatusCode::NOT_FOUND, "class_not_found"),
        DeployError::NoSuchVersion { .. } => (StatusCode::NOT_FOUND, "version_not_found"),
        DeployError::NoPreviousVersion(_) => (StatusCode::CONFLICT, "no_previous_version"),
        DeployError::ObjectsExist { .. } => (StatusCode::CONFLICT, "objects_exist"),
        DeployError::NoSuchObject { .. } => (StatusCode::NOT_FOUND, "object_not_found"),
        DeployError::ObjectBusy(_) => (StatusCode::CONFLICT, "object_busy"),
        DeployError::Tenant(tenant) => tenant_status(tenant),
        DeployError::Internal(_) => (StatusCode::INTERNAL_SERVER_ERROR, "internal"),
    }
}

fn tenant_status(error: &TenantError) -> (StatusCode, &'static str) {
    match error {
        TenantError::Invalid(_) => (StatusCode::BAD_REQUEST, "bad_request"),
        TenantError::Exists(_) => (StatusCode::CONFLICT, "tenant_exists"),
        TenantError::NoSuchTenant(_) => (StatusCode::NOT_FOUND, "tenant_not_found"),
        TenantError::OwnsClasses { .. } => (StatusCode::CONFLICT, "tenant_owns_classes"),
        // As for a class that does not exist: existence must not leak.
        TenantError::NotFound(_) => (StatusCode::NOT_FOUND, "class_not_found"),
        TenantError::Forbidden(_) => (StatusCode::FORBIDDEN, "forbidden"),
        TenantError::Quota(_) => (StatusCode::FORBIDDEN, "quota_exceeded"),
        TenantError::Internal(_) => (StatusCode::INTERNAL_SERVER_ERROR, "internal"),
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (status, code) = self.status_and_code();
        if status == StatusCode::INTERNAL_SERVER_ERROR {
            tracing::warn!(error = %self, "request failed");
        }
        let body = json!({ "error": { "code": code, "message": self.to_string() } });
        let mut response = (status, Json(body)).into_response();
        if let ApiError::TooManyHandshakes { .. } = &self {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
        }
        if let ApiError::Auth(AuthError::RateLimited(wait)) = &self {
            let seconds = wait.as_secs().max(1).to_string();
            if let Ok(value) = HeaderValue::from_str(&seconds) {
                response.headers_mut().insert(header::RETRY_AFTER, value);
            }
        }
        if let ApiError::MethodNotAllowed = &self {
            response
                .headers_mut()
                .insert(header::ALLOW, HeaderValue::from_static("GET, HEAD"));
        }
        if status == StatusCode::UNAUTHORIZED {
            response
                .headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        response
    }
}
