//! The HTTP front: routes requests to objects, plus health and metrics.

mod admin;
mod auth;
mod classes;
mod connections;
mod credentials;
mod error;
mod events;
mod handles;
mod health;
mod keys;
mod me;
mod objects;
mod orgs;
mod routed;
mod server;
mod sockets;

use std::future::Future;
use std::sync::Arc;

use axum::Router;
use axum::routing::{any, delete, get, post, put};
use tokio::net::TcpListener;

pub use error::ApiError;

use crate::runtime::Runtime;

pub fn router(runtime: Arc<Runtime>) -> Router {
    Router::new()
        .route("/objects/{class}/{name}", any(objects::deliver))
        .route("/objects/{class}/{name}/{*path}", any(objects::deliver))
        .route("/me/{class}", any(me::deliver))
        .route("/me/{class}/{*path}", any(me::deliver))
        .route("/orgs/{org}/{class}", any(orgs::deliver))
        .route("/orgs/{org}/{class}/{*path}", any(orgs::deliver))
        .route("/key", any(keys::deliver))
        .route("/key/{*path}", any(keys::deliver))
        .route("/handles/{class}/{handle}", any(handles::deliver))
        .route("/handles/{class}/{handle}/{*path}", any(handles::deliver))
        .route("/auth/signup", post(auth::signup))
        .route("/auth/login", post(auth::login))
        .route("/auth/refresh", post(auth::refresh))
        .route("/auth/logout", post(auth::logout))
        .route("/auth/me", get(auth::me))
        .route("/auth/orgs", post(orgs::create).get(orgs::list))
        .route(
            "/auth/orgs/{org}/members",
            get(orgs::members).put(orgs::set_member),
        )
        .route(
            "/auth/orgs/{org}/members/{user}",
            delete(orgs::remove_member),
        )
        .route("/admin/classes", get(classes::list))
        .route(
            "/admin/classes/{class}",
            put(classes::deploy)
                .get(classes::show)
                .delete(classes::remove),
        )
        .route("/admin/classes/{class}/rollback", post(classes::rollback))
        .route("/admin/objects", get(admin::list_objects))
        .route(
            "/admin/objects/{class}/{name}",
            delete(admin::delete_object),
        )
        .route(
            "/admin/objects/{class}/{name}/keys",
            post(keys::create).get(keys::list),
        )
        .route("/admin/objects/{class}/{name}/handles", get(handles::list))
        .route("/admin/keys/{id}", delete(keys::revoke))
        .route(
            "/admin/handles/{class}/{handle}",
            put(handles::set).get(handles::get).delete(handles::delete),
        )
        .route("/healthz", get(health::healthz))
        .route("/metrics", get(health::metrics))
        .fallback(|| async { ApiError::RouteNotFound })
        .with_state(runtime)
}

/// Serves until `shutdown` resolves, then lets requests in flight finish
/// and stops every object. Connections are held to the config's
/// `[server]` timeouts and caps (see `server`).
pub async fn serve(
    listener: TcpListener,
    runtime: Arc<Runtime>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    // Requests in flight get until the shutdown deadline; the events still
    // running then are cancelled, so their requests end too.
    let stopping = Arc::clone(&runtime);
    let shutdown = async move {
        shutdown.await;
        stopping.begin_shutdown();
    };
    let settings = runtime.config().server.clone();
    server::run(listener, router(Arc::clone(&runtime)), settings, shutdown).await;
    runtime.shut_down().await;
    Ok(())
}
