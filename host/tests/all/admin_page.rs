//! The operator's page at `/admin/`, in headless Chromium: the scenario
//! lives in `tests/browser/admin.test.mjs` (screenshots in
//! `target/browser-artifacts/admin-*.png`).

use crate::assets::{get, redirect_of};
use crate::node;

#[tokio::test]
async fn an_operator_browses_objects_in_the_admin_page() {
    if !node::have_chromium("admin_page::an_operator_browses_objects_in_the_admin_page") {
        return;
    }
    node::run("tests/browser", &["admin.test.mjs"], &["counter", "blog"]).await;
}

#[tokio::test]
async fn the_admin_page_is_served_without_a_token_and_leaves_the_api_alone() {
    let (server, _dir) = crate::support::Server::start(crate::support::Options {
        admin_token: Some("page-admin-token-that-is-long-enough-0123456"),
        ..Default::default()
    })
    .await;
    for (path, content_type) in [
        ("/admin/", "text/html; charset=utf-8"),
        ("/admin/admin.js", "text/javascript; charset=utf-8"),
        ("/admin/admin.css", "text/css; charset=utf-8"),
    ] {
        let (status, headers, _) = get(&server, path).await;
        assert_eq!(status, 200, "{path}");
        assert_eq!(headers["content-type"], content_type);
        let policy = headers["content-security-policy"].to_str().expect("ascii");
        assert!(policy.contains("default-src 'self'"), "{policy}");
        assert!(policy.contains("frame-ancestors 'none'"), "{policy}");
        assert!(!policy.contains("unsafe-inline"), "{policy}");
        assert_eq!(headers["x-frame-options"], "DENY");
        assert_eq!(headers["x-content-type-options"], "nosniff");
    }
    let page = server.get("/admin/").await.1;
    assert!(!page.contains("<script>"), "no inline script");
    assert!(
        !server.get("/admin/admin.js").await.1.contains("innerHTML"),
        "the page never parses data as HTML"
    );
    // `/admin` goes to the page; the JSON API still needs its token.
    assert_eq!(redirect_of(&server, "/admin").await, "/admin/");
    let (status, body) = server.get("/admin/classes").await;
    assert_eq!(status, 401, "{body}");
    let (status, body) = server.get("/admin/objects").await;
    assert_eq!(status, 401, "{body}");
    server.stop().await;
}
