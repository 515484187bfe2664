//! `/healthz` and `/metrics`.

use std::sync::Arc;

use axum::extract::State;
use axum::http::header;
use axum::response::IntoResponse;

use crate::runtime::Runtime;

pub async fn healthz() -> &'static str {
    "ok\n"
}

pub async fn metrics(State(runtime): State<Arc<Runtime>>) -> impl IntoResponse {
    if let Some(replication) = runtime.replication() {
        replication.update_lag();
    }
    let body = runtime.metrics().render(
        runtime.active_objects(),
        runtime.open_objects(),
        runtime.sockets().open(),
    );
    ([(header::CONTENT_TYPE, crate::metrics::CONTENT_TYPE)], body)
}
