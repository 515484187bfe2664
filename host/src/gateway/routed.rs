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

#[cfg(test)]
mod tests {
    use axum::Router;
    use axum::body::{Body, to_bytes};
    use axum::http::Request;
    use axum::routing::any;
    use tower_service::Service as _;

    use super::*;

    async fn get(router: &mut Router, uri: &str) -> String {
        let request = Request::get(uri).body(Body::empty()).expect("a request");
        let response = router.call(request).await.expect("infallible");
        let body = to_bytes(response.into_body(), 1024).await.expect("a body");
        String::from_utf8_lossy(&body).into_owned()
    }

    #[tokio::test]
    async fn serves_the_root_and_the_rest_of_the_path() {
        async fn two(Routed { params, path }: Routed<2>) -> String {
            format!("{params:?} {path:?}")
        }
        async fn none(Routed { path, .. }: Routed<0>) -> String {
            format!("{path:?}")
        }
        let mut router = Router::new()
            .route("/o/{class}/{name}", any(two))
            .route("/o/{class}/{name}/{*path}", any(two))
            .route("/key", any(none))
            .route("/key/{*path}", any(none));
        assert_eq!(get(&mut router, "/o/c/n").await, r#"["c", "n"] """#);
        assert_eq!(
            get(&mut router, "/o/c/caf%C3%A9/a/b").await,
            r#"["c", "café"] "a/b""#
        );
        assert_eq!(get(&mut router, "/key").await, r#""""#);
        assert_eq!(get(&mut router, "/key/x/y").await, r#""x/y""#);
    }
}
