//! The HTTP surface: routing, what the object sees, errors, limits and
//! malformed input.

use crate::support::{Options, Server, parse_json};

#[tokio::test]
async fn unknown_classes_and_routes_are_404_with_a_json_error() {
    let (server, _dir) = Server::start(Options::default()).await;
    let (status, body) = server.get("/objects/nope/x").await;
    assert_eq!(status, 404);
    assert_eq!(parse_json(&body)["error"]["code"], "class_not_found");
    let (status, body) = server.get("/nowhere").await;
    assert_eq!(status, 404);
    assert_eq!(parse_json(&body)["error"]["code"], "route_not_found");
    assert_eq!(server.get("/healthz").await, (200, "ok\n".into()));
    server.stop().await;
}

#[tokio::test]
async fn the_object_sees_its_path_query_headers_body_and_identity() {
    let (server, _dir) = Server::start(Options::default()).await;
    let response = server
        .client
        .post(server.url("/objects/probe/who%20am%20i/echo?x=1&y=two"))
        .header("x-probe", "hello")
        .body("12345")
        .send()
        .await
        .expect("request sent");
    assert_eq!(response.status(), 200);
    let echo: serde_json::Value = response.json().await.expect("JSON");
    assert_eq!(echo["method"], "POST");
    assert_eq!(echo["path"], "/echo");
    assert_eq!(echo["query"], "x=1&y=two");
    assert_eq!(echo["header"], "hello");
    assert_eq!(echo["body_len"], 5);

    let (status, body) = server.get("/objects/probe/who%20am%20i/whoami").await;
    assert_eq!(status, 200);
    let me = parse_json(&body);
    assert_eq!(me["class"], "probe");
    assert_eq!(me["name"], "who am i");
    assert_eq!(me["id"].as_str().map(str::len), Some(64));
    server.stop().await;
}

#[tokio::test]
async fn oversized_bodies_are_refused_with_413() {
    let options = Options {
        max_body_bytes: 1024,
        ..Options::default()
    };
    let (server, _dir) = Server::start(options).await;
    let (status, body) = server.post("/objects/counter/big", vec![b'x'; 1025]).await;
    assert_eq!(status, 413, "{body}");
    assert_eq!(parse_json(&body)["error"]["code"], "body_too_large");
    assert_eq!(
        server
            .post("/objects/probe/big/echo", vec![b'x'; 1024])
            .await
            .0,
        200
    );

    // Without a Content-Length the limit still holds.
    let chunk = "x".repeat(800);
    let request = format!(
        "POST /objects/counter/big HTTP/1.1\r\nhost: x\r\ntransfer-encoding: chunked\r\nconnection: close\r\n\r\n\
         {len:x}\r\n{chunk}\r\n{len:x}\r\n{chunk}\r\n0\r\n\r\n",
        len = chunk.len()
    );
    let reply = server.raw_exchange(request.as_bytes()).await;
    assert!(reply.starts_with("HTTP/1.1 413"), "{reply}");
    assert_eq!(
        server.get("/objects/counter/big").await,
        (200, "0".into()),
        "nothing was counted"
    );
    server.stop().await;
}

#[tokio::test]
async fn malformed_http_gets_an_error_and_hurts_nobody() {
    let (server, _dir) = Server::start(Options::default()).await;
    // Each gets a 400 (not silence: an empty reply would pass for a server
    // that crashed or dropped the connection), then the connection closes.
    for request in [
        &b"THIS IS NOT HTTP\r\n\r\n"[..],
        b"GET /objects/counter/x HTTP/1.1\r\nhost: x\r\nbad header\r\n\r\n",
    ] {
        let reply = server.raw_exchange(request).await;
        assert!(
            reply.starts_with("HTTP/1.1 400 Bad Request\r\n"),
            "{:?}: {reply:?}",
            String::from_utf8_lossy(request)
        );
    }
    assert_eq!(
        server.post("/objects/counter/x", "").await,
        (200, "1".into())
    );
    server.stop().await;
}

/// SIGTERM sent as soon as the server says it is listening stops it
/// gracefully: the handler is in place before that line is printed.
#[tokio::test]
async fn a_sigterm_right_after_start_stops_the_server_cleanly() {
    for _ in 0..3 {
        let (server, _dir) = Server::start(Options::default()).await;
        server.stop().await;
    }
}

/// An open event stream does not hold a stopping server: the stream ends
/// at shutdown (its client resumes by id against the next server), so
/// SIGTERM stops the server as promptly as without it.
#[tokio::test]
async fn an_open_event_stream_ends_when_the_server_stops() {
    let (server, _dir) = Server::start(Options::default()).await;
    let _stream = server.events("/objects/chat/lobby/_events", None).await;
    server.stop().await;
}
