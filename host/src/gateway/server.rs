//! The accept loop: each connection is served by hyper's HTTP/1 (with
//! upgrades, for WebSockets) under the `[server]` caps and timeouts, and
//! accepting goes on when the process runs out of files.

use std::convert::Infallible;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::{Pin, pin};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::ConnectInfo;
use http_body::{Frame, SizeHint};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper_util::rt::TokioIo;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::time::Instant;

use super::connections::{Activity, Addresses, Busy, Watched};
use super::front::Front;
use crate::config::ServerSettings;

/// Serves `front` on `listener` until `shutdown` resolves, then lets the
/// requests in flight finish (WebSockets are the runtime's to close).
pub async fn run(
    listener: TcpListener,
    front: Front,
    settings: ServerSettings,
    shutdown: impl Future<Output = ()>,
) {
    let settings = Arc::new(settings);
    let addresses = Addresses::new(settings.max_connections_per_address);
    let mut reserve = FileReserve::open();
    let (stop, stopping) = watch::channel(false);
    let (finished, running) = watch::channel(());
    let mut shutdown = pin!(shutdown);
    let serve = |stream: TcpStream, peer: SocketAddr| {
        let Some(slot) = addresses.admit(peer.ip()) else {
            tracing::debug!(%peer, "refusing a connection: its address has too many open");
            refuse(
                &stream,
                "too_many_connections",
                "this address has too many connections open",
            );
            return;
        };
        // Responses and socket frames are written whole: Nagle's algorithm
        // would only hold small ones back waiting for an ACK.
        if let Err(error) = stream.set_nodelay(true) {
            tracing::debug!(%error, "cannot set TCP_NODELAY");
        }
        let activity = Activity::new();
        let io = Watched::new(stream, Arc::clone(&activity), slot);
        tokio::spawn(connection(
            io,
            peer,
            front.clone(),
            activity,
            Arc::clone(&settings),
            stopping.clone(),
            running.clone(),
        ));
    };
    loop {
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(error) => {
                    reserve.on_accept_error(&listener, error).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        serve(stream, peer);
    }
    // Connections the kernel has already completed would be reset when
    // the listener closes, their requests sent and never read: each is
    // served its request first.
    if let Ok(listener) = listener.into_std() {
        while let Ok((stream, peer)) = listener.accept() {
            let stream = stream
                .set_nonblocking(true)
                .and_then(|()| TcpStream::from_std(stream));
            match stream {
                Ok(stream) => serve(stream, peer),
                Err(error) => tracing::debug!(%error, "cannot serve a last connection"),
            }
        }
    }
    // The listener is closed: new clients are refused by the kernel.
    let _ = stop.send(true);
    drop(running);
    finished.closed().await;
}

/// Serves one connection until it ends, times out, or the server stops
/// (then after its request in flight, or after its first request when it
/// has not started one). `_running` tells `run` it is still going.
async fn connection(
    io: Watched<TcpStream>,
    peer: SocketAddr,
    front: Front,
    activity: Arc<Activity>,
    settings: Arc<ServerSettings>,
    mut stopping: watch::Receiver<bool>,
    _running: watch::Receiver<()>,
) {
    let requests = Arc::clone(&activity);
    let service = hyper::service::service_fn(move |mut request: hyper::Request<Incoming>| {
        let busy = requests.request();
        // The client's address counts login attempts.
        request.extensions_mut().insert(ConnectInfo(peer));
        let response = front.clone().serve(request.map(Body::new));
        async move {
            let response = response.await;
            Ok::<_, Infallible>(response.map(|body| Tracked { body, _busy: busy }))
        }
    });
    let mut builder = http1::Builder::new();
    // The connection's `Activity` keeps the time instead (see
    // `connections`): hyper's would also cut idle kept-alive connections.
    builder.header_read_timeout(None);
    let mut served = pin!(
        builder
            .serve_connection(TokioIo::new(io), service)
            .with_upgrades()
    );
    // Asked to stop: `graceful` once hyper was told, which it does at
    // once unless the connection has not started its first request yet.
    let mut stop_asked = false;
    let mut graceful = false;
    loop {
        if stop_asked && !graceful && !activity.awaits_first_request() {
            graceful = true;
            served.as_mut().graceful_shutdown();
        }
        let deadline = activity.deadline(&settings);
        tokio::select! {
            ended = served.as_mut() => {
                if let Err(error) = ended {
                    tracing::debug!(%peer, %error, "a connection ended with an error");
                }
                return;
            }
            () = sleep_until(deadline) => {
                if activity.deadline(&settings).is_some_and(|at| at <= Instant::now()) {
                    tracing::debug!(%peer, "closing a connection that is too slow or idle");
                    return;
                }
            }
            () = activity.changed.notified() => {}
            _ = stopping.changed(), if !stop_asked => {
                stop_asked = true;
                activity.stop_after_first();
            }
        }
    }
}

async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(deadline) => tokio::time::sleep_until(deadline).await,
        None => std::future::pending().await,
    }
}

/// A response body that keeps its request counted as running until it has
/// been sent whole (hyper drops it then) or the connection ends.
struct Tracked {
    body: Body,
    _busy: Busy,
}

impl http_body::Body for Tracked {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, axum::Error>>> {
        Pin::new(&mut self.body).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}

/// Answers a connection the server will not serve with a 503 if its
/// socket takes it at once, and closes it.
fn refuse(stream: &TcpStream, code: &str, message: &str) {
    let body = serde_json::json!({ "error": { "code": code, "message": message } }).to_string();
    let response = format!(
        "HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/json\r\n\
         content-length: {}\r\nretry-after: 1\r\nconnection: close\r\n\r\n{body}",
        body.len()
    );
    let _ = stream.try_write(response.as_bytes());
}

/// A file held open so that, when the process has no descriptor left,
/// closing it lets the server accept (and refuse) a waiting connection
/// instead of leaving clients hanging in the backlog and the accept loop
/// spinning on EMFILE.
struct FileReserve {
    file: Option<std::fs::File>,
    warned: Option<Instant>,
}

impl FileReserve {
    fn open() -> Self {
        FileReserve {
            file: std::fs::File::open("/dev/null").ok(),
            warned: None,
        }
    }

    async fn on_accept_error(&mut self, listener: &TcpListener, error: io::Error) {
        match error.raw_os_error() {
            Some(libc::EMFILE | libc::ENFILE) => {
                if self
                    .warned
                    .is_none_or(|at| at.elapsed() >= Duration::from_secs(10))
                {
                    self.warned = Some(Instant::now());
                    tracing::warn!(
                        "out of file descriptors: refusing new connections until some close \
                         (raise the limit on open files, or lower [server] max_connections_per_address)"
                    );
                }
                if self.file.take().is_some() {
                    let waiting =
                        tokio::time::timeout(Duration::from_millis(10), listener.accept()).await;
                    if let Ok(Ok((stream, _))) = waiting {
                        refuse(
                            &stream,
                            "out_of_files",
                            "the server is out of file descriptors",
                        );
                    }
                    self.file = std::fs::File::open("/dev/null").ok();
                }
                if self.file.is_none() {
                    // Nothing to give back: wait for connections to close.
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            }
            // The client left before it was accepted.
            Some(libc::ECONNABORTED | libc::ECONNRESET | libc::EINTR | libc::EPROTO) => {}
            _ => {
                tracing::warn!(%error, "cannot accept a connection");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
}
