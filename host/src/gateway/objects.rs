//! `ANY /objects/{class}/{name}[/{*path}]`: delivers the request to the
//! object's `fetch` and returns its response, or offers a WebSocket
//! upgrade to the object (see `sockets`).

use std::fmt::Write as _;
use std::net::IpAddr;
use std::pin::Pin;
use std::sync::Arc;

use axum::body::{Body, Bytes};
use axum::extract::{Request, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode, header};
use axum::response::Response;

use super::routed::Routed;
use super::{ApiError, Gateway, admin, credentials, events, handshake, owner, sockets};
use crate::accounts::{Admission, Caller};
use crate::bindings;
use crate::bindings::podhost::object::types as wit;
use crate::config::{Access, MAX_OBJECT_NAME_BYTES};

/// Headers about the client connection, not the message; never forwarded
/// (here, nor by a cluster node to another).
pub(crate) const HOP_BY_HOP: &[&str] = &[
    "connection",
    "keep-alive",
    "proxy-connection",
    "transfer-encoding",
    "upgrade",
    "te",
    "trailer",
];

pub async fn deliver(
    State(gateway): State<Gateway>,
    routed: Routed<2>,
    request: Request,
) -> Result<Response, ApiError> {
    let [class, name] = routed.params();
    let admission = by_name(&gateway, class, &request)?;
    forward(&gateway, class, name, routed.path(), request, admission).await
}

/// Who may address an object of `class` by its name (or a handle): the
/// operator, and anyone for public classes.
pub(super) fn by_name(
    gateway: &Gateway,
    class: &str,
    request: &Request,
) -> Result<Admission, ApiError> {
    let access = gateway.runtime().class(class)?.settings().access;
    if admin::bears_admin_token(
        gateway,
        request.headers(),
        request.extensions(),
        access != Access::Public,
    )? {
        Ok(Admission::admin())
    } else if access == Access::Public {
        Ok(Admission::anyone())
    } else {
        Err(ApiError::AccessDenied {
            class: class.to_string(),
            access,
        })
    }
}

/// Refuses an object name the host would not store.
pub(super) fn check_name(name: &str) -> Result<(), ApiError> {
    if name.is_empty() || name.len() > MAX_OBJECT_NAME_BYTES {
        return Err(ApiError::BadRequest(format!(
            "an object name must be 1 to {MAX_OBJECT_NAME_BYTES} bytes long"
        )));
    }
    Ok(())
}

/// Hands the request to object `name` of `class` as admitted: a fetch, a
/// WebSocket upgrade or a subscription to its events. Connections close
/// when the admission's session, membership or key ends.
pub(super) fn forward<'a>(
    gateway: &'a Gateway,
    class: &'a str,
    name: &'a str,
    path: &'a str,
    request: Request,
    admission: Admission,
) -> Pin<Box<impl Future<Output = Result<Response, ApiError>> + Send + 'a>> {
    // Its state holds every path's futures (cluster routing, sockets,
    // streams, the object's fetch): boxed, so that the handlers and axum's
    // wrappers around it move a pointer rather than copy kilobytes.
    Box::pin(async move {
        check_name(name)?;
        let runtime = Arc::clone(gateway.runtime());
        // Before the cluster is asked: an unknown class takes no owner key.
        let limits = runtime.class(class)?.settings().limits.clone();
        let limit = limits.max_body_bytes;
        // In a cluster, this node keeps the object until the request is handled.
        let (request, _pin) = match gateway.cluster() {
            Some(cluster) => {
                // A body announced too big costs no forward (the owner caps
                // bodies sent without a length itself).
                let request = super::body::refuse_declared_over(request, limit).await?;
                match owner::route(gateway, cluster, class, name, request).await? {
                    owner::Owner::Here(request, pin) => (request, Some(pin)),
                    owner::Owner::There(response) => return Ok(response),
                }
            }
            None => (request, None),
        };
        if path == events::EVENTS_PATH && request.method() == Method::GET {
            let (parts, _) = request.into_parts();
            let revocation = gateway.routes().watch(&admission);
            let (class, name) = (class.to_string(), name.to_string());
            return events::stream(runtime, class, name, parts, revocation).await;
        }
        let routes = gateway.routes();
        let client_address = credentials::client_address(
            request.headers(),
            request.extensions(),
            &runtime.config().trusted_proxies,
        );
        let seen = Seen {
            caller: admission.caller.as_ref().map(Caller::to_wit),
            client_address: client_address.map(|address| text_of(address.to_canonical())),
            hide_authorization: admission.caller.is_some(),
            is_credential: &|token| routes.is_credential(token) || crate::tenants::is_token(token),
        };
        if handshake::is_upgrade(request.headers()) {
            let max = runtime.config().server.max_websocket_handshakes;
            let Some(_handshake) = runtime.sockets().begin_handshake(max) else {
                return Err(ApiError::TooManyHandshakes { max });
            };
            let (parts, _) = request.into_parts();
            let request = object_request(&parts, path, Vec::new(), seen);
            let revocation = gateway.routes().watch(&admission);
            let (class, name) = (class.to_string(), name.to_string());
            return sockets::open(runtime, class, name, request, parts, revocation).await;
        }
        let request = to_object_request(request, path, limit, seen).await?;
        let response = runtime.fetch(class, name, request).await?;
        let mut response = from_object_response(response, limits.max_response_bytes)?;
        let trusted = runtime
            .class(class)
            .is_ok_and(|class| class.config().trusted);
        if !trusted {
            credentials::sandbox(response.headers_mut());
        }
        Ok(response)
    })
}

/// An address as text in one allocation (`to_string` grows its string
/// piece by piece).
fn text_of(address: IpAddr) -> String {
    // The longest an address prints: IPv6 with an IPv4 tail.
    let mut text = String::with_capacity(45);
    let _ = write!(text, "{address}");
    text
}

/// What the object is told of who sent a request.
struct Seen<'a> {
    caller: Option<wit::Caller>,
    /// The client's IP address (see `credentials::client_address`).
    client_address: Option<String>,
    /// The request was admitted with a podhost credential, which is the
    /// host's business only: no `Authorization` header goes through.
    hide_authorization: bool,
    /// Whether a bearer token is podhost's (such `Authorization` values
    /// never go through).
    is_credential: &'a (dyn Fn(&str) -> bool + Sync),
}

async fn to_object_request(
    request: Request,
    path: &str,
    limit: usize,
    seen: Seen<'_>,
) -> Result<bindings::Request, ApiError> {
    let (parts, body) = request.into_parts();
    let body = super::body::read_capped(body, &parts.headers, limit).await?;
    Ok(object_request(&parts, path, body.to_vec(), seen))
}

/// The request the object sees: its path below the object's address, the
/// end-to-end headers and who sent it. podhost's credentials (its cookies,
/// and its tokens and keys in `Authorization`) stay with the host.
fn object_request(parts: &Parts, path: &str, body: Vec<u8>, seen: Seen<'_>) -> bindings::Request {
    let mut path_with_query = format!("/{path}");
    if let Some(query) = parts.uri.query() {
        path_with_query.push('?');
        path_with_query.push_str(query);
    }
    let headers = parts
        .headers
        .iter()
        .filter(|(name, _)| !HOP_BY_HOP.contains(&name.as_str()))
        .filter_map(|(name, value)| match *name {
            header::AUTHORIZATION
                if seen.hide_authorization
                    || credentials::holds_credential(value, seen.is_credential) =>
            {
                None
            }
            header::COOKIE => credentials::without_session_cookies(value)
                .map(|cookies| (name.as_str().to_string(), cookies.into_bytes())),
            _ => Some((name.as_str().to_string(), value.as_bytes().to_vec())),
        })
        .collect();
    bindings::Request {
        method: parts.method.as_str().to_string(),
        path_with_query,
        headers,
        body,
        caller: seen.caller,
        client_address: seen.client_address,
    }
}

/// Most headers an object may answer with, and their total size: far
/// more than a real response needs, and what a client accepts.
const MAX_RESPONSE_HEADERS: usize = 256;
const MAX_RESPONSE_HEADER_BYTES: usize = 64 << 10;

/// The headers the host adds to an object's response: the sandbox's two
/// (`credentials::sandbox`) and `Content-Length`.
const HOST_RESPONSE_HEADERS: usize = 3;

/// The HTTP response for an object's response, or `invalid_response` /
/// `response_too_large` if it cannot be sent as it is. The event has
/// committed by then either way: its writes stand.
pub(super) fn from_object_response(
    response: bindings::Response,
    max_body_bytes: usize,
) -> Result<Response, ApiError> {
    let status = response_status(response.status)?;
    let headers = response_headers(response.headers)?;
    let body = response_body(status, response.body, max_body_bytes)?;
    let mut out = Response::new(body);
    *out.status_mut() = status;
    *out.headers_mut() = headers;
    credentials::drop_reserved_set_cookies(out.headers_mut());
    Ok(out)
}

/// A final status: 1xx are not (a 101 would hand the client's connection
/// to nobody, and the requests it had pipelined would be lost).
fn response_status(status: u16) -> Result<StatusCode, ApiError> {
    if !(200..=599).contains(&status) {
        return Err(ApiError::InvalidResponse(format!(
            "status {status} is not a final status (200 to 599)"
        )));
    }
    StatusCode::from_u16(status)
        .map_err(|_| ApiError::InvalidResponse(format!("status {status} is not valid")))
}

/// The body, handed to the connection without a copy; none for 204 and
/// 304, which have no body (hyper then sends no length either).
fn response_body(status: StatusCode, body: Vec<u8>, limit: usize) -> Result<Body, ApiError> {
    if body.len() > limit {
        return Err(ApiError::ResponseTooLarge { limit });
    }
    if status == StatusCode::NO_CONTENT || status == StatusCode::NOT_MODIFIED {
        return Ok(Body::empty());
    }
    Ok(Body::from(body))
}

/// The object's end-to-end headers, counted before any goes into a map:
/// the host's `HeaderMap` holds at most 32,768 names and panics past that.
fn response_headers(headers: Vec<(String, Vec<u8>)>) -> Result<HeaderMap, ApiError> {
    if headers.len() > MAX_RESPONSE_HEADERS {
        return Err(ApiError::InvalidResponse(format!(
            "{} headers; at most {MAX_RESPONSE_HEADERS} are allowed",
            headers.len()
        )));
    }
    let bytes: usize = headers
        .iter()
        .map(|(name, value)| name.len() + value.len())
        .sum();
    if bytes > MAX_RESPONSE_HEADER_BYTES {
        return Err(ApiError::InvalidResponse(format!(
            "{bytes} bytes of headers; at most {MAX_RESPONSE_HEADER_BYTES} are allowed"
        )));
    }
    // Headers that `Connection` names are hop-by-hop as well.
    let nominated: Vec<String> = headers
        .iter()
        .filter(|(name, _)| name.eq_ignore_ascii_case("connection"))
        .flat_map(|(_, value)| {
            String::from_utf8_lossy(value)
                .split(',')
                .map(|token| token.trim().to_ascii_lowercase())
                .collect::<Vec<_>>()
        })
        .collect();
    // Room for what the host adds as well, so the map is not grown (and
    // copied) on the way out.
    let mut map = HeaderMap::with_capacity(headers.len() + HOST_RESPONSE_HEADERS);
    for (name, value) in headers {
        let name = HeaderName::from_bytes(name.as_bytes())
            .map_err(|_| ApiError::InvalidResponse(format!("header name {name:?} is not valid")))?;
        if is_hop_by_hop(&name)
            || name == header::CONTENT_LENGTH
            || nominated.iter().any(|n| n == name.as_str())
        {
            continue;
        }
        // Checked in place: the lifted bytes become the header's own.
        let value = HeaderValue::from_maybe_shared(Bytes::from(value)).map_err(|_| {
            ApiError::InvalidResponse(format!("the value of header {name} is not valid"))
        })?;
        map.append(name, value);
    }
    Ok(map)
}

/// Headers about one connection, which an object has no say in.
fn is_hop_by_hop(name: &HeaderName) -> bool {
    HOP_BY_HOP.contains(&name.as_str()) || name.as_str().starts_with("proxy-")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header(name: &str, value: &str) -> (String, Vec<u8>) {
        (name.to_string(), value.as_bytes().to_vec())
    }

    #[test]
    fn what_the_host_adds_to_a_response_does_not_grow_its_headers() {
        let mut headers = response_headers(vec![
            header("content-type", "text/plain"),
            header("x-b", "c"),
        ])
        .expect("valid headers");
        // Each growth reallocates and copies the map, on every response.
        let before = crate::test_alloc::allocations();
        credentials::drop_reserved_set_cookies(&mut headers);
        credentials::sandbox(&mut headers);
        headers.insert(header::CONTENT_LENGTH, HeaderValue::from_static("2"));
        assert_eq!(crate::test_alloc::allocations(), before);
        assert_eq!(headers.len(), 5);
    }

    #[test]
    fn response_headers_keep_their_bytes_and_refuse_bad_ones() {
        let headers = response_headers(vec![header("x-a", "b c")]).expect("valid");
        assert_eq!(headers["x-a"], "b c");
        let bad = response_headers(vec![header("x-a", "line\nbreak")]);
        assert!(matches!(bad, Err(ApiError::InvalidResponse(_))));
    }
}
