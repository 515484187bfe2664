//! What every request meets first. A request to an object by name
//! (`/objects/{class}/{name}[/{*path}]`, the hot path) goes straight to
//! its handler, without the router's per-request work (matching, the
//! parameters copied into `Arc`s, extensions, boxed services); any other
//! request, and any such path the router would refuse or answer
//! otherwise, goes through the router, so the answers are the router's.

use std::borrow::Cow;
use std::convert::Infallible;

use axum::Router;
use axum::body::Body;
use axum::extract::Request;
use axum::http::{HeaderValue, Method, header};
use axum::response::{IntoResponse, Response};
use http_body::Body as _;
use percent_encoding::percent_decode_str;
use tower::ServiceExt as _;

use super::{Gateway, objects};

/// The gateway's router, and the shortcut past it for objects' requests.
#[derive(Clone)]
pub struct Front {
    gateway: Gateway,
    router: Router,
}

impl Front {
    pub fn new(gateway: Gateway) -> Self {
        let router = super::router(gateway.clone());
        Front { gateway, router }
    }

    /// Answers `request`.
    pub async fn serve(self, request: Request) -> Response {
        let uri = request.uri().clone();
        let head = request.method() == Method::HEAD;
        let Some(target) = ObjectPath::parse(request.method(), uri.path()) else {
            let routed = self.router.oneshot(request).await;
            return routed.unwrap_or_else(|never: Infallible| match never {});
        };
        let response = async {
            let admission = objects::by_name(&self.gateway, &target.class, &request)?;
            objects::forward(
                &self.gateway,
                &target.class,
                &target.name,
                &target.path,
                request,
                admission,
            )
            .await
        }
        .await;
        finish(response.into_response(), head)
    }
}

/// What the router's `Route` does to every response: a `Content-Length`
/// when the body's size is known, and no body for `HEAD` (after the
/// length, which a `HEAD` answer carries).
fn finish(mut response: Response, head: bool) -> Response {
    if !response.headers().contains_key(header::CONTENT_LENGTH)
        && let Some(size) = response.body().size_hint().exact()
    {
        response
            .headers_mut()
            .insert(header::CONTENT_LENGTH, HeaderValue::from(size));
    }
    if head {
        *response.body_mut() = Body::empty();
    }
    response
}

/// The class, name and rest of an object's path, percent-decoded, as the
/// router's two object routes match them.
#[derive(Debug, PartialEq)]
struct ObjectPath<'a> {
    class: Cow<'a, str>,
    name: Cow<'a, str>,
    /// Empty at the object's root.
    path: Cow<'a, str>,
}

impl<'a> ObjectPath<'a> {
    /// None for anything the router should see: another route, a path
    /// ending in an empty segment or a `/` (no route takes it), text that
    /// is not UTF-8 once decoded (the router refuses it), and `CONNECT`,
    /// whose answers the router treats apart. `agrees_with_the_router`
    /// holds this to the router's matching.
    fn parse(method: &Method, path: &'a str) -> Option<Self> {
        if method == Method::CONNECT {
            return None;
        }
        let rest = path.strip_prefix("/objects/")?;
        let (class, rest) = rest.split_once('/')?;
        let (name, path) = match rest.split_once('/') {
            Some((_, "")) => return None,
            Some((name, path)) => (name, path),
            None => (rest, ""),
        };
        // As the router matches: a segment may be empty when more path
        // follows it, and the last may not.
        if name.is_empty() && path.is_empty() {
            return None;
        }
        let decode = |text: &'a str| percent_decode_str(text).decode_utf8().ok();
        Some(ObjectPath {
            class: decode(class)?,
            name: decode(name)?,
            path: decode(path)?,
        })
    }
}

#[cfg(test)]
mod tests {
    use axum::body::to_bytes;
    use axum::routing::any;

    use super::super::routed::Routed;
    use super::*;

    /// What the shortcut makes of `path`, in `routed`'s terms.
    fn parse(path: &str) -> Option<(String, String, String)> {
        ObjectPath::parse(&Method::GET, path)
            .map(|target| (target.class.into(), target.name.into(), target.path.into()))
    }

    #[test]
    fn connect_is_left_to_the_router() {
        assert!(ObjectPath::parse(&Method::GET, "/objects/c/n").is_some());
        assert_eq!(ObjectPath::parse(&Method::CONNECT, "/objects/c/n"), None);
    }

    /// What the router's two object routes make of `path`: its class,
    /// name and rest, or None when it answers otherwise.
    async fn routed(path: &str) -> Option<(String, String, String)> {
        async fn echo(routed: Routed<2>) -> String {
            let [class, name] = routed.params();
            format!("{class}\n{name}\n{}", routed.path())
        }
        let router: Router = Router::new()
            .route("/objects/{class}/{name}", any(echo))
            .route("/objects/{class}/{name}/{*path}", any(echo));
        let request = Request::get(path).body(Body::empty()).expect("a request");
        let response = router.oneshot(request).await.expect("infallible");
        if !response.status().is_success() {
            return None;
        }
        let body = to_bytes(response.into_body(), 1024).await.expect("a body");
        let body = String::from_utf8(body.to_vec()).expect("text");
        let mut parts = body.splitn(3, '\n').map(str::to_string);
        Some((parts.next()?, parts.next()?, parts.next()?))
    }

    #[tokio::test]
    async fn agrees_with_the_router() {
        for path in [
            "/objects/c/n",
            "/objects/c/n/a/b",
            "/objects/c/n/a/",
            "/objects/c/n/a//b",
            "/objects/c/n/./x",
            "/objects/c/n?q=1",
            "/objects/c/n/x?q=1",
            "/objects/%63/n",
            "/objects/c/caf%C3%A9/x%20y",
            "/objects/c/a%2Fb",
            "/objects/c/n/%FF",
            "/objects/c/%FF",
            "/objects/c/n%",
            "/objects/c/n/",
            "/objects/c/",
            "/objects/c",
            "/objects//n",
            "/objects/c//x",
            "/objects//",
            "/objects///x",
            "/objects/c/n//",
            "/objectsx/c/n",
            "/me/c",
        ] {
            let uri: axum::http::Uri = path.parse().expect("a URI");
            assert_eq!(parse(uri.path()), routed(path).await, "{path}");
        }
    }
}
