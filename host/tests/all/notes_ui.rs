//! The notes app in a real browser: examples/notes with its UI
//! (examples/notes/web, type-checked and bundled by its `npm run build`)
//! served by podhost from the same origin, driven in headless Chromium
//! (tests/browser/notes.test.mjs).

use crate::node;

#[tokio::test]
async fn two_tabs_stay_in_sync_and_nothing_is_lost_across_restarts_and_outages() {
    if !node::have_chromium(
        "notes_ui::two_tabs_stay_in_sync_and_nothing_is_lost_across_restarts_and_outages",
    ) {
        return;
    }
    // The UI bundles the client from its TypeScript sources.
    node::npm_ci("clients/js");
    node::npm_ci("examples/notes/web");
    node::npm_run("examples/notes/web", "build");
    node::run("tests/browser", &["notes.test.mjs"], &["notes"]).await;
}
