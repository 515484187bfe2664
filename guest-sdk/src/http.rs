//! Outbound HTTP: [`fetch`] sends a request through the host's
//! `wasi:http/outgoing-handler` and waits for the whole response.
//!
//! ```ignore
//! use podhost_sdk::http::{self, Request};
//!
//! let reply = http::fetch(Request::post("https://hooks.example.org/in").json(&event))?;
//! let ack: Ack = reply.body_json()?;
//! ```
//!
//! The host allows only the hosts listed in the class's `outbound` setting;
//! anything else fails at once with [`FetchErrorKind::Denied`]. A request
//! leaves when it is sent, before the event commits: if the event then
//! fails, the request still happened.

use std::fmt;
use std::time::Duration;

use ::http::uri::{Scheme, Uri};
use ::http::{HeaderName, HeaderValue, Method};
use serde::Serialize;
use wasip2::http::outgoing_handler;
use wasip2::http::types::{
    ErrorCode, Fields, IncomingBody, Method as WasiMethod, OutgoingBody, OutgoingRequest,
    RequestOptions, Scheme as WasiScheme,
};
use wasip2::io::streams::StreamError;

use crate::Response;

/// How much of the response body one read asks for.
const READ_CHUNK: u64 = 64 << 10;
/// How much of the request body one write hands over.
const WRITE_CHUNK: usize = 4096;

/// An outbound HTTP request: a method, an absolute `http` or `https` URL,
/// headers and a body.
#[derive(Debug, Clone)]
pub struct Request {
    method: Method,
    url: String,
    headers: Vec<(String, Vec<u8>)>,
    body: Vec<u8>,
    timeout: Option<Duration>,
}

impl Request {
    pub fn new(method: Method, url: impl Into<String>) -> Self {
        Request {
            method,
            url: url.into(),
            headers: Vec::new(),
            body: Vec::new(),
            timeout: None,
        }
    }

    pub fn get(url: impl Into<String>) -> Self {
        Self::new(Method::GET, url)
    }

    pub fn post(url: impl Into<String>) -> Self {
        Self::new(Method::POST, url)
    }

    pub fn put(url: impl Into<String>) -> Self {
        Self::new(Method::PUT, url)
    }

    pub fn delete(url: impl Into<String>) -> Self {
        Self::new(Method::DELETE, url)
    }

    /// Adds a header (an invalid name or value fails the fetch).
    pub fn header(mut self, name: &str, value: impl AsRef<[u8]>) -> Self {
        self.headers
            .push((name.to_string(), value.as_ref().to_vec()));
        self
    }

    pub fn body(mut self, body: impl Into<Vec<u8>>) -> Self {
        self.body = body.into();
        self
    }

    /// A JSON body, with its `Content-Type`.
    pub fn json<T: Serialize + ?Sized>(self, value: &T) -> Self {
        // Serializing plain data does not fail; a map with non-string keys
        // would, and then sends an empty body the server will refuse.
        let body = serde_json::to_vec(value).unwrap_or_default();
        self.header("content-type", "application/json").body(body)
    }

    /// Waits at most this long for the response's head and between parts
    /// of its body; the host's limits still apply when they are shorter.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = Some(timeout);
        self
    }

    pub fn method(&self) -> &Method {
        &self.method
    }

    pub fn url(&self) -> &str {
        &self.url
    }
}

/// What kind of failure a [`FetchError`] is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum FetchErrorKind {
    /// The host is not in the class's `outbound` allow-list.
    Denied,
    /// A connect, first-byte or total timeout passed.
    Timeout,
    /// The response body is over the host's `max_outbound_response_bytes`.
    TooLarge,
    /// The object already has `max_outbound_requests` in flight.
    TooManyRequests,
    /// The URL, a header or the method is not valid.
    InvalidRequest,
    /// The connection failed (refused, reset, DNS, TLS, protocol).
    Connection,
}

/// Why a [`fetch`] got no response. An HTTP error status (4xx, 5xx) is not
/// one of these: it is a [`Response`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FetchError {
    kind: FetchErrorKind,
    message: String,
}

impl FetchError {
    fn new(kind: FetchErrorKind, message: impl Into<String>) -> Self {
        FetchError {
            kind,
            message: message.into(),
        }
    }

    pub fn kind(&self) -> FetchErrorKind {
        self.kind
    }

    pub fn message(&self) -> &str {
        &self.message
    }
}

impl fmt::Display for FetchError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for FetchError {}

/// Sends `request` and returns the whole response (status, headers, body).
pub fn fetch(request: Request) -> Result<Response, FetchError> {
    crate::only_in_podhost();
    let invalid = |message: String| FetchError::new(FetchErrorKind::InvalidRequest, message);
    let uri: Uri = request
        .url
        .parse()
        .map_err(|e| invalid(format!("invalid URL {:?}: {e}", request.url)))?;
    let (scheme, default_port) = match uri.scheme() {
        Some(s) if *s == Scheme::HTTPS => (WasiScheme::Https, 443),
        Some(s) if *s == Scheme::HTTP => (WasiScheme::Http, 80),
        _ => {
            return Err(invalid(format!(
                "{:?} is not an http or https URL",
                request.url
            )));
        }
    };
    let authority = uri
        .authority()
        .ok_or_else(|| invalid(format!("{:?} has no host", request.url)))?;
    let target = Target {
        host: authority.host().to_string(),
        port: authority.port_u16().unwrap_or(default_port),
    };

    let headers = Fields::new();
    // A known length rather than chunked encoding, which some receivers
    // do not read.
    let has_length = request
        .headers
        .iter()
        .any(|(name, _)| name.eq_ignore_ascii_case("content-length"));
    let sends_body = !request.body.is_empty()
        || matches!(request.method, Method::POST | Method::PUT | Method::PATCH);
    if sends_body && !has_length {
        let length = request.body.len().to_string();
        headers
            .append("content-length", length.as_bytes())
            .map_err(|e| invalid(format!("content-length refused: {e:?}")))?;
    }
    for (name, value) in &request.headers {
        HeaderName::from_bytes(name.as_bytes())
            .map_err(|_| invalid(format!("invalid header name {name:?}")))?;
        HeaderValue::from_bytes(value)
            .map_err(|_| invalid(format!("invalid value for header {name}")))?;
        headers
            .append(name, value)
            .map_err(|e| invalid(format!("header {name} refused: {e:?}")))?;
    }
    let outgoing = OutgoingRequest::new(headers);
    let set = outgoing
        .set_method(&wasi_method(&request.method))
        .and_then(|()| outgoing.set_scheme(Some(&scheme)))
        .and_then(|()| outgoing.set_authority(Some(authority.as_str())))
        .and_then(|()| {
            outgoing.set_path_with_query(uri.path_and_query().map(|p| p.as_str()).or(Some("/")))
        });
    if set.is_err() {
        return Err(invalid(format!(
            "the host refused the request to {:?}",
            request.url
        )));
    }
    let body = outgoing
        .body()
        .map_err(|()| invalid("the request body was taken twice".into()))?;
    let options = request.timeout.map(|timeout| {
        let options = RequestOptions::new();
        let nanos = u64::try_from(timeout.as_nanos()).unwrap_or(u64::MAX);
        // Refusals mean the host does not support the option: its own
        // limits apply then.
        let _ = options.set_first_byte_timeout(Some(nanos));
        let _ = options.set_between_bytes_timeout(Some(nanos));
        options
    });

    let pending = outgoing_handler::handle(outgoing, options).map_err(|code| target.error(code))?;
    // A refused request drops its body's reader: the writes fail, and the
    // response future says why.
    let written = write_body(body, &request.body);
    let response = loop {
        match pending.get() {
            Some(Ok(Ok(response))) => break response,
            Some(Ok(Err(code))) => return Err(target.error(code)),
            Some(Err(())) => {
                return Err(FetchError::new(
                    FetchErrorKind::Connection,
                    "the response was already taken",
                ));
            }
            None => pending.subscribe().block(),
        }
    };
    drop(pending);
    if let Err(code) = written {
        return Err(target.error(code));
    }

    let status = ::http::StatusCode::from_u16(response.status()).map_err(|_| {
        FetchError::new(
            FetchErrorKind::Connection,
            format!("{} answered with an invalid status", target),
        )
    })?;
    let mut out = ::http::Response::builder().status(status);
    {
        let fields = response.headers();
        for (name, value) in fields.entries() {
            if let (Ok(name), Ok(value)) = (
                HeaderName::from_bytes(name.as_bytes()),
                HeaderValue::from_bytes(&value),
            ) {
                out = out.header(name, value);
            }
        }
    }
    let body = response
        .consume()
        .map_err(|()| FetchError::new(FetchErrorKind::Connection, "the body was already taken"))?;
    let bytes = read_body(&body).map_err(|code| target.error(code))?;
    drop(IncomingBody::finish(body));
    drop(response);
    let out = out
        .body(bytes)
        .map_err(|e| FetchError::new(FetchErrorKind::Connection, e.to_string()))?;
    Ok(Response::from(out))
}

fn write_body(body: OutgoingBody, bytes: &[u8]) -> Result<(), ErrorCode> {
    {
        let stream = body
            .write()
            .map_err(|()| ErrorCode::InternalError(Some("the body stream was taken".into())))?;
        for chunk in bytes.chunks(WRITE_CHUNK) {
            if stream.blocking_write_and_flush(chunk).is_err() {
                return Err(ErrorCode::ConnectionTerminated);
            }
        }
    }
    OutgoingBody::finish(body, None)
}

fn read_body(body: &IncomingBody) -> Result<Vec<u8>, ErrorCode> {
    let stream = body
        .stream()
        .map_err(|()| ErrorCode::InternalError(Some("the body stream was taken".into())))?;
    let mut bytes = Vec::new();
    loop {
        match stream.blocking_read(READ_CHUNK) {
            Ok(chunk) => bytes.extend_from_slice(&chunk),
            Err(StreamError::Closed) => return Ok(bytes),
            Err(StreamError::LastOperationFailed(error)) => {
                return Err(wasip2::http::types::http_error_code(&error)
                    .unwrap_or(ErrorCode::InternalError(Some(error.to_debug_string()))));
            }
        }
    }
}

fn wasi_method(method: &Method) -> WasiMethod {
    match *method {
        Method::GET => WasiMethod::Get,
        Method::HEAD => WasiMethod::Head,
        Method::POST => WasiMethod::Post,
        Method::PUT => WasiMethod::Put,
        Method::DELETE => WasiMethod::Delete,
        Method::CONNECT => WasiMethod::Connect,
        Method::OPTIONS => WasiMethod::Options,
        Method::TRACE => WasiMethod::Trace,
        Method::PATCH => WasiMethod::Patch,
        ref other => WasiMethod::Other(other.as_str().to_string()),
    }
}

/// Where a request goes, to name it in errors.
struct Target {
    host: String,
    port: u16,
}

impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.host, self.port)
    }
}

impl Target {
    fn error(&self, code: ErrorCode) -> FetchError {
        use FetchErrorKind as Kind;
        let (kind, message) = match code {
            ErrorCode::HttpRequestDenied => {
                let class = crate::context::this_object().class;
                (
                    Kind::Denied,
                    format!(
                        "outbound HTTP to {self} is denied: the host is not in classes.{class}.outbound"
                    ),
                )
            }
            ErrorCode::ConnectionLimitReached => (
                Kind::TooManyRequests,
                format!(
                    "outbound HTTP to {self} refused: this object has max_outbound_requests in flight"
                ),
            ),
            ErrorCode::ConnectionTimeout => (
                Kind::Timeout,
                format!("outbound HTTP to {self} timed out connecting (outbound_connect_timeout)"),
            ),
            ErrorCode::ConnectionReadTimeout => (
                Kind::Timeout,
                format!(
                    "outbound HTTP to {self} timed out waiting for the response (the request's timeout or outbound_first_byte_timeout)"
                ),
            ),
            ErrorCode::HttpResponseTimeout => (
                Kind::Timeout,
                format!("outbound HTTP to {self} timed out (outbound_timeout)"),
            ),
            ErrorCode::HttpResponseBodySize(size) => (
                Kind::TooLarge,
                match size {
                    Some(size) => format!(
                        "the response from {self} is too large ({size} bytes or more; max_outbound_response_bytes)"
                    ),
                    None => format!(
                        "the response from {self} is too large (max_outbound_response_bytes)"
                    ),
                },
            ),
            ErrorCode::HttpRequestUriInvalid | ErrorCode::HttpRequestMethodInvalid => (
                Kind::InvalidRequest,
                format!("the request to {self} is invalid ({code:?})"),
            ),
            other => (
                Kind::Connection,
                format!("outbound HTTP to {self} failed: {other:?}"),
            ),
        };
        FetchError::new(kind, message)
    }
}
