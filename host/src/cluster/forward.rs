//! A request for an object another node owns, proxied to that node: the
//! body streams both ways (SSE included, as a response body that never
//! ends), and a WebSocket upgrade becomes a byte tunnel between the client
//! and the owner once the owner answers 101, so frames, pings and close
//! codes pass through untouched.
//!
//! The forwarded request carries `x-podhost-forwarded: <node>`; a node
//! that receives it for an object it does not own answers 503 `not_owner`
//! instead of forwarding again. Only a draining node sends a forwarded
//! request on (it serves nothing new), adding its name: `<a>, <b>`; one
//! that finds its own name there chooses none of the nodes named (see
//! `Cluster::route_draining`). The header is believed from anyone: the
//! most a client gains by sending it is a 503 (`not_owner`, or
//! `cluster_unavailable` when it names every other node), since the owner
//! admits the request itself, with the client's own credentials.

use std::net::IpAddr;

use axum::body::Body;
use axum::http::{HeaderName, HeaderValue, Request, Response, Uri, header};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioIo};

use super::ClusterError;
use crate::gateway::HOP_BY_HOP;

/// Marks a request one node forwarded to another.
const FORWARDED_HEADER: &str = "x-podhost-forwarded";

/// Hop-by-hop headers beside the gateway's own list (`connection` and
/// `upgrade` of a WebSocket handshake are passed on).
const PROXY_HOP_BY_HOP: &[&str] = &["proxy-authorization", "proxy-authenticate"];

/// What a request's `x-podhost-forwarded` says: whether a node forwarded
/// it, and which nodes did.
#[derive(Debug, Default)]
pub struct Hops {
    nodes: Option<HeaderValue>,
}

impl Hops {
    pub fn of(headers: &axum::http::HeaderMap) -> Hops {
        Hops {
            nodes: headers.get(FORWARDED_HEADER).cloned(),
        }
    }

    /// Whether the request came from another node (or says so).
    pub fn forwarded(&self) -> bool {
        self.nodes.is_some()
    }

    /// Whether node `node` forwarded the request before.
    pub fn passed(&self, node: &str) -> bool {
        self.nodes.as_ref().is_some_and(|nodes| {
            nodes
                .as_bytes()
                .split(|byte| *byte == b',')
                .any(|hop| hop.trim_ascii() == node.as_bytes())
        })
    }
}

/// The HTTP/1.1 client that carries forwarded requests (connections kept
/// and reused per owner).
pub struct Forwarder {
    client: Client<HttpConnector, Body>,
    /// Set when the node stops: forwarded event streams end.
    stopping: tokio::sync::watch::Sender<bool>,
}

impl Default for Forwarder {
    fn default() -> Self {
        Self::new()
    }
}

impl Forwarder {
    pub fn new() -> Self {
        let mut connector = HttpConnector::new();
        connector.set_nodelay(true);
        connector.set_connect_timeout(Some(std::time::Duration::from_secs(2)));
        Forwarder {
            client: Client::builder(TokioExecutor::new()).build(connector),
            stopping: tokio::sync::watch::Sender::new(false),
        }
    }

    /// Ends the event streams forwarded through this node, and any
    /// forwarded later: the node is stopping, and a stream never ends on
    /// its own. Their clients resume by `Last-Event-ID` through another
    /// node.
    pub fn end_streams(&self) {
        self.stopping.send_replace(true);
    }

    /// Sends `request` to the node at `address` (from node `from`, for a
    /// client at `client_address`) and returns its response as it comes.
    pub async fn forward(
        &self,
        address: &str,
        owner: &str,
        from: &str,
        client_address: Option<IpAddr>,
        mut request: Request<Body>,
    ) -> Result<Response<Body>, ClusterError> {
        let unreachable = |reason: String, sent: bool| ClusterError::OwnerUnreachable {
            node: owner.to_string(),
            reason,
            sent,
        };
        let path = request
            .uri()
            .path_and_query()
            .map_or("/", |path| path.as_str());
        let uri: Uri = format!("http://{address}{path}")
            .parse()
            .map_err(|error| unreachable(format!("bad address {address:?}: {error}"), false))?;
        let websocket = is_websocket(request.headers());
        let client_upgrade = websocket.then(|| hyper::upgrade::on(&mut request));
        let (mut parts, body) = request.into_parts();
        parts.uri = uri;
        parts.version = axum::http::Version::HTTP_11;
        strip_hop_by_hop(&mut parts.headers, websocket);
        parts.headers.remove(header::HOST);
        add_hop(&mut parts.headers, from);
        if let Some(ip) = client_address {
            append_forwarded_for(&mut parts.headers, ip);
        }
        let mut response = self
            .client
            .request(Request::from_parts(parts, body))
            .await
            .map_err(|error| unreachable(error.to_string(), !error.is_connect()))?;
        if websocket && response.status() == axum::http::StatusCode::SWITCHING_PROTOCOLS {
            let owner_upgrade = hyper::upgrade::on(&mut response);
            if let Some(client_upgrade) = client_upgrade {
                tokio::spawn(tunnel(client_upgrade, owner_upgrade));
            }
            let (parts, _) = response.into_parts();
            return Ok(Response::from_parts(parts, Body::empty()));
        }
        let (mut parts, body) = response.into_parts();
        strip_hop_by_hop(&mut parts.headers, false);
        let event_stream = parts
            .headers
            .get(header::CONTENT_TYPE)
            .and_then(|value| value.to_str().ok())
            .is_some_and(|value| value.starts_with("text/event-stream"));
        if event_stream {
            let mut stopping = self.stopping.subscribe();
            let stopped = Box::pin(async move {
                let _ = stopping.wait_for(|stopping| *stopping).await;
            });
            return Ok(Response::from_parts(
                parts,
                Body::new(EndsOnStop { body, stopped }),
            ));
        }
        Ok(Response::from_parts(parts, Body::new(body)))
    }
}

/// A forwarded event stream's body, which ends when the node stops.
struct EndsOnStop {
    body: hyper::body::Incoming,
    stopped: std::pin::Pin<Box<dyn Future<Output = ()> + Send>>,
}

impl http_body::Body for EndsOnStop {
    type Data = axum::body::Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<http_body::Frame<Self::Data>, Self::Error>>> {
        if self.stopped.as_mut().poll(cx).is_ready() {
            return std::task::Poll::Ready(None);
        }
        std::pin::Pin::new(&mut self.body).poll_frame(cx)
    }
}

/// Copies bytes both ways between the client's and the owner's upgraded
/// connections until either side closes.
async fn tunnel(client: hyper::upgrade::OnUpgrade, owner: hyper::upgrade::OnUpgrade) {
    let (client, owner) = match tokio::try_join!(client, owner) {
        Ok(both) => both,
        Err(error) => {
            tracing::debug!(%error, "a forwarded WebSocket upgrade failed");
            return;
        }
    };
    let (mut client, mut owner) = (TokioIo::new(client), TokioIo::new(owner));
    if let Err(error) = tokio::io::copy_bidirectional(&mut client, &mut owner).await {
        tracing::debug!(%error, "a forwarded WebSocket ended");
    }
}

/// Adds node `from` to the nodes that forwarded a request.
fn add_hop(headers: &mut axum::http::HeaderMap, from: &str) {
    let hops = match headers.get(FORWARDED_HEADER).map(HeaderValue::to_str) {
        Some(Ok(before)) => format!("{before}, {from}"),
        _ => from.to_string(),
    };
    if let Ok(value) = HeaderValue::from_str(&hops) {
        headers.insert(FORWARDED_HEADER, value);
    }
}

fn is_websocket(headers: &axum::http::HeaderMap) -> bool {
    headers
        .get(header::UPGRADE)
        .and_then(|value| value.to_str().ok())
        .is_some_and(|value| value.eq_ignore_ascii_case("websocket"))
}

fn strip_hop_by_hop(headers: &mut axum::http::HeaderMap, keep_upgrade: bool) {
    // Headers named by `Connection` are hop-by-hop too.
    let named: Vec<HeaderName> = headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(','))
        .filter_map(|name| HeaderName::from_bytes(name.trim().as_bytes()).ok())
        .filter(|name| !keep_upgrade || name != header::UPGRADE)
        .collect();
    for name in named {
        headers.remove(name);
    }
    for name in HOP_BY_HOP.iter().chain(PROXY_HOP_BY_HOP) {
        if keep_upgrade && (*name == "connection" || *name == "upgrade") {
            continue;
        }
        headers.remove(*name);
    }
    if keep_upgrade {
        headers.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
    }
}

/// Adds the client's address to `X-Forwarded-For`; the owner believes it
/// only if this node is among its `trusted_proxies`.
fn append_forwarded_for(headers: &mut axum::http::HeaderMap, ip: IpAddr) {
    let name = HeaderName::from_static("x-forwarded-for");
    let value = match headers.get(&name).and_then(|value| value.to_str().ok()) {
        Some(existing) => format!("{existing}, {ip}"),
        None => ip.to_string(),
    };
    if let Ok(value) = HeaderValue::from_str(&value) {
        headers.insert(name, value);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hop_by_hop_headers_stay_behind() {
        let mut headers = axum::http::HeaderMap::new();
        headers.insert(
            header::CONNECTION,
            HeaderValue::from_static("keep-alive, x-secret-hop"),
        );
        headers.insert("x-secret-hop", HeaderValue::from_static("1"));
        headers.insert(
            header::TRANSFER_ENCODING,
            HeaderValue::from_static("chunked"),
        );
        headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain"));
        strip_hop_by_hop(&mut headers, false);
        assert_eq!(headers.len(), 1);
        assert!(headers.contains_key(header::CONTENT_TYPE));
    }

    #[test]
    fn each_forwarding_node_is_named_once_in_order() {
        let mut headers = axum::http::HeaderMap::new();
        assert!(!Hops::of(&headers).forwarded());
        add_hop(&mut headers, "a");
        add_hop(&mut headers, "b");
        assert_eq!(headers[FORWARDED_HEADER], "a, b");
        let hops = Hops::of(&headers);
        assert!(hops.forwarded());
        assert!(hops.passed("a") && hops.passed("b"));
        assert!(!hops.passed("ab") && !hops.passed("c") && !hops.passed(""));
    }

    #[test]
    fn a_websocket_handshake_keeps_its_upgrade() {
        let mut headers = axum::http::HeaderMap::new();
        headers.insert(header::CONNECTION, HeaderValue::from_static("Upgrade"));
        headers.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
        strip_hop_by_hop(&mut headers, true);
        assert_eq!(headers[header::UPGRADE], "websocket");
        assert_eq!(headers[header::CONNECTION], "upgrade");
    }
}
