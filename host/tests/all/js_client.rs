//! `clients/js`, the podhost client for browsers and Node: its own tests
//! (Node's test runner) against real servers they start, after building
//! the TypeScript (`npm run build`).

use crate::node;

#[tokio::test]
async fn the_js_client_signs_in_calls_objects_and_keeps_sockets_and_streams_open() {
    node::run_after(
        "clients/js",
        Some("build"),
        &[
            "test/sse-parser.test.mjs",
            "test/auth.test.mjs",
            "test/objects.test.mjs",
            "test/live.test.mjs",
            "test/events.test.mjs",
        ],
        &["blog", "counter", "probe"],
    )
    .await;
}

#[tokio::test]
async fn the_js_client_works_in_chromium_with_the_session_cookies() {
    if !node::have_chromium("js_client::the_js_client_works_in_chromium_with_the_session_cookies") {
        return;
    }
    node::npm_ci("clients/js");
    node::npm_run("clients/js", "build");
    node::run("tests/browser", &["js-client.test.mjs"], &["blog"]).await;
}
