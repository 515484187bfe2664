//! HTTP-shaped requests to an object, through the gateway's router.

use std::net::{Ipv4Addr, SocketAddr};
use std::time::Duration;

use crate::gateway::Front;
use anyhow::Context as _;
use axum::body::Body;
use axum::extract::ConnectInfo;
use http::{HeaderMap, Method, StatusCode};
use http_body_util::BodyExt as _;

use super::Harness;

/// How long a response body may take to arrive in full. A streaming
/// response (Server-Sent Events) never ends: follow those with a server.
const BODY_TIMEOUT: Duration = Duration::from_secs(30);

/// An object of a [`Harness`], addressed by class and name.
pub struct TestObject<'h> {
    pub(super) harness: &'h Harness,
    pub(super) class: String,
    pub(super) name: String,
}

impl<'h> TestObject<'h> {
    pub(super) fn new(harness: &'h Harness, class: &str, name: &str) -> Self {
        TestObject {
            harness,
            class: class.to_string(),
            name: name.to_string(),
        }
    }

    /// `GET` `path` (below the object: `/`, `/items?x=1`).
    pub async fn get(&self, path: &str) -> anyhow::Result<TestResponse> {
        self.request(Method::GET, path, HeaderMap::new(), Vec::new())
            .await
    }

    /// `POST` `body` to `path`.
    pub async fn post(&self, path: &str, body: impl Into<Vec<u8>>) -> anyhow::Result<TestResponse> {
        self.request(Method::POST, path, HeaderMap::new(), body.into())
            .await
    }

    /// `POST` `value` as JSON to `path`.
    pub async fn post_json(
        &self,
        path: &str,
        value: &serde_json::Value,
    ) -> anyhow::Result<TestResponse> {
        let mut headers = HeaderMap::new();
        headers.insert(
            http::header::CONTENT_TYPE,
            http::HeaderValue::from_static("application/json"),
        );
        self.request(Method::POST, path, headers, value.to_string().into_bytes())
            .await
    }

    /// `DELETE` `path`.
    pub async fn delete(&self, path: &str) -> anyhow::Result<TestResponse> {
        self.request(Method::DELETE, path, HeaderMap::new(), Vec::new())
            .await
    }

    /// Any request to `path` below the object, through
    /// `/objects/{class}/{name}{path}`.
    pub async fn request(
        &self,
        method: Method,
        path: &str,
        headers: HeaderMap,
        body: Vec<u8>,
    ) -> anyhow::Result<TestResponse> {
        let mut request = http::Request::builder()
            .method(method)
            .uri(self.uri(path)?)
            .body(Body::from(body))
            .context("building the request")?;
        request.headers_mut().extend(headers);
        self.harness.send(request).await
    }

    /// The gateway's URI of `path` on this object.
    pub fn uri(&self, path: &str) -> anyhow::Result<http::Uri> {
        let path = if path.starts_with('/') || path.is_empty() {
            path.to_string()
        } else {
            format!("/{path}")
        };
        let path = if path == "/" { "" } else { path.as_str() };
        format!(
            "/objects/{}/{}{path}",
            encode_segment(&self.class),
            encode_segment(&self.name)
        )
        .parse()
        .with_context(|| format!("{path:?} is not a valid path"))
    }
}

/// What the gateway answered.
#[derive(Debug, Clone)]
pub struct TestResponse {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Vec<u8>,
}

impl TestResponse {
    /// The body as text (invalid UTF-8 replaced).
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// The body as JSON.
    pub fn json(&self) -> anyhow::Result<serde_json::Value> {
        serde_json::from_slice(&self.body)
            .with_context(|| format!("the body is not JSON: {}", self.text()))
    }

    /// A header's value as text, if present and visible ASCII.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name)?.to_str().ok()
    }
}

/// Runs `request` through `front` as a connection from 127.0.0.1 would,
/// and reads the whole response.
pub(super) async fn send(
    front: &Front,
    mut request: http::Request<Body>,
) -> anyhow::Result<TestResponse> {
    request
        .extensions_mut()
        .insert(ConnectInfo(SocketAddr::from((Ipv4Addr::LOCALHOST, 0))));
    let response = front.clone().serve(request).await;
    let (parts, body) = response.into_parts();
    let body = tokio::time::timeout(BODY_TIMEOUT, body.collect())
        .await
        .context("the response body did not end within 30 s (a stream?)")?
        .context("reading the response body")?
        .to_bytes()
        .to_vec();
    Ok(TestResponse {
        status: parts.status,
        headers: parts.headers,
        body,
    })
}

/// Percent-encodes everything but unreserved characters, so any object
/// name makes one path segment.
fn encode_segment(segment: &str) -> String {
    let mut encoded = String::with_capacity(segment.len());
    for byte in segment.bytes() {
        if byte.is_ascii_alphanumeric() || b"-._~".contains(&byte) {
            encoded.push(char::from(byte));
        } else {
            encoded.push_str(&format!("%{byte:02X}"));
        }
    }
    encoded
}

#[cfg(test)]
mod tests {
    use super::encode_segment;

    #[test]
    fn names_become_one_segment() {
        assert_eq!(encode_segment("alice"), "alice");
        assert_eq!(encode_segment("a/b c"), "a%2Fb%20c");
        assert_eq!(encode_segment("café"), "caf%C3%A9");
    }
}
