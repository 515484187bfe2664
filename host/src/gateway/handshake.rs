//! The server's side of the WebSocket opening handshake (RFC 6455 §4.2)
//! on hyper's upgrade. Not axum's extractor: that one fixes the socket's
//! I/O type, and podhost's puts [`SharedReads`] under tungstenite.

use std::future::Future;

use axum::body::Body;
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use hyper::upgrade::OnUpgrade;
use hyper_util::rt::TokioIo;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;
use tokio_tungstenite::tungstenite::protocol::{Role, WebSocketConfig};

use crate::sockets::{SharedReads, WebSocket};

/// Why a request is not a WebSocket handshake podhost can answer.
#[derive(Debug, Clone, Copy)]
pub struct NotAHandshake {
    status: StatusCode,
    why: &'static str,
}

impl IntoResponse for NotAHandshake {
    fn into_response(self) -> Response {
        (self.status, self.why).into_response()
    }
}

/// A valid upgrade request, not yet answered.
pub struct Handshake {
    key: HeaderValue,
    on_upgrade: OnUpgrade,
}

impl Handshake {
    /// Checks the request's handshake headers and takes its upgrade (the
    /// statuses of a refusal are axum's).
    pub fn from_parts(parts: &mut Parts) -> Result<Self, NotAHandshake> {
        let refuse = |status, why| Err(NotAHandshake { status, why });
        if parts.method != Method::GET {
            return refuse(
                StatusCode::METHOD_NOT_ALLOWED,
                "a WebSocket upgrade is a GET",
            );
        }
        if !is_upgrade(&parts.headers) {
            return refuse(
                StatusCode::BAD_REQUEST,
                "a WebSocket upgrade has Connection: upgrade and Upgrade: websocket",
            );
        }
        let version = parts.headers.get(header::SEC_WEBSOCKET_VERSION);
        if version.is_none_or(|version| version.as_bytes() != b"13") {
            return refuse(StatusCode::BAD_REQUEST, "Sec-WebSocket-Version must be 13");
        }
        let Some(key) = parts.headers.get(header::SEC_WEBSOCKET_KEY).cloned() else {
            return refuse(StatusCode::BAD_REQUEST, "Sec-WebSocket-Key is missing");
        };
        let Some(on_upgrade) = parts.extensions.remove::<OnUpgrade>() else {
            return refuse(
                StatusCode::UPGRADE_REQUIRED,
                "this connection cannot be upgraded",
            );
        };
        Ok(Handshake { key, on_upgrade })
    }

    /// Answers `101 Switching Protocols`; once hyper hands over the
    /// connection, `run` gets the socket on a task of its own. If the
    /// upgrade fails, `run` is dropped unstarted (`socket` names it in
    /// the log).
    pub fn accept<F, Fut>(self, socket: u64, config: WebSocketConfig, run: F) -> Response
    where
        F: FnOnce(WebSocket) -> Fut + Send + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        let accept = derive_accept_key(self.key.as_bytes());
        let on_upgrade = self.on_upgrade;
        tokio::spawn(async move {
            let upgraded = match on_upgrade.await {
                Ok(upgraded) => upgraded,
                Err(error) => {
                    tracing::debug!(socket, %error, "the WebSocket upgrade failed");
                    return;
                }
            };
            let io = SharedReads::new(TokioIo::new(upgraded));
            let ws = WebSocketStream::from_raw_socket(io, Role::Server, Some(config)).await;
            // A task of its own: this one's future also has room for the
            // upgrade, and the socket may stay open for days.
            tokio::spawn(run(ws));
        });
        let mut response = Response::new(Body::empty());
        *response.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
        let headers = response.headers_mut();
        headers.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
        headers.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
        // Base64 of a SHA-1: always a valid header value.
        if let Ok(accept) = HeaderValue::from_str(&accept) {
            headers.insert(header::SEC_WEBSOCKET_ACCEPT, accept);
        }
        response
    }
}

/// `Connection: upgrade` with `Upgrade: websocket`.
pub fn is_upgrade(headers: &HeaderMap) -> bool {
    let has = |name: HeaderName, token: &str| {
        headers.get_all(name).iter().any(|value| {
            value
                .to_str()
                .is_ok_and(|v| v.split(',').any(|t| t.trim().eq_ignore_ascii_case(token)))
        })
    };
    has(header::UPGRADE, "websocket") && has(header::CONNECTION, "upgrade")
}
