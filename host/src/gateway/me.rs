//! `ANY /me/{class}[/{*path}]`: the signed-in user's own object of a
//! per-user class (`access = "user"`), named by their user id.

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::response::Response;

use super::routed::Routed;
use super::{ApiError, auth, objects};
use crate::accounts::Admission;
use crate::config::Access;
use crate::runtime::Runtime;

pub async fn deliver(
    State(runtime): State<Arc<Runtime>>,
    Routed {
        params: [class],
        path,
    }: Routed<1>,
    request: Request,
) -> Result<Response, ApiError> {
    forward_to_own(&runtime, &class, &path, request).await
}

async fn forward_to_own(
    runtime: &Arc<Runtime>,
    class: &str,
    path: &str,
    request: Request,
) -> Result<Response, ApiError> {
    let (_, signed_in) = auth::signed_in(runtime, request.headers())?;
    let access = runtime.class(class)?.settings().access;
    if access != Access::User {
        return Err(ApiError::WrongRoute {
            class: class.to_string(),
            access,
        });
    }
    let name = signed_in.user.id.clone();
    let admission = Admission::user(signed_in.user, &signed_in.session);
    objects::forward(runtime, class, &name, path, request, admission).await
}
