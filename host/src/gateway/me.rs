//! `ANY /me/{class}[/{*path}]`: the signed-in user's own object of a
//! per-user class (`access = "user"`), named by their user id.

use axum::extract::{Request, State};
use axum::response::Response;

use super::routed::Routed;
use super::{ApiError, Gateway, auth, objects};
use crate::accounts::Admission;
use crate::config::Access;

pub async fn deliver(
    State(gateway): State<Gateway>,
    routed: Routed<1>,
    request: Request,
) -> Result<Response, ApiError> {
    let [class] = routed.params();
    forward_to_own(&gateway, class, routed.path(), request).await
}

async fn forward_to_own(
    gateway: &Gateway,
    class: &str,
    path: &str,
    request: Request,
) -> Result<Response, ApiError> {
    let (_, signed_in) = auth::signed_in(gateway, request.headers())?;
    let access = gateway.runtime().class(class)?.settings().access;
    if access != Access::User {
        return Err(ApiError::WrongRoute {
            class: class.to_string(),
            access,
        });
    }
    let name = signed_in.user.id.clone();
    let admission = Admission::user(signed_in.user, &signed_in.session);
    objects::forward(gateway, class, &name, path, request, admission).await
}
