//! `wasi:http/outgoing-handler`: an object's outbound HTTP requests, sent
//! by `wasmtime-wasi-http` under the class's policy.
//!
//! - **Deny by default**: a request whose authority is not in the class's
//!   `outbound` list fails at once with `HTTP-request-denied` (logged with
//!   the host and the config key); nothing is connected.
//! - **Limits** (`[limits]` or the class's): connect, first-byte and total
//!   timeouts, the response body's size (over it is an error, never a
//!   truncated body), and the requests in flight per object (one more fails
//!   at once with `connection-limit-reached`).
//! - Waiting for the network is a host future: it is not CPU time, but the
//!   event's wall-clock limit still runs; the watchdog stopping the event
//!   drops the instance and with it every request in flight.
//! - A request is a side effect that leaves before the event commits; only
//!   the event's response waits for the commit (the output gate).

use std::collections::HashSet;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use http_body::{Body, Frame, SizeHint};
use hyper::body::Bytes;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::time::{Instant, Sleep};
use wasmtime_wasi_http::{
    Error as HttpError, RequestOptions, WasiBody, WasiHttpHooks, default_send_request,
};

use crate::config::{Limits, OutboundAllowList};
use crate::metrics::{Counter, Histogram};

type Sent = Box<
    dyn Future<
            Output = Result<
                (
                    http::Response<WasiBody>,
                    Box<dyn Future<Output = Result<(), HttpError>> + Send>,
                ),
                HttpError,
            >,
        > + Send,
>;

/// The outbound policy of one object's instance: its class's allow-list and
/// limits, and the requests it has in flight.
pub struct Outbound {
    class: String,
    allowed: OutboundAllowList,
    limits: OutboundLimits,
    in_flight: Arc<Semaphore>,
    counters: OutboundCounters,
    /// Denied hosts already logged by this instance: a guest retrying in a
    /// loop must not flood the host's log.
    denials_logged: HashSet<String>,
}

/// Distinct denied hosts an instance logs; later ones are not logged.
const MAX_DENIALS_LOGGED: usize = 16;

/// The host's counts of outbound requests (`/metrics`).
#[derive(Debug, Clone, Default)]
pub struct OutboundCounters {
    pub sent: Counter,
    pub refused: Counter,
    /// The class's histogram of times to the response's headers.
    pub duration: Option<Histogram>,
}

/// What one outbound request may take.
#[derive(Debug, Clone, Copy)]
pub struct OutboundLimits {
    pub connect_timeout: Duration,
    pub first_byte_timeout: Duration,
    pub total_timeout: Duration,
    pub max_response_bytes: u64,
    pub max_requests: usize,
}

impl OutboundLimits {
    pub fn of(limits: &Limits) -> Self {
        OutboundLimits {
            connect_timeout: limits.outbound_connect_timeout,
            first_byte_timeout: limits.outbound_first_byte_timeout,
            total_timeout: limits.outbound_timeout,
            max_response_bytes: limits.max_outbound_response_bytes,
            max_requests: limits.max_outbound_requests,
        }
    }
}

impl Outbound {
    pub fn new(
        class: &str,
        allowed: OutboundAllowList,
        limits: OutboundLimits,
        counters: OutboundCounters,
    ) -> Self {
        Outbound {
            counters,
            class: class.to_string(),
            allowed,
            in_flight: Arc::new(Semaphore::new(limits.max_requests)),
            limits,
            denials_logged: HashSet::new(),
        }
    }

    /// No host allowed (an instance whose class was not given a policy).
    pub fn deny_all(class: &str) -> Self {
        Self::new(
            class,
            OutboundAllowList::default(),
            OutboundLimits::of(&Limits::default()),
            OutboundCounters::default(),
        )
    }

    /// Checks `request` against the policy: the error to give the guest at
    /// once, if it may not leave.
    fn check(
        &mut self,
        request: &http::Request<WasiBody>,
    ) -> Result<OwnedSemaphorePermit, HttpError> {
        let uri = request.uri();
        let https = uri.scheme() == Some(&http::uri::Scheme::HTTPS);
        let default_port = if https { 443 } else { 80 };
        let Some(authority) = uri.authority() else {
            return Err(HttpError::HttpRequestUriInvalid);
        };
        let host = authority.host();
        let port = authority.port_u16().unwrap_or(default_port);
        if !self.allowed.allows(host, port, default_port) {
            let target = format!("{host}:{port}");
            if self.denials_logged.len() < MAX_DENIALS_LOGGED && self.denials_logged.insert(target)
            {
                tracing::warn!(
                    host,
                    port,
                    "outbound HTTP request to {host}:{port} denied: not in classes.{}.outbound",
                    self.class
                );
            }
            return Err(HttpError::HttpRequestDenied);
        }
        Arc::clone(&self.in_flight)
            .try_acquire_owned()
            .map_err(|_| {
                tracing::debug!(
                    host,
                    limit = self.limits.max_requests,
                    "outbound HTTP request refused: max_outbound_requests in flight"
                );
                HttpError::ConnectionLimitReached
            })
    }
}

impl WasiHttpHooks for Outbound {
    fn send_request(
        &mut self,
        request: http::Request<WasiBody>,
        options: Option<RequestOptions>,
        _response_error: Box<dyn Future<Output = Result<(), HttpError>> + Send>,
    ) -> Sent {
        let permit = match self.check(&request) {
            Ok(permit) => permit,
            Err(error) => {
                self.counters.refused.inc();
                return Box::new(std::future::ready(Err(error)));
            }
        };
        self.counters.sent.inc();
        let limits = self.limits;
        // A guest may ask for shorter timeouts, never longer ones.
        let shorter = |asked: Option<Duration>, ours: Duration| asked.map_or(ours, |a| a.min(ours));
        let asked = options.unwrap_or_default();
        let options = RequestOptions {
            connect_timeout: Some(shorter(asked.connect_timeout, limits.connect_timeout)),
            first_byte_timeout: Some(shorter(asked.first_byte_timeout, limits.first_byte_timeout)),
            between_bytes_timeout: Some(shorter(asked.between_bytes_timeout, limits.total_timeout)),
        };
        let deadline = Instant::now() + limits.total_timeout;
        let host = request.uri().host().unwrap_or_default().to_string();
        let duration = self.counters.duration.clone();
        Box::new(async move {
            let started = std::time::Instant::now();
            let sent =
                tokio::time::timeout_at(deadline, default_send_request(request, Some(options)))
                    .await;
            if let Some(duration) = &duration {
                crate::metrics::observe_since(duration, started);
            }
            let (response, connection) = match sent {
                Ok(Ok(sent)) => sent,
                Ok(Err(error)) => {
                    tracing::info!(%host, %error, "outbound HTTP request failed");
                    return Err(error);
                }
                Err(_elapsed) => {
                    tracing::info!(%host, timeout = ?limits.total_timeout, "outbound HTTP request timed out");
                    return Err(HttpError::HttpResponseTimeout);
                }
            };
            let declared = response
                .headers()
                .get(http::header::CONTENT_LENGTH)
                .and_then(|value| value.to_str().ok()?.parse::<u64>().ok());
            if let Some(length) = declared
                && length > limits.max_response_bytes
            {
                tracing::info!(%host, length, "outbound HTTP response over max_outbound_response_bytes");
                return Err(HttpError::HttpResponseBodySize(Some(length)));
            }
            let response = response.map(|body| {
                WasiBody::new(Capped {
                    inner: Box::pin(body),
                    read: 0,
                    max: limits.max_response_bytes,
                    deadline: Box::pin(tokio::time::sleep_until(deadline)),
                    _permit: permit,
                })
            });
            // The connection's own task ends at the deadline too.
            let connection: Box<dyn Future<Output = Result<(), HttpError>> + Send> =
                Box::new(async move {
                    tokio::time::timeout_at(deadline, connection)
                        .await
                        .unwrap_or(Err(HttpError::HttpResponseTimeout))
                });
            Ok((response, connection))
        })
    }
}

/// A response body held to the size limit and the total deadline; it keeps
/// its request's place among those in flight until it is dropped.
struct Capped<B> {
    inner: Pin<Box<B>>,
    read: u64,
    max: u64,
    deadline: Pin<Box<Sleep>>,
    _permit: OwnedSemaphorePermit,
}

impl<B> Body for Capped<B>
where
    B: Body<Data = Bytes, Error = HttpError>,
{
    type Data = Bytes;
    type Error = HttpError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, HttpError>>> {
        match self.inner.as_mut().poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(data) = frame.data_ref() {
                    self.read = self.read.saturating_add(data.len() as u64);
                    if self.read > self.max {
                        return Poll::Ready(Some(Err(HttpError::HttpResponseBodySize(Some(
                            self.read,
                        )))));
                    }
                }
                Poll::Ready(Some(Ok(frame)))
            }
            Poll::Pending => match self.deadline.as_mut().poll(cx) {
                Poll::Ready(()) => Poll::Ready(Some(Err(HttpError::HttpResponseTimeout))),
                Poll::Pending => Poll::Pending,
            },
            other => other,
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use std::time::Instant as StdInstant;

    use http_body_util::{BodyExt, Empty};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpListener;

    use super::*;

    fn limits() -> OutboundLimits {
        OutboundLimits {
            connect_timeout: Duration::from_secs(5),
            first_byte_timeout: Duration::from_secs(5),
            total_timeout: Duration::from_secs(5),
            max_response_bytes: 1024,
            max_requests: 8,
        }
    }

    fn outbound(allowed: &[&str], limits: OutboundLimits) -> Outbound {
        let allowed = OutboundAllowList::new(allowed.iter().copied()).expect("valid list");
        Outbound::new("test", allowed, limits, OutboundCounters::default())
    }

    fn get(url: &str) -> http::Request<WasiBody> {
        let body = Empty::<Bytes>::new()
            .map_err(|never| match never {})
            .boxed_unsync();
        http::Request::get(url).body(body).expect("a request")
    }

    async fn send(
        outbound: &mut Outbound,
        url: &str,
    ) -> Result<http::Response<WasiBody>, HttpError> {
        let sent = outbound.send_request(get(url), None, Box::new(async { Ok(()) }));
        let (response, connection) = Pin::from(sent).await?;
        tokio::spawn(Pin::from(connection));
        Ok(response)
    }

    /// A server on 127.0.0.1 that answers every connection with `reply`
    /// (or nothing, holding it open, if `None`).
    async fn server(reply: Option<&'static [u8]>) -> String {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let address = listener.local_addr().expect("address");
        tokio::spawn(async move {
            while let Ok((mut socket, _)) = listener.accept().await {
                tokio::spawn(async move {
                    let mut head = [0; 4096];
                    let _ = socket.read(&mut head).await;
                    match reply {
                        Some(reply) => {
                            let _ = socket.write_all(reply).await;
                        }
                        None => tokio::time::sleep(Duration::from_secs(60)).await,
                    }
                });
            }
        });
        format!("http://{address}/")
    }

    #[tokio::test]
    async fn a_host_not_listed_is_denied_at_once() {
        let mut outbound = outbound(&["api.example.com"], limits());
        let started = StdInstant::now();
        let denied = send(&mut outbound, "https://evil.example.net/").await;
        assert!(matches!(denied, Err(HttpError::HttpRequestDenied)));
        let other_port = send(&mut outbound, "https://api.example.com:8443/").await;
        assert!(matches!(other_port, Err(HttpError::HttpRequestDenied)));
        assert!(started.elapsed() < Duration::from_secs(1));
    }

    #[tokio::test]
    async fn a_silent_host_hits_the_total_timeout() {
        let url = server(None).await;
        let mut outbound = outbound(
            &["127.0.0.1:*"],
            OutboundLimits {
                total_timeout: Duration::from_millis(300),
                ..limits()
            },
        );
        let started = StdInstant::now();
        let result = send(&mut outbound, &url).await;
        assert!(matches!(result, Err(HttpError::HttpResponseTimeout)));
        assert!(started.elapsed() < Duration::from_secs(3));
    }

    #[tokio::test]
    async fn one_request_past_the_limit_in_flight_fails_at_once() {
        let url = server(None).await;
        let mut outbound = outbound(
            &["127.0.0.1:*"],
            OutboundLimits {
                max_requests: 1,
                ..limits()
            },
        );
        let first = outbound.send_request(get(&url), None, Box::new(async { Ok(()) }));
        let second = send(&mut outbound, &url).await;
        assert!(matches!(second, Err(HttpError::ConnectionLimitReached)));
        // The first one's place is free again once it is dropped.
        drop(first);
        assert!(outbound.check(&get(&url)).is_ok());
    }

    #[tokio::test]
    async fn each_sent_request_is_timed_in_its_class_histogram() {
        let url = server(Some(
            b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\nconnection: close\r\n\r\nok",
        ))
        .await;
        let metrics = crate::metrics::Metrics::default();
        let class = metrics.class("test");
        let allowed = OutboundAllowList::new(["127.0.0.1:*"]).expect("valid list");
        let counters = OutboundCounters {
            duration: Some(class.outbound_duration.clone()),
            ..OutboundCounters::default()
        };
        let mut outbound = Outbound::new("test", allowed, limits(), counters);
        send(&mut outbound, &url).await.expect("a response");
        // A denied request never leaves, and is not timed.
        let _ = send(&mut outbound, "https://evil.example.net/").await;
        let text = metrics.render(0, 0, 0);
        assert!(
            text.contains("podhost_outbound_duration_seconds_count{class=\"test\"} 1\n"),
            "{text}"
        );
    }

    #[tokio::test]
    async fn a_declared_length_over_the_cap_fails_before_the_body() {
        let url = server(Some(
            b"HTTP/1.1 200 OK\r\ncontent-length: 5000\r\nconnection: close\r\n\r\n",
        ))
        .await;
        let mut outbound = outbound(&["127.0.0.1:*"], limits());
        let result = send(&mut outbound, &url).await;
        assert!(matches!(
            result,
            Err(HttpError::HttpResponseBodySize(Some(5000)))
        ));
    }

    #[tokio::test]
    async fn a_streamed_body_over_the_cap_is_an_error_not_a_cut_body() {
        // Chunked, so the size is only known while reading: two chunks of
        // 800 bytes against a cap of 1024.
        let chunk = format!("320\r\n{}\r\n", "x".repeat(800));
        let reply = format!(
            "HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\nconnection: close\r\n\r\n{chunk}{chunk}0\r\n\r\n"
        );
        let url = server(Some(Box::leak(reply.into_bytes().into_boxed_slice()))).await;
        let mut outbound = outbound(&["127.0.0.1:*"], limits());
        let response = send(&mut outbound, &url).await.expect("the head arrives");
        let read = response.into_body().collect().await;
        assert!(
            matches!(read, Err(HttpError::HttpResponseBodySize(Some(n))) if n > 1024),
            "{:?}",
            read.err()
        );
    }
}
