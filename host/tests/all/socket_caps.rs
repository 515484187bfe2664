//! Caps on what objects send over WebSockets: each message, each event's
//! output, and the bytes waiting for a slow client.

use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use tokio_tungstenite::tungstenite::Message;

use crate::responses::raw_guest;
use crate::support::{Options, Server, Ws};

async fn start(extra_config: &'static str) -> (Server, tempfile::TempDir) {
    Server::start(Options {
        extra_classes: vec![("raw", raw_guest())],
        extra_config,
        ..Options::default()
    })
    .await
}

/// The next text message, within 10 s.
async fn next_text(ws: &mut Ws) -> String {
    loop {
        let frame = tokio::time::timeout(Duration::from_secs(10), ws.next())
            .await
            .expect("a message within 10 s")
            .expect("the socket is open")
            .expect("a frame");
        match frame {
            Message::Text(text) => return text.as_str().to_string(),
            Message::Ping(_) | Message::Pong(_) => {}
            other => panic!("unexpected frame {other:?}"),
        }
    }
}

#[tokio::test]
async fn an_object_cannot_send_a_message_over_max_message_bytes() {
    let (server, _dir) = start("[sockets]\nmax_message_bytes = 1000\n").await;
    let mut ws = server.ws("/objects/raw/room").await.expect("socket");
    ws.send(Message::text("send:2000")).await.expect("sent");
    let reply = next_text(&mut ws).await;
    assert!(
        reply.starts_with("refused:") && reply.contains("TooBig"),
        "{}",
        &reply[..reply.len().min(80)]
    );
    ws.send(Message::text("send:1000")).await.expect("sent");
    assert_eq!(next_text(&mut ws).await.len(), 1000);
    // A publish cannot be refused: it is dropped and reaches no one.
    ws.send(Message::text("publish:2000")).await.expect("sent");
    assert_eq!(next_text(&mut ws).await, "published:0");
    ws.send(Message::text("publish:10")).await.expect("sent");
    assert_eq!(next_text(&mut ws).await, "x".repeat(10));
    assert_eq!(next_text(&mut ws).await, "published:1");
    server.stop().await;
}

/// A client that reads nothing while 160 messages of 200 KB are published
/// to it: far fewer messages than `max_queued_messages`, but many more
/// bytes than `max_queued_bytes` (and the sockets' buffers), so it is
/// closed; the client that reads is not.
#[tokio::test]
async fn a_slow_client_is_closed_by_the_bytes_waiting_for_it() {
    let (server, _dir) = start(
        "[sockets]\nmax_message_bytes = 262144\nmax_queued_bytes = 2097152\nmax_queued_messages = 1024\n",
    )
    .await;
    let _slow = server.ws("/objects/raw/room").await.expect("socket");
    let reader = server.ws("/objects/raw/room").await.expect("socket");
    assert!(
        server
            .metric_becomes("podhost_sockets_open", Duration::from_secs(5), |n| n == 2)
            .await
    );
    // The reader takes each batch before asking for the next, so it is
    // never more than one event's messages behind.
    let mut reader = reader;
    let mut received = 0usize;
    for _ in 0..40 {
        reader
            .send(Message::text("flood:200000:4"))
            .await
            .expect("sent");
        for _ in 0..4 {
            received += next_text(&mut reader).await.len();
        }
    }
    assert!(
        server
            .metric_becomes("podhost_sockets_open", Duration::from_secs(20), |n| n == 1)
            .await,
        "the slow client is closed; log:\n{}",
        server.log()
    );
    let log = server.log();
    let slow_closes = log.matches("closing a socket too slow").count();
    assert_eq!(slow_closes, 1, "only the slow client is closed:\n{log}");
    assert_eq!(received, 160 * 200_000, "the reader got everything");
    server.stop().await;
}
