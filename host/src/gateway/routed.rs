//! `Routed<N>`: the route parameters of a request delivered to an object,
//! and the rest of its path (`{*path}`, empty at the object's root), so
//! one handler serves both `/…/{name}` and `/…/{name}/{*path}`.

use axum::extract::rejection::RawPathParamsRejection;
use axum::extract::{FromRequestParts, RawPathParams};
use axum::http::request::Parts;
use axum::response::{IntoResponse, Response};

use super::ApiError;

/// The name of the route parameter holding the rest of the path.
const REST: &str = "path";

/// Borrowed from the parameters the router decoded, with no copies: this
/// is on every request to an object.
pub struct Routed<const N: usize> {
    /// None on a route without parameters (`/key`).
    raw: Option<RawPathParams>,
}

impl<const N: usize> Routed<N> {
    /// The route's other parameters, in the order the route names them.
    pub fn params(&self) -> [&str; N] {
        let mut values = self.others().map(|(_, value)| value);
        std::array::from_fn(|_| values.next().unwrap_or_default())
    }

    /// The rest of the path, empty at the object's root.
    pub fn path(&self) -> &str {
        self.pairs()
            .find(|(key, _)| *key == REST)
            .map_or("", |(_, value)| value)
    }

    fn pairs(&self) -> impl Iterator<Item = (&str, &str)> {
        self.raw.iter().flat_map(RawPathParams::iter)
    }

    fn others(&self) -> impl Iterator<Item = (&str, &str)> {
        self.pairs().filter(|(key, _)| *key != REST)
    }
}

impl<S: Send + Sync, const N: usize> FromRequestParts<S> for Routed<N> {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Response> {
        // Percent-decoded by the router; invalid UTF-8 is refused here.
        let raw = match RawPathParams::from_request_parts(parts, state).await {
            Ok(raw) => Some(raw),
            Err(RawPathParamsRejection::MissingPathParams(_)) => None,
            Err(rejection) => return Err(rejection.into_response()),
        };
        let routed = Routed { raw };
        if routed.others().count() != N {
            return Err(
                ApiError::Internal("a route's parameters do not match its handler".into())
                    .into_response(),
            );
        }
        Ok(routed)
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
        async fn two(routed: Routed<2>) -> String {
            format!("{:?} {:?}", routed.params(), routed.path())
        }
        async fn none(routed: Routed<0>) -> String {
            format!("{:?}", routed.path())
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
        // Percent-decoded bytes that are not UTF-8 are refused.
        let request = Request::get("/o/c/%FF")
            .body(Body::empty())
            .expect("a request");
        let response = router.call(request).await.expect("infallible");
        assert_eq!(response.status(), 400);
    }
}
