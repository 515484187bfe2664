//! `req.client_address()`: the socket's peer, or a trusted proxy's
//! `X-Forwarded-For` / `Forwarded`, never a header from anyone else.

use futures_util::StreamExt;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

use crate::support::{Options, Server};

async fn address(server: &Server, headers: &[(&str, &str)]) -> serde_json::Value {
    let mut request = server
        .client
        .get(server.url("/objects/probe/addr/client-address"));
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let response = request.send().await.expect("request sent");
    assert_eq!(response.status(), 200);
    let body: serde_json::Value = response.json().await.expect("JSON");
    body["client_address"].clone()
}

/// The address a WebSocket's `socket-open` saw.
async fn socket_address(server: &Server, forwarded_for: Option<&str>) -> String {
    let url = format!(
        "{}/objects/probe/addr/client-address",
        server.base.replacen("http://", "ws://", 1)
    );
    let mut request = url.into_client_request().expect("a request");
    if let Some(forwarded_for) = forwarded_for {
        request.headers_mut().insert(
            "x-forwarded-for",
            forwarded_for.parse().expect("a header value"),
        );
    }
    let (mut ws, _) = tokio_tungstenite::connect_async(request)
        .await
        .expect("the socket opens");
    let first = tokio::time::timeout(std::time::Duration::from_secs(10), ws.next())
        .await
        .expect("a message within 10 s");
    match first {
        Some(Ok(Message::Text(text))) => text.to_string(),
        other => panic!("expected the address, got {other:?}"),
    }
}

#[tokio::test]
async fn the_address_is_the_peers_unless_a_trusted_proxy_forwarded_it() {
    let (server, _dir) = Server::start(Options::default()).await;
    assert_eq!(address(&server, &[]).await, "127.0.0.1");
    assert_eq!(
        address(&server, &[("x-forwarded-for", "203.0.113.9")]).await,
        "127.0.0.1",
        "a client that is not a trusted proxy cannot choose its address"
    );
    assert_eq!(
        address(&server, &[("forwarded", "for=203.0.113.9")]).await,
        "127.0.0.1"
    );
    assert_eq!(
        socket_address(&server, Some("203.0.113.9")).await,
        "127.0.0.1"
    );
    server.stop().await;

    let (server, _dir) = Server::start(Options {
        top_level_config: "trusted_proxies = [\"127.0.0.1\"]\n",
        ..Options::default()
    })
    .await;
    assert_eq!(address(&server, &[]).await, "127.0.0.1");
    assert_eq!(
        address(&server, &[("x-forwarded-for", "198.51.100.1, 203.0.113.9")]).await,
        "203.0.113.9",
        "the right-most address that is not a trusted proxy"
    );
    assert_eq!(
        address(&server, &[("x-forwarded-for", "203.0.113.9, 127.0.0.1")]).await,
        "203.0.113.9"
    );
    assert_eq!(
        address(
            &server,
            &[(
                "forwarded",
                "for=198.51.100.1, for=\"[2001:db8:cafe::17]:4711\";proto=https"
            )]
        )
        .await,
        "2001:db8:cafe::17"
    );
    assert_eq!(
        address(&server, &[("x-forwarded-for", "not-an-address")]).await,
        "127.0.0.1",
        "garbage leaves the proxy's own address"
    );
    assert_eq!(
        socket_address(&server, Some("203.0.113.9")).await,
        "203.0.113.9"
    );
    assert_eq!(socket_address(&server, None).await, "127.0.0.1");
    server.stop().await;
}
