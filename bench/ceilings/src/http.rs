//! The ceiling of a request: a handler that does nothing, served by the
//! same stack as podhost's gateway (`host/src/gateway/server.rs`): tokio's
//! multi-thread runtime, an accept loop setting `TCP_NODELAY`, hyper's
//! HTTP/1 per connection (keep-alive on, no header timeout) around an axum
//! `Router`. What podhost does beyond this (finding the object, its
//! actor, the guest, SQLite) is what a fraction of this ceiling measures.

use std::time::Duration;

use anyhow::Context as _;
use axum::Router;
use axum::body::Body;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper_util::rt::TokioIo;
use tokio::net::{TcpListener, TcpStream};
use tower_service::Service as _;

pub fn serve(port: u16) -> anyhow::Result<()> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?
        .block_on(accept(port))
}

async fn accept(port: u16) -> anyhow::Result<()> {
    let listener = TcpListener::bind(("127.0.0.1", port))
        .await
        .with_context(|| format!("cannot listen on 127.0.0.1:{port}"))?;
    // Any path, any method.
    let router = Router::new().fallback(nothing);
    loop {
        let stream = match listener.accept().await {
            Ok((stream, _)) => stream,
            Err(error) => {
                eprintln!("ceilings http: cannot accept a connection: {error}");
                // Out of descriptors, say: let connections close first.
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        if let Err(error) = stream.set_nodelay(true) {
            eprintln!("ceilings http: cannot set TCP_NODELAY: {error}");
        }
        tokio::spawn(connection(stream, router.clone()));
    }
}

async fn nothing() -> &'static str {
    "ok"
}

async fn connection(stream: TcpStream, router: Router) {
    let service = hyper::service::service_fn(move |request: hyper::Request<Incoming>| {
        router.clone().call(request.map(Body::new))
    });
    let mut builder = http1::Builder::new();
    builder.header_read_timeout(None);
    // A connection's error is its client's doing (a reset when wrk
    // stops): nothing this ceiling should report.
    let _ = builder
        .serve_connection(TokioIo::new(stream), service)
        .with_upgrades()
        .await;
}
