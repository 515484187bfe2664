//! `Routed<N>`: the route parameters of a request delivered to an object,
//! and the rest of its path (`{*path}`, empty at the object's root), so
//! one handler serves both `/…/{name}` and `/…/{name}/{*path}`.

use axum::extract::{FromRequestParts, Path};
use axum::http::request::Parts;
use axum::response::{IntoResponse, Response};

use super::ApiError;

/// The name of the route parameter holding the rest of the path.
const REST: &str = "path";

pub struct Routed<const N: usize> {
    /// The route's other parameters, in the order the route names them.
    pub params: [String; N],
    pub path: String,
}

impl<S: Send + Sync, const N: usize> FromRequestParts<S> for Routed<N> {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Response> {
        // Percent-decoded as `Path` does, with its rejections; a route
        // without parameters (`/key`) has none to decode.
        let pairs = Option::<Path<Vec<(String, String)>>>::from_request_parts(parts, state)
            .await
            .map_err(IntoResponse::into_response)?
            .map(|Path(pairs)| pairs)
            .unwrap_or_default();
        let mut path = String::new();
        let mut params = Vec::with_capacity(N);
        for (key, value) in pairs {
            if key == REST {
                path = value;
            } else {
                params.push(value);
            }
        }
        let params = <[String; N]>::try_from(params).map_err(|_| {
            ApiError::Internal("a route's parameters do not match its handler".into())
                .into_response()
        })?;
        Ok(Routed { params, path })
    }
}
