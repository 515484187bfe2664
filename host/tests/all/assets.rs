//! `[assets]`: the operator's static files at `/`, behind every API route,
//! with content types, `ETag` revalidation, `HEAD`, and no way out of the
//! directory.

use std::path::Path;

use reqwest::StatusCode;
use reqwest::header::{self, HeaderMap};

use crate::support::{Options, Server, parse_json};

const SECRET: &str = "the operator's secret, outside the assets";

/// A web app's files, plus things that must stay unreachable: a file
/// beside the directory, symlinks to it, a dotfile.
fn write_site(dir: &Path) {
    let web = dir.join("web");
    std::fs::create_dir_all(web.join("docs")).expect("web dir");
    std::fs::create_dir_all(web.join("empty")).expect("empty dir");
    std::fs::write(web.join("index.html"), "<h1>notes</h1>").expect("index");
    std::fs::write(web.join("app.mjs"), "export const x = 1;").expect("app");
    std::fs::write(web.join("style.css"), "h1 {}").expect("css");
    std::fs::write(web.join("logo.svg"), "<svg/>").expect("svg");
    std::fs::write(web.join("data.bin"), [0u8, 1, 2]).expect("bin");
    std::fs::write(web.join("docs/index.html"), "<h1>docs</h1>").expect("docs");
    std::fs::write(web.join(".env"), "TOKEN=x").expect("dotfile");
    // Larger than what is read whole: streamed.
    let big: Vec<u8> = (0..3_000_000u32).map(|i| (i % 251) as u8).collect();
    std::fs::write(web.join("big.wasm"), &big).expect("big");
    std::fs::write(dir.join("outside.txt"), SECRET).expect("outside");
    std::os::unix::fs::symlink("../outside.txt", web.join("relative-link.txt")).expect("link");
    std::os::unix::fs::symlink(dir.join("outside.txt"), web.join("absolute-link.txt"))
        .expect("link");
    std::os::unix::fs::symlink("app.mjs", web.join("alias.mjs")).expect("link");
}

async fn start() -> (Server, tempfile::TempDir) {
    let dir = tempfile::tempdir().expect("temp dir");
    write_site(dir.path());
    let options = Options {
        admin_token: Some("assets-admin-token-that-is-long-enough-0123"),
        extra_config: "[assets]\ndir = \"web\"\n",
        ..Options::default()
    };
    let server = Server::start_in(dir.path(), &options).await;
    (server, dir)
}

/// A `GET` of `path`: status, headers and body.
pub async fn get(server: &Server, path: &str) -> (StatusCode, HeaderMap, Vec<u8>) {
    let response = server
        .client
        .get(server.url(path))
        .send()
        .await
        .expect("sent");
    let status = response.status();
    let headers = response.headers().clone();
    let body = response.bytes().await.expect("body").to_vec();
    (status, headers, body)
}

/// A request sent byte for byte (an HTTP client would clean `..` out of
/// the path); returns the status and the body.
async fn raw_get(server: &Server, target: &str) -> (u16, String) {
    let address = server.base.trim_start_matches("http://");
    let request = format!("GET {target} HTTP/1.1\r\nHost: {address}\r\nConnection: close\r\n\r\n");
    let answer = server.raw_exchange(request.as_bytes()).await;
    let status = answer
        .split(' ')
        .nth(1)
        .and_then(|code| code.parse().ok())
        .unwrap_or(0);
    (status, answer)
}

/// Where a `GET` of `path` is sent with a `308`.
pub async fn redirect_of(server: &Server, path: &str) -> String {
    let response = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("client")
        .get(server.url(path))
        .send()
        .await
        .expect("sent");
    assert_eq!(response.status(), 308, "{path}");
    header(response.headers(), header::LOCATION).to_string()
}

fn header(headers: &HeaderMap, name: header::HeaderName) -> &str {
    headers
        .get(name)
        .and_then(|value| value.to_str().ok())
        .unwrap_or("")
}

#[tokio::test]
async fn serves_an_apps_files_with_their_types() {
    let (server, _dir) = start().await;
    for (path, content_type, body) in [
        ("/", "text/html; charset=utf-8", "<h1>notes</h1>"),
        ("/index.html", "text/html; charset=utf-8", "<h1>notes</h1>"),
        ("/docs/", "text/html; charset=utf-8", "<h1>docs</h1>"),
        (
            "/app.mjs",
            "text/javascript; charset=utf-8",
            "export const x = 1;",
        ),
        (
            "/alias.mjs",
            "text/javascript; charset=utf-8",
            "export const x = 1;",
        ),
        ("/style.css", "text/css; charset=utf-8", "h1 {}"),
        ("/logo.svg", "image/svg+xml; charset=utf-8", "<svg/>"),
        ("/data.bin", "application/octet-stream", "\0\u{1}\u{2}"),
    ] {
        let (status, headers, got) = get(&server, path).await;
        assert_eq!(status, 200, "{path}");
        assert_eq!(
            header(&headers, header::CONTENT_TYPE),
            content_type,
            "{path}"
        );
        assert_eq!(got, body.as_bytes(), "{path}");
        assert_eq!(
            header(&headers, header::CONTENT_LENGTH),
            body.len().to_string()
        );
        assert_eq!(header(&headers, header::X_CONTENT_TYPE_OPTIONS), "nosniff");
        let cache = header(&headers, header::CACHE_CONTROL);
        if content_type.starts_with("text/html") {
            assert_eq!(cache, "no-cache", "HTML is revalidated every time");
        } else {
            assert!(cache.contains("max-age"), "{path}: {cache}");
        }
    }

    // A directory without its slash is sent to it; no listing anywhere.
    assert_eq!(redirect_of(&server, "/docs").await, "./docs/");
    let (status, _, body) = get(&server, "/empty/").await;
    assert_eq!(status, 404, "{}", String::from_utf8_lossy(&body));

    // A large file streams whole.
    let (status, headers, body) = get(&server, "/big.wasm").await;
    assert_eq!(status, 200);
    assert_eq!(header(&headers, header::CONTENT_TYPE), "application/wasm");
    assert_eq!(header(&headers, header::CONTENT_LENGTH), "3000000");
    assert_eq!(body.len(), 3_000_000);
    assert!(body.iter().enumerate().all(|(i, b)| *b == (i % 251) as u8));
    server.stop().await;
}

#[tokio::test]
async fn etag_revalidation_and_head() {
    let (server, dir) = start().await;
    let (_, headers, _) = get(&server, "/app.mjs").await;
    let etag = header(&headers, header::ETAG).to_string();
    assert!(
        etag.starts_with('"') && etag.ends_with('"'),
        "a strong ETag: {etag}"
    );

    let revalidate = |tag: String| {
        server
            .client
            .get(server.url("/app.mjs"))
            .header(header::IF_NONE_MATCH, tag)
            .send()
    };
    let response = revalidate(etag.clone()).await.expect("sent");
    assert_eq!(response.status(), 304);
    assert_eq!(header(response.headers(), header::ETAG), etag);
    assert!(response.bytes().await.expect("body").is_empty());
    let response = revalidate(format!("\"other\", W/{etag}"))
        .await
        .expect("sent");
    assert_eq!(response.status(), 304, "a list, compared weakly");
    let response = revalidate("\"other\"".into()).await.expect("sent");
    assert_eq!(response.status(), 200);

    // A changed file has a new tag.
    std::fs::write(dir.path().join("web/app.mjs"), "export const x = 2;").expect("rewrite");
    let response = revalidate(etag.clone()).await.expect("sent");
    assert_eq!(response.status(), 200);
    assert_ne!(header(response.headers(), header::ETAG), etag);
    assert_eq!(response.text().await.expect("body"), "export const x = 2;");

    // HEAD: the headers of GET, no body.
    for path in ["/app.mjs", "/big.wasm"] {
        let response = server
            .client
            .head(server.url(path))
            .send()
            .await
            .expect("sent");
        assert_eq!(response.status(), 200);
        let length = header(response.headers(), header::CONTENT_LENGTH).to_string();
        assert!(!header(response.headers(), header::ETAG).is_empty());
        assert!(response.bytes().await.expect("body").is_empty());
        let (_, _, body) = get(&server, path).await;
        assert_eq!(length, body.len().to_string(), "{path}");
    }
    server.stop().await;
}

#[tokio::test]
async fn no_request_leaves_the_directory() {
    let (server, _dir) = start().await;
    for target in [
        "/../outside.txt",
        "/docs/../../outside.txt",
        "/%2e%2e/outside.txt",
        "/%2E%2E/outside.txt",
        "/docs/%2e%2e/%2e%2e/outside.txt",
        "/docs%2f..%2f..%2foutside.txt",
        "/..%2foutside.txt",
        "/..%5coutside.txt",
        "/docs/..\\..\\outside.txt",
        "/index.html%00.txt",
        "//etc/passwd",
        "/%2fetc%2fpasswd",
        "/relative-link.txt",
        "/absolute-link.txt",
        "/.env",
        "/%2eenv",
    ] {
        let (status, answer) = raw_get(&server, target).await;
        assert!(
            status == 400 || status == 404,
            "{target} must be refused: {answer}"
        );
        assert!(!answer.contains(SECRET), "{target} leaked: {answer}");
        assert!(!answer.contains("root:"), "{target} leaked: {answer}");
        assert!(!answer.contains("TOKEN=x"), "{target} leaked: {answer}");
        if status == 400 {
            assert!(answer.contains("\"bad_request\""), "{target}: {answer}");
        }
    }
    server.stop().await;
}

#[tokio::test]
async fn api_routes_win_and_other_methods_are_refused() {
    let (server, dir) = start().await;
    // Files named like API routes do not shadow them.
    std::fs::write(dir.path().join("web/healthz"), "a file").expect("file");
    std::fs::create_dir_all(dir.path().join("web/objects/counter/a")).expect("dir");
    std::fs::write(dir.path().join("web/objects/counter/a/index.html"), "x").expect("file");
    let (status, body) = server.get("/healthz").await;
    assert_eq!((status, body.trim()), (200, "ok"));
    let (status, body) = server.post("/objects/counter/a/increment", "").await;
    assert_eq!((status, body.as_str()), (200, "1"));
    let (status, body) = server.get("/objects/counter/a/").await;
    assert_eq!(status, 404, "the API's paths are never files: {body}");
    assert_eq!(parse_json(&body)["error"]["code"], "route_not_found");
    let (status, body) = server.get("/admin/classes").await;
    assert_eq!(status, 401, "{body}");

    // A path that is no file: the usual 404.
    let (status, body) = server.get("/missing.js").await;
    assert_eq!(status, 404);
    assert_eq!(parse_json(&body)["error"]["code"], "route_not_found");

    // Only reads.
    let response = server
        .client
        .post(server.url("/app.mjs"))
        .send()
        .await
        .expect("sent");
    assert_eq!(response.status(), 405);
    assert_eq!(header(response.headers(), header::ALLOW), "GET, HEAD");
    let body = parse_json(&response.text().await.expect("body"));
    assert_eq!(body["error"]["code"], "method_not_allowed");
    server.stop().await;
}

#[tokio::test]
async fn a_missing_assets_directory_stops_the_start_with_a_hint() {
    let dir = tempfile::tempdir().expect("temp dir");
    std::fs::write(
        dir.path().join("podhost.toml"),
        "listen = \"127.0.0.1:0\"\ndata_dir = \"data\"\n[assets]\ndir = \"nowhere\"\n",
    )
    .expect("config");
    let output = tokio::process::Command::new(env!("CARGO_BIN_EXE_podhost"))
        .arg("serve")
        .arg("--config")
        .arg(dir.path().join("podhost.toml"))
        .output()
        .await
        .expect("ran");
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("cannot open the assets directory") && stderr.contains("nowhere"),
        "{stderr}"
    );
}
