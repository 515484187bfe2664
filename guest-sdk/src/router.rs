//! Routes a request to a handler by method and path, with path parameters.
//!
//! ```ignore
//! static ROUTES: LazyLock<Router<Blog>> = LazyLock::new(|| {
//!     Router::<Blog>::new()     // name the type: the closures' arguments come from it
//!         .get("/posts", |blog, _req, _params| blog.list())
//!         .post("/posts", |blog, req, _params| blog.create(req.json()?))
//!         .get("/posts/:id", |blog, _req, params| blog.show(params.get("id")?))
//! });
//!
//! fn fetch(&mut self, req: Request) -> Result<Response> {
//!     ROUTES.handle(self, req)
//! }
//! ```
//!
//! A path that no route has is a 404 `not_found`; one that routes have,
//! but not for the request's method, a 405 `method_not_allowed` with an
//! `Allow` header listing the methods that are (`HEAD` is answered by the
//! `GET` route). Segments match exactly,
//! `:name` (or `{name}`) matches one non-empty segment and captures it,
//! percent-decoded; empty segments are ignored, so `/posts/` is `/posts`.

use http::{HeaderValue, Method, StatusCode, header};

use crate::{Error, Request, Response, Result};

/// A route's handler: the object, the request and the path's parameters.
/// Closures that capture nothing are handlers too.
pub type Handler<S> = fn(&mut S, Request, &Params) -> Result<Response>;

/// Routes for an object of type `S`. Handlers are plain functions, so a
/// router can live in a `static` (`LazyLock`) and is built once.
pub struct Router<S> {
    routes: Vec<Route<S>>,
}

struct Route<S> {
    method: Method,
    pattern: Vec<Part>,
    handler: Handler<S>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Part {
    Literal(String),
    Param(String),
}

/// The parameters a route's pattern captured, by name.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Params {
    pairs: Vec<(String, String)>,
}

impl Params {
    /// The parameter `name`; a 500 if the route has none (a typo in the
    /// pattern or the handler).
    pub fn get(&self, name: &str) -> Result<&str> {
        self.find(name)
            .ok_or_else(|| Error::internal(format!("the route has no parameter :{name}")))
    }

    /// The parameter `name`, if the route has one.
    pub fn find(&self, name: &str) -> Option<&str> {
        self.pairs
            .iter()
            .find(|(key, _)| key == name)
            .map(|(_, value)| value.as_str())
    }

    /// The parameter `name` as a number (an id, say); `None` if it is not
    /// one, which handlers usually answer with a 404.
    pub fn number(&self, name: &str) -> Result<Option<i64>> {
        Ok(self.get(name)?.parse().ok())
    }
}

impl<S> Default for Router<S> {
    fn default() -> Self {
        Router { routes: Vec::new() }
    }
}

impl<S> Router<S> {
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a route for `method` and `pattern` (`/posts/:id`).
    pub fn route(mut self, method: Method, pattern: &str, handler: Handler<S>) -> Self {
        let pattern = segments(pattern)
            .map(|segment| {
                let name = segment.strip_prefix(':').or_else(|| {
                    segment
                        .strip_prefix('{')
                        .and_then(|rest| rest.strip_suffix('}'))
                });
                match name {
                    Some(name) => Part::Param(name.to_string()),
                    None => Part::Literal(segment.to_string()),
                }
            })
            .collect();
        self.routes.push(Route {
            method,
            pattern,
            handler,
        });
        self
    }

    pub fn get(self, pattern: &str, handler: Handler<S>) -> Self {
        self.route(Method::GET, pattern, handler)
    }

    pub fn post(self, pattern: &str, handler: Handler<S>) -> Self {
        self.route(Method::POST, pattern, handler)
    }

    pub fn put(self, pattern: &str, handler: Handler<S>) -> Self {
        self.route(Method::PUT, pattern, handler)
    }

    pub fn patch(self, pattern: &str, handler: Handler<S>) -> Self {
        self.route(Method::PATCH, pattern, handler)
    }

    pub fn delete(self, pattern: &str, handler: Handler<S>) -> Self {
        self.route(Method::DELETE, pattern, handler)
    }

    /// Runs the handler of the first route that matches the request.
    pub fn handle(&self, state: &mut S, request: Request) -> Result<Response> {
        let (handler, params) = self.find(request.method(), request.path())?;
        handler(state, request, &params)
    }

    /// The handler and parameters for `method` and `path`, or the 404 or
    /// 405 error the request gets.
    fn find(&self, method: &Method, path: &str) -> Result<(Handler<S>, Params)> {
        let path: Vec<&str> = segments(path).collect();
        let mut allowed: Vec<&Method> = Vec::new();
        for route in &self.routes {
            let Some(params) = matches(&route.pattern, &path) else {
                continue;
            };
            // HEAD is GET without the body, which the host leaves out.
            if route.method == method || (method == Method::HEAD && route.method == Method::GET) {
                return Ok((route.handler, params));
            }
            if !allowed.contains(&&route.method) {
                allowed.push(&route.method);
            }
        }
        if allowed.is_empty() {
            return Err(Error::not_found(format!(
                "no route for /{}",
                path.join("/")
            )));
        }
        let allow = allowed
            .iter()
            .map(|m| m.as_str())
            .collect::<Vec<_>>()
            .join(", ");
        let value = HeaderValue::from_str(&allow)
            .map_err(|_| Error::internal("a route's method is not a valid header value"))?;
        Err(Error::new(
            StatusCode::METHOD_NOT_ALLOWED,
            format!("{method} is not allowed here; allowed: {allow}"),
        )
        .with_header(header::ALLOW, value))
    }
}

fn segments(path: &str) -> impl Iterator<Item = &str> {
    path.split('/').filter(|segment| !segment.is_empty())
}

fn matches(pattern: &[Part], path: &[&str]) -> Option<Params> {
    if pattern.len() != path.len() {
        return None;
    }
    let mut params = Params::default();
    for (part, segment) in pattern.iter().zip(path) {
        match part {
            Part::Literal(literal) if literal == segment => {}
            Part::Literal(_) => return None,
            Part::Param(name) => params.pairs.push((
                name.clone(),
                crate::http_types::percent_decode_path(segment),
            )),
        }
    }
    Some(params)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bindings::podhost::object::types;

    fn request(method: &str, path: &str) -> Request {
        Request::from_wit(types::Request {
            method: method.into(),
            path_with_query: path.into(),
            headers: vec![],
            body: b"{}".to_vec(),
            caller: None,
            client_address: None,
        })
        .expect("a valid request")
    }

    fn router() -> Router<Vec<String>> {
        Router::<Vec<String>>::new()
            .get("/posts", |seen, _, _| {
                seen.push("list".into());
                Ok(Response::text("list"))
            })
            .post("/posts", |_, _, _| Ok(Response::text("create")))
            .get("/posts/:id", |_, _, params| {
                Ok(Response::text(format!("show {}", params.get("id")?)))
            })
            .delete("/posts/{id}", |_, _, params| {
                Ok(Response::text(format!("delete {:?}", params.number("id")?)))
            })
            .get("/posts/:id/comments/:comment", |_, _, params| {
                Ok(Response::text(format!(
                    "{} {}",
                    params.get("id")?,
                    params.get("comment")?
                )))
            })
    }

    fn text(result: Result<Response>) -> String {
        let response = result.expect("a response");
        String::from_utf8(response.body().to_vec()).expect("UTF-8")
    }

    #[test]
    fn routes_by_method_and_path_with_params() {
        let router = router();
        let mut seen = Vec::new();
        assert_eq!(
            text(router.handle(&mut seen, request("GET", "/posts"))),
            "list"
        );
        assert_eq!(seen, ["list"]);
        assert_eq!(
            text(router.handle(&mut seen, request("GET", "/posts/"))),
            "list"
        );
        assert_eq!(
            text(router.handle(&mut seen, request("POST", "/posts"))),
            "create"
        );
        assert_eq!(
            text(router.handle(&mut seen, request("GET", "/posts/7?full=1"))),
            "show 7"
        );
        assert_eq!(
            text(router.handle(&mut seen, request("GET", "/posts/caf%C3%A9"))),
            "show caf\u{e9}"
        );
        assert_eq!(
            text(router.handle(&mut seen, request("DELETE", "/posts/x"))),
            "delete None"
        );
        assert_eq!(
            text(router.handle(&mut seen, request("GET", "/posts/7/comments/9"))),
            "7 9"
        );
    }

    #[test]
    fn head_is_answered_by_the_get_route() {
        let mut seen = Vec::new();
        assert_eq!(
            text(router().handle(&mut seen, request("HEAD", "/posts"))),
            "list"
        );
    }

    #[test]
    fn an_unknown_path_is_a_404() {
        let err = router()
            .handle(&mut Vec::new(), request("GET", "/nope"))
            .expect_err("no such route");
        assert_eq!(err.status(), StatusCode::NOT_FOUND);
        assert_eq!(err.code(), "not_found");
        let err = router()
            .handle(&mut Vec::new(), request("GET", "/posts/7/comments"))
            .expect_err("too short");
        assert_eq!(err.status(), StatusCode::NOT_FOUND);
    }

    #[test]
    fn a_known_path_with_another_method_is_a_405_with_allow() {
        let err = router()
            .handle(&mut Vec::new(), request("PUT", "/posts/7"))
            .expect_err("not allowed");
        assert_eq!(err.status(), StatusCode::METHOD_NOT_ALLOWED);
        assert_eq!(err.code(), "method_not_allowed");
        let response = err.into_response();
        assert_eq!(response.headers()[header::ALLOW], "GET, DELETE");
        let err = router()
            .handle(&mut Vec::new(), request("DELETE", "/posts"))
            .expect_err("not allowed");
        assert_eq!(err.into_response().headers()[header::ALLOW], "GET, POST");
    }
}
