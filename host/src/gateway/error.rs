//! Every error the gateway answers with: a status and a JSON body
//! `{"error": {"code": "...", "message": "..."}}`.

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::json;

use crate::limits::LimitExceeded;
use crate::object::EventError;
use crate::sockets::SocketRefused;

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("no route matches this path")]
    RouteNotFound,
    #[error("the admin API is off: set admin_token in the config to turn it on")]
    AdminDisabled,
    #[error("this needs the admin token: Authorization: Bearer <admin_token>")]
    Unauthorized,
    #[error("internal error: {0}")]
    Internal(String),
    #[error("{0}")]
    BadRequest(String),
    #[error("the request body is larger than the limit of {limit} bytes")]
    BodyTooLarge { limit: usize },
    #[error("the object answered with an invalid response: {0}")]
    InvalidResponse(String),
    #[error(transparent)]
    TooManySockets(#[from] SocketRefused),
    #[error(transparent)]
    Event(#[from] EventError),
}

impl ApiError {
    fn status_and_code(&self) -> (StatusCode, &'static str) {
        match self {
            ApiError::RouteNotFound => (StatusCode::NOT_FOUND, "route_not_found"),
            ApiError::AdminDisabled => (StatusCode::NOT_FOUND, "admin_disabled"),
            ApiError::Unauthorized => (StatusCode::UNAUTHORIZED, "unauthorized"),
            ApiError::Internal(_) => (StatusCode::INTERNAL_SERVER_ERROR, "internal"),
            ApiError::BadRequest(_) => (StatusCode::BAD_REQUEST, "bad_request"),
            ApiError::BodyTooLarge { .. } => (StatusCode::PAYLOAD_TOO_LARGE, "body_too_large"),
            ApiError::InvalidResponse(_) => (StatusCode::BAD_GATEWAY, "invalid_response"),
            ApiError::TooManySockets(_) => (StatusCode::SERVICE_UNAVAILABLE, "too_many_sockets"),
            ApiError::Event(event) => match event {
                EventError::NoSuchClass(_) => (StatusCode::NOT_FOUND, "class_not_found"),
                EventError::Trapped => (StatusCode::INTERNAL_SERVER_ERROR, "object_trapped"),
                EventError::LimitExceeded(LimitExceeded::Cpu(_)) => {
                    (StatusCode::INTERNAL_SERVER_ERROR, "cpu_limit_exceeded")
                }
                EventError::LimitExceeded(LimitExceeded::Memory(_)) => {
                    (StatusCode::INTERNAL_SERVER_ERROR, "memory_limit_exceeded")
                }
                EventError::Activation => (StatusCode::INTERNAL_SERVER_ERROR, "activation_failed"),
                EventError::EventLog => (StatusCode::INTERNAL_SERVER_ERROR, "event_log_failed"),
                EventError::DeleteFailed => (StatusCode::INTERNAL_SERVER_ERROR, "delete_failed"),
                EventError::DeferredConstraint => (StatusCode::CONFLICT, "constraint_failed"),
                EventError::Migration(_) => (StatusCode::INTERNAL_SERVER_ERROR, "migration_failed"),
                EventError::Commit => (StatusCode::INTERNAL_SERVER_ERROR, "commit_failed"),
                EventError::Overloaded => (StatusCode::SERVICE_UNAVAILABLE, "object_overloaded"),
                EventError::TooManyActive => {
                    (StatusCode::SERVICE_UNAVAILABLE, "too_many_active_objects")
                }
                EventError::ShuttingDown => (StatusCode::SERVICE_UNAVAILABLE, "shutting_down"),
            },
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (status, code) = self.status_and_code();
        let body = json!({ "error": { "code": code, "message": self.to_string() } });
        (status, Json(body)).into_response()
    }
}
