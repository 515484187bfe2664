//! `Request` and `Response`: the HTTP side of an event, built on the `http`
//! crate's method, status and header types.

use std::net::IpAddr;

use http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode};
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::bindings::podhost::object::types;
use crate::caller::{Caller, User};
use crate::{Error, Result};

/// An HTTP request addressed to this object.
#[derive(Debug, Clone)]
pub struct Request {
    method: Method,
    path: String,
    query: Option<String>,
    headers: HeaderMap,
    body: Vec<u8>,
    caller: Option<Caller>,
    client_address: Option<IpAddr>,
}

impl Request {
    pub(crate) fn from_wit(request: types::Request) -> Result<Self> {
        let method = Method::from_bytes(request.method.as_bytes())
            .map_err(|_| Error::bad_request(format!("invalid method {:?}", request.method)))?;
        let (path, query) = match request.path_with_query.split_once('?') {
            Some((path, query)) => (path.to_string(), Some(query.to_string())),
            None => (request.path_with_query, None),
        };
        Ok(Request {
            method,
            path,
            query,
            headers: headers_from_wit(request.headers)?,
            body: request.body,
            caller: request.caller,
            client_address: request
                .client_address
                .and_then(|address| address.parse().ok()),
        })
    }

    pub fn method(&self) -> &Method {
        &self.method
    }

    /// The path below the object's address, starting with `/`.
    pub fn path(&self) -> &str {
        &self.path
    }

    /// The non-empty segments of [`path`](Self::path): `/items/3/` gives
    /// `["items", "3"]`. Handy to `match` on.
    pub fn segments(&self) -> Vec<&str> {
        self.path.split('/').filter(|s| !s.is_empty()).collect()
    }

    /// The raw query string, without `?`.
    pub fn query(&self) -> Option<&str> {
        self.query.as_deref()
    }

    /// The first value of a query parameter, percent-decoded.
    pub fn query_param(&self, name: &str) -> Option<String> {
        self.query()?
            .split('&')
            .filter_map(|pair| {
                let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
                (percent_decode(key) == name).then(|| percent_decode(value))
            })
            .next()
    }

    /// Who sent the request, as the host authenticated it: a user through
    /// `/me`, an organization's member through `/orgs`, an API key through
    /// `/key`, or the operator. `None` for anyone else (a `public` class's
    /// request by name). Never taken from a header a client could forge.
    pub fn caller(&self) -> Option<&Caller> {
        self.caller.as_ref()
    }

    /// The client's IP address: the connection's peer, or, when the peer
    /// is one of the server's `trusted_proxies`, the address the proxy
    /// forwarded (`X-Forwarded-For` or `Forwarded`). `None` when no client
    /// connection is behind the request. For a WebSocket, the address of
    /// the request that opened it.
    pub fn client_address(&self) -> Option<IpAddr> {
        self.client_address
    }

    /// This request as another object receives it through
    /// [`objects`](crate::objects): method, path, query, headers and body
    /// (who sent it is the host's to say).
    pub(crate) fn to_call(&self) -> types::Request {
        let path_with_query = match &self.query {
            Some(query) => format!("{}?{query}", self.path),
            None => self.path.clone(),
        };
        types::Request {
            method: self.method.as_str().to_string(),
            path_with_query,
            headers: self
                .headers
                .iter()
                .map(|(name, value)| (name.as_str().to_string(), value.as_bytes().to_vec()))
                .collect(),
            body: self.body.clone(),
            caller: None,
            client_address: None,
        }
    }

    /// The signed-in user, through `/me` or `/orgs`.
    pub fn user(&self) -> Option<&User> {
        match self.caller.as_ref()? {
            Caller::User(user) => Some(user),
            Caller::Member(member) => Some(&member.user),
            Caller::Key(_) | Caller::Admin | Caller::Object(_) => None,
        }
    }

    /// The signed-in user, or a 401 error for requests without one.
    pub fn require_user(&self) -> Result<&User> {
        self.user()
            .ok_or_else(|| Error::new(StatusCode::UNAUTHORIZED, "this needs a signed-in user"))
    }

    pub fn headers(&self) -> &HeaderMap {
        &self.headers
    }

    /// A header's value, if it is present and valid UTF-8.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name)?.to_str().ok()
    }

    pub fn body(&self) -> &[u8] {
        &self.body
    }

    /// The body as UTF-8 text; a 400 error otherwise.
    pub fn text(&self) -> Result<&str> {
        std::str::from_utf8(&self.body).map_err(|_| Error::bad_request("the body is not UTF-8"))
    }

    /// The body parsed as JSON; otherwise a 400 whose message names the
    /// field at fault: ``invalid JSON body: missing field `title` `` or
    /// ``invalid JSON body at `title`: invalid type: integer `5`, expected a
    /// string``.
    pub fn json<T: DeserializeOwned>(&self) -> Result<T> {
        parse_json_body(&self.body)
    }
}

/// An HTTP response.
#[derive(Debug, Clone)]
pub struct Response {
    status: StatusCode,
    headers: HeaderMap,
    body: Vec<u8>,
}

impl Response {
    /// An empty response with this status.
    pub fn new(status: StatusCode) -> Self {
        Response {
            status,
            headers: HeaderMap::new(),
            body: Vec::new(),
        }
    }

    /// A `200 OK` with a `text/plain` body.
    pub fn text(body: impl Into<String>) -> Self {
        Self::bytes("text/plain; charset=utf-8", body.into().into_bytes())
    }

    /// A `200 OK` with a JSON body.
    pub fn json<T: Serialize + ?Sized>(value: &T) -> Self {
        match serde_json::to_vec(value) {
            Ok(body) => Self::bytes("application/json", body),
            Err(e) => {
                Error::internal(format!("cannot serialize the response: {e}")).into_response()
            }
        }
    }

    /// A `200 OK` with a body of the given content type.
    pub fn bytes(content_type: &'static str, body: Vec<u8>) -> Self {
        let mut response = Self::new(StatusCode::OK);
        response.headers.insert(
            http::header::CONTENT_TYPE,
            HeaderValue::from_static(content_type),
        );
        response.body = body;
        response
    }

    pub fn with_status(mut self, status: StatusCode) -> Self {
        self.status = status;
        self
    }

    pub fn with_header(mut self, name: HeaderName, value: HeaderValue) -> Self {
        self.headers.append(name, value);
        self
    }

    pub fn status(&self) -> StatusCode {
        self.status
    }

    pub fn headers(&self) -> &HeaderMap {
        &self.headers
    }

    pub fn body(&self) -> &[u8] {
        &self.body
    }

    /// Another object's answer (see [`objects`](crate::objects)).
    pub(crate) fn from_wit(response: types::Response) -> Result<Self> {
        let status = StatusCode::from_u16(response.status)
            .map_err(|_| Error::internal(format!("invalid status {}", response.status)))?;
        Ok(Response {
            status,
            headers: headers_from_wit(response.headers)?,
            body: response.body,
        })
    }

    /// The body as UTF-8 text (a response [`http::fetch`](crate::http::fetch)
    /// returned, say).
    pub fn body_text(&self) -> Result<&str> {
        std::str::from_utf8(&self.body)
            .map_err(|_| Error::internal("the response body is not UTF-8"))
    }

    /// The body parsed as JSON.
    pub fn body_json<T: DeserializeOwned>(&self) -> Result<T> {
        serde_json::from_slice(&self.body).map_err(|e| {
            Error::internal(format!("the response body is not the JSON expected: {e}"))
        })
    }

    pub(crate) fn into_wit(self) -> types::Response {
        types::Response {
            status: self.status.as_u16(),
            headers: self
                .headers
                .iter()
                .map(|(name, value)| (name.as_str().to_string(), value.as_bytes().to_vec()))
                .collect(),
            body: self.body,
        }
    }
}

impl From<http::Response<Vec<u8>>> for Response {
    fn from(response: http::Response<Vec<u8>>) -> Self {
        let (parts, body) = response.into_parts();
        Response {
            status: parts.status,
            headers: parts.headers,
            body,
        }
    }
}

/// Parses a JSON body into `T`, naming the field at fault in the error.
pub(crate) fn parse_json_body<T: DeserializeOwned>(body: &[u8]) -> Result<T> {
    let mut deserializer = serde_json::Deserializer::from_slice(body);
    let value = serde_path_to_error::deserialize(&mut deserializer).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner();
        let message = if path == "." {
            format!("invalid JSON body: {inner}")
        } else {
            format!("invalid JSON body at `{path}`: {inner}")
        };
        Error::bad_request(message)
    })?;
    deserializer
        .end()
        .map_err(|e| Error::bad_request(format!("invalid JSON body: {e}")))?;
    Ok(value)
}

fn headers_from_wit(headers: types::Headers) -> Result<HeaderMap> {
    let mut map = HeaderMap::with_capacity(headers.len());
    for (name, value) in headers {
        let name = HeaderName::from_bytes(name.as_bytes())
            .map_err(|_| Error::bad_request(format!("invalid header name {name:?}")))?;
        let value = HeaderValue::from_bytes(&value)
            .map_err(|_| Error::bad_request(format!("invalid value for header {name}")))?;
        map.append(name, value);
    }
    Ok(map)
}

/// Decodes `%XX` escapes and `+` (as a space), as in
/// `application/x-www-form-urlencoded`. Malformed escapes stay as they are.
fn percent_decode(input: &str) -> String {
    percent_decode_with(input, true)
}

/// Decodes `%XX` escapes of a path segment (`+` stays a plus).
pub(crate) fn percent_decode_path(input: &str) -> String {
    percent_decode_with(input, false)
}

fn percent_decode_with(input: &str, plus_is_space: bool) -> String {
    let bytes = input.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let escaped = bytes
            .get(i + 1..i + 3)
            .and_then(|hex| std::str::from_utf8(hex).ok())
            .and_then(|hex| u8::from_str_radix(hex, 16).ok());
        match (bytes[i], escaped) {
            (b'%', Some(byte)) => {
                out.push(byte);
                i += 3;
            }
            (b'+', _) if plus_is_space => {
                out.push(b' ');
                i += 1;
            }
            (byte, _) => {
                out.push(byte);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(path_with_query: &str) -> Request {
        Request::from_wit(types::Request {
            method: "GET".into(),
            path_with_query: path_with_query.into(),
            headers: vec![("x-name".into(), b"value".to_vec())],
            body: vec![],
            caller: None,
            client_address: Some("2001:db8::1".into()),
        })
        .expect("a valid request")
    }

    #[test]
    fn percent_decoding() {
        assert_eq!(percent_decode("a%20b+c"), "a b c");
        assert_eq!(percent_decode("100%"), "100%");
        assert_eq!(percent_decode("%zz%4"), "%zz%4");
        assert_eq!(percent_decode("%C3%A9"), "\u{e9}");
    }

    #[test]
    fn path_query_and_headers() {
        let req = request("/items/3/?full=1&q=a%20b&flag");
        assert_eq!(req.path(), "/items/3/");
        assert_eq!(req.segments(), ["items", "3"]);
        assert_eq!(req.query_param("q").as_deref(), Some("a b"));
        assert_eq!(req.query_param("flag").as_deref(), Some(""));
        assert_eq!(req.query_param("missing"), None);
        assert_eq!(req.header("x-name"), Some("value"));
        assert!(request("/").segments().is_empty());
        assert_eq!(
            req.client_address(),
            Some("2001:db8::1".parse().expect("an address"))
        );
    }

    #[test]
    fn a_bad_json_body_names_the_field() {
        #[derive(serde::Deserialize, Debug)]
        #[allow(dead_code)]
        struct Post {
            title: String,
            content: String,
        }
        let message = |body: &str| {
            parse_json_body::<Post>(body.as_bytes())
                .expect_err("a bad body")
                .message()
                .to_string()
        };
        assert!(message(r#"{"content": "x"}"#).contains("`title`"));
        let wrong = message(r#"{"title": "x", "content": 5}"#);
        assert!(wrong.contains("at `content`"), "{wrong}");
        assert!(message("not json").starts_with("invalid JSON body"));
        assert!(message(r#"{"title": "x", "content": "y"} trailing"#).contains("trailing"));
        assert!(parse_json_body::<Post>(br#"{"title": "x", "content": "y"}"#).is_ok());
    }

    #[test]
    fn invalid_method_is_a_bad_request() {
        let err = Request::from_wit(types::Request {
            method: "BAD METHOD".into(),
            path_with_query: "/".into(),
            headers: vec![],
            body: vec![],
            caller: None,
            client_address: Some("2001:db8::1".into()),
        })
        .expect_err("spaces are not allowed in a method");
        assert_eq!(err.status(), StatusCode::BAD_REQUEST);
    }

    #[test]
    fn a_received_request_passes_on_as_it_came_but_for_who_sent_it() {
        let received = types::Request {
            method: "PUT".into(),
            path_with_query: "/items/3?full=1".into(),
            headers: vec![("x-name".into(), b"value".to_vec())],
            body: b"body".to_vec(),
            caller: Some(Caller::Admin),
            client_address: Some("192.0.2.1".into()),
        };
        let passed = Request::from_wit(received.clone())
            .expect("a valid request")
            .to_call();
        assert_eq!(passed.method, received.method);
        assert_eq!(passed.path_with_query, received.path_with_query);
        assert_eq!(passed.headers, received.headers);
        assert_eq!(passed.body, received.body);
        assert!(passed.caller.is_none() && passed.client_address.is_none());
    }
}
