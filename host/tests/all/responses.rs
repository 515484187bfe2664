//! What the host sends for an object's response: caps on its body and
//! headers, final statuses only, no body for 204/304/HEAD, no hop-by-hop
//! headers. The `raw` test guest answers whatever status, headers and
//! body the query asks for.

use std::path::PathBuf;
use std::sync::Mutex;

use crate::support::{Options, Server, parse_json};

/// The `raw` test guest, built once.
pub fn raw_guest() -> PathBuf {
    static BUILT: Mutex<Option<PathBuf>> = Mutex::new(None);
    let mut built = BUILT.lock().unwrap_or_else(|p| p.into_inner());
    built
        .get_or_insert_with(|| {
            let workspace = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
            podhost::dev::build_guests(
                &workspace,
                &["raw".to_string()],
                &workspace.join("target").join("guests"),
            )
            .expect("building the raw guest")["raw"]
                .clone()
        })
        .clone()
}

async fn start(extra_config: &'static str) -> (Server, tempfile::TempDir) {
    Server::start(Options {
        extra_classes: vec![("raw", raw_guest())],
        extra_config,
        ..Options::default()
    })
    .await
}

async fn error_code(server: &Server, path: &str) -> (u16, String) {
    let (status, body) = server.get(path).await;
    let code = serde_json::from_str::<serde_json::Value>(&body)
        .ok()
        .and_then(|json| json["error"]["code"].as_str().map(str::to_string))
        .unwrap_or(body);
    (status, code)
}

#[tokio::test]
async fn a_response_body_over_max_response_bytes_is_a_500() {
    let (server, _dir) = start("max_response_bytes = 100000\n").await;
    let (status, body) = server.get("/objects/raw/x/respond?body=100000").await;
    assert_eq!((status, body.len()), (200, 100_000));
    let (status, body) = server.get("/objects/raw/x/respond?body=100001").await;
    assert_eq!(status, 500, "{body}");
    assert_eq!(parse_json(&body)["error"]["code"], "response_too_large");
    server.stop().await;
}

#[tokio::test]
async fn the_default_response_cap_is_32_mib() {
    let (server, _dir) = start("").await;
    let (status, code) = error_code(&server, "/objects/raw/x/respond?body=33554433").await;
    assert_eq!((status, code.as_str()), (500, "response_too_large"));
    let response = server
        .client
        .get(server.url("/objects/raw/x/respond?body=33554432"))
        .send()
        .await
        .expect("sent");
    assert_eq!(response.status(), 200);
    assert_eq!(response.bytes().await.expect("body").len(), 33_554_432);
    server.stop().await;
}

#[tokio::test]
async fn too_many_headers_are_refused_and_hurt_nobody() {
    let (server, _dir) = start("").await;
    let (status, code) = error_code(&server, "/objects/raw/x/respond?headers=100000").await;
    assert_eq!((status, code.as_str()), (500, "invalid_response"));
    let (status, code) = error_code(&server, "/objects/raw/x/respond?headers=1000").await;
    assert_eq!((status, code.as_str()), (500, "invalid_response"));
    let (status, code) = error_code(&server, "/objects/raw/x/respond?headers=100&value=1000").await;
    assert_eq!(
        (status, code.as_str()),
        (500, "invalid_response"),
        "100 KB of headers"
    );

    let response = server
        .client
        .get(server.url("/objects/raw/x/respond?headers=90"))
        .send()
        .await
        .expect("sent");
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["x-h89"], "v");
    assert_eq!(server.get("/healthz").await, (200, "ok\n".into()));
    server.stop().await;
}

#[tokio::test]
async fn only_final_statuses_are_sent_and_pipelined_requests_survive() {
    let (server, _dir) = start("").await;
    for status in [100, 101, 103, 199, 600, 999, 42, 1000] {
        let path = format!("/objects/raw/x/respond?status={status}");
        assert_eq!(
            error_code(&server, &path).await,
            (500, "invalid_response".into()),
            "status {status}"
        );
    }
    assert_eq!(server.get("/objects/raw/x/respond?status=599").await.0, 599);
    // A 101 would hand the connection over: the request after it is lost.
    let reply = server
        .raw_exchange_until(
            b"GET /objects/raw/x/respond?status=101 HTTP/1.1\r\nhost: x\r\n\r\n\
              GET /healthz HTTP/1.1\r\nhost: x\r\n\r\n",
            "ok\n",
        )
        .await;
    assert!(reply.starts_with("HTTP/1.1 500"), "{reply}");
    assert!(
        reply.ends_with("ok\n"),
        "the pipelined request is answered: {reply}"
    );
    server.stop().await;
}

#[tokio::test]
async fn no_body_and_no_length_for_204_and_304_and_none_for_head() {
    let (server, _dir) = start("").await;
    let reply = server
        .raw_exchange_until(
            b"GET /objects/raw/x/respond?status=204&body=5&set=content-length:5 HTTP/1.1\r\nhost: x\r\n\r\n\
              GET /objects/raw/x/respond?status=304&body=5 HTTP/1.1\r\nhost: x\r\n\r\n\
              HEAD /objects/raw/x/respond?body=7 HTTP/1.1\r\nhost: x\r\n\r\n\
              GET /healthz HTTP/1.1\r\nhost: x\r\n\r\n",
            "ok\n",
        )
        .await;
    let responses: Vec<&str> = reply
        .split("HTTP/1.1 ")
        .filter(|part| !part.is_empty())
        .collect();
    assert_eq!(responses.len(), 4, "{reply}");
    for (response, status) in responses[..3].iter().zip(["204", "304", "200"]) {
        assert!(response.starts_with(status), "{reply}");
        let (head, body) = response.split_once("\r\n\r\n").expect("a whole head");
        assert_eq!(body, "", "no body: {reply}");
        let head = head.to_ascii_lowercase();
        assert!(!head.contains("transfer-encoding"), "{reply}");
        if status != "200" {
            assert!(!head.contains("content-length"), "no length: {reply}");
        }
    }
    assert!(responses[3].starts_with("200") && responses[3].ends_with("ok\n"));
    server.stop().await;
}

#[tokio::test]
async fn hop_by_hop_headers_from_the_object_are_dropped() {
    let (server, _dir) = start("").await;
    let response = server
        .client
        .get(server.url(
            "/objects/raw/x/respond?body=3&set=connection:x-secret&set=x-secret:1\
             &set=keep-alive:timeout=5&set=proxy-authenticate:Basic&set=proxy-foo:1\
             &set=te:trailers&set=trailer:x-t&set=upgrade:h2c&set=transfer-encoding:chunked\
             &set=x-kept:yes",
        ))
        .send()
        .await
        .expect("sent");
    assert_eq!(response.status(), 200);
    let headers = response.headers().clone();
    for dropped in [
        "x-secret",
        "keep-alive",
        "proxy-authenticate",
        "proxy-foo",
        "te",
        "trailer",
        "upgrade",
        "transfer-encoding",
    ] {
        assert!(!headers.contains_key(dropped), "{dropped}: {headers:?}");
    }
    assert_eq!(headers["x-kept"], "yes");
    assert_eq!(response.text().await.expect("body"), "xxx");
    server.stop().await;
}
