//! The HTTP front: routes requests to objects, plus health and metrics.

mod admin;
mod error;
mod events;
mod health;
mod objects;
mod sockets;

use std::future::Future;
use std::sync::Arc;

use axum::Router;
use axum::routing::{any, delete, get};
use axum::serve::ListenerExt;
use tokio::net::TcpListener;

pub use error::ApiError;

use crate::runtime::Runtime;

pub fn router(runtime: Arc<Runtime>) -> Router {
    Router::new()
        .route("/objects/{class}/{name}", any(objects::deliver_root))
        .route("/objects/{class}/{name}/{*path}", any(objects::deliver))
        .route("/admin/objects", get(admin::list_objects))
        .route(
            "/admin/objects/{class}/{name}",
            delete(admin::delete_object),
        )
        .route("/healthz", get(health::healthz))
        .route("/metrics", get(health::metrics))
        .fallback(|| async { ApiError::RouteNotFound })
        .with_state(runtime)
}

/// Serves until `shutdown` resolves, then lets requests in flight finish
/// and stops every object.
pub async fn serve(
    listener: TcpListener,
    runtime: Arc<Runtime>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    // Responses and socket frames are written whole: Nagle's algorithm
    // would only hold small ones back waiting for an ACK.
    let listener = listener.tap_io(|tcp| {
        if let Err(error) = tcp.set_nodelay(true) {
            tracing::debug!(%error, "cannot set TCP_NODELAY");
        }
    });
    axum::serve(listener, router(Arc::clone(&runtime)))
        .with_graceful_shutdown(shutdown)
        .await?;
    runtime.shut_down().await;
    Ok(())
}
