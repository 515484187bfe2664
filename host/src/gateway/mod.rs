//! The HTTP front: routes requests to objects, plus health and metrics.

mod admin;
mod admin_page;
mod assets;
mod auth;
mod body;
mod catalog_durable;
mod classes;
mod connections;
mod credentials;
mod error;
mod events;
mod front;
mod handles;
mod handshake;
mod health;
mod inspect;
mod keys;
mod logs;
mod me;
mod objects;
mod orgs;
mod owner;
mod principal;
pub(crate) mod restore;
mod routed;
mod server;
mod sockets;
mod state;
mod tenants;
mod users;

use std::future::Future;
use std::sync::Arc;

use axum::Router;
use axum::routing::{any, delete, get, post, put};
use tokio::net::TcpListener;

pub use error::ApiError;
pub use front::Front;
pub(crate) use objects::HOP_BY_HOP;
pub use state::Gateway;

/// The first path segments of the API: static files are never served
/// under them (`/objects/counter/a/`, which no route takes, stays a 404
/// rather than a file's). Keep in step with `router`.
const API_ROOTS: &[&str] = &[
    "objects", "me", "orgs", "key", "handles", "auth", "admin", "healthz", "metrics",
];

/// Every route, on the gateway's state.
pub fn router(gateway: Gateway) -> Router {
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
        .merge(catalog_routes(gateway.clone()))
        // Last: a path no route above matches may name a static file.
        .fallback(assets::serve)
        .with_state(gateway)
}

/// The routes besides objects' own: those that write the catalog,
/// and answer once it is durable (`catalog_durable`).
fn catalog_routes(gateway: Gateway) -> Router<Gateway> {
    Router::new()
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
        .route("/admin", get(admin_page::redirect))
        .route("/admin/", get(admin_page::index))
        .route("/admin/admin.js", get(admin_page::script))
        .route("/admin/admin.css", get(admin_page::style))
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
            get(inspect::inspect).delete(admin::delete_object),
        )
        .route("/admin/objects/{class}/{name}/query", post(inspect::query))
        .route("/admin/objects/{class}/{name}/export", get(inspect::export))
        .route("/admin/objects/{class}/{name}/import", put(inspect::import))
        .route(
            "/admin/objects/{class}/{name}/restore",
            post(restore::restore_object),
        )
        .route("/admin/objects/{class}/{name}/logs", get(logs::logs))
        .route(
            "/admin/objects/{class}/{name}/keys",
            post(keys::create).get(keys::list),
        )
        .route("/admin/objects/{class}/{name}/handles", get(handles::list))
        .route("/admin/keys/{id}", delete(keys::revoke))
        .route("/admin/users", get(users::find))
        .route("/admin/users/{id}", get(users::get).delete(users::delete))
        .route("/admin/users/{id}/disable", post(users::disable))
        .route("/admin/users/{id}/enable", post(users::enable))
        .route("/admin/tenants", post(tenants::create).get(tenants::list))
        .route(
            "/admin/tenants/{name}",
            get(tenants::get).delete(tenants::delete),
        )
        .route(
            "/admin/handles/{class}/{handle}",
            put(handles::set).get(handles::get).delete(handles::delete),
        )
        .route("/healthz", get(health::healthz))
        .route("/metrics", get(health::metrics))
        .route_layer(axum::middleware::from_fn_with_state(
            gateway,
            catalog_durable::wait,
        ))
}

/// Serves until `shutdown` resolves, then lets requests in flight finish
/// and stops every object. Connections are held to the config's
/// `[server]` timeouts and caps (see `server`).
pub async fn serve(
    listener: TcpListener,
    gateway: Gateway,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let runtime = Arc::clone(gateway.runtime());
    // Requests in flight get until the shutdown deadline; the events still
    // running then are cancelled, so their requests end too.
    let stopping = Arc::clone(&runtime);
    let shutdown = async move {
        shutdown.await;
        stopping.begin_shutdown();
    };
    let settings = runtime.config().server.clone();
    server::run(listener, Front::new(gateway), settings, shutdown).await;
    runtime.shut_down().await;
    Ok(())
}
