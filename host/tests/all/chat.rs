//! `examples/chat` over real WebSockets: history, broadcast, presence from
//! attachments, hibernation with open sockets, auto-response, limits, a
//! thousand members and a slow one.

use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;

use crate::support::{Options, Server, Ws};

const WAIT: Duration = Duration::from_secs(10);

async fn join(server: &Server, room: &str, name: &str) -> Ws {
    server
        .ws(&format!("/objects/chat/{room}/ws?name={name}"))
        .await
        .unwrap_or_else(|error| panic!("{name} joins {room}: {error}"))
}

/// The next text message, skipping other frames.
async fn next_text(ws: &mut Ws) -> String {
    loop {
        match tokio::time::timeout(WAIT, ws.next())
            .await
            .expect("a frame")
        {
            Some(Ok(Message::Text(text))) => return text.to_string(),
            Some(Ok(_)) => continue,
            other => panic!("expected a message, got {other:?}"),
        }
    }
}

/// The next text message as JSON.
async fn next_json(ws: &mut Ws) -> Value {
    serde_json::from_str(&next_text(ws).await).expect("JSON")
}

/// Reads until a message of `kind` arrives, and returns it.
async fn next_of(ws: &mut Ws, kind: &str) -> Value {
    loop {
        let message = next_json(ws).await;
        if message["type"] == kind {
            return message;
        }
    }
}

/// The close frame's code, skipping what comes before it.
async fn next_close(ws: &mut Ws) -> Option<CloseCode> {
    loop {
        match tokio::time::timeout(WAIT, ws.next())
            .await
            .expect("a frame")
        {
            Some(Ok(Message::Close(frame))) => return frame.map(|frame| frame.code),
            Some(Ok(_)) => continue,
            other => panic!("expected a close frame, got {other:?}"),
        }
    }
}

async fn say(ws: &mut Ws, text: &str, client_id: &str) {
    ws.send(Message::text(
        json!({ "text": text, "client_id": client_id }).to_string(),
    ))
    .await
    .expect("sent");
}

async fn presence(server: &Server, room: &str) -> Value {
    let (status, names) = server
        .get_json(&format!("/objects/chat/{room}/presence"))
        .await;
    assert_eq!(status, 200, "{names}");
    names
}

#[tokio::test(flavor = "multi_thread")]
async fn members_get_history_broadcasts_and_presence() {
    let (server, _dir) = Server::start(Options::default()).await;
    let mut ada = join(&server, "lobby", "ada").await;
    assert_eq!(
        next_json(&mut ada).await,
        json!({ "type": "history", "messages": [] })
    );
    assert_eq!(
        next_json(&mut ada).await,
        json!({ "type": "join", "name": "ada" })
    );
    say(&mut ada, "hello", "c1").await;
    let echo = next_of(&mut ada, "message").await;
    assert_eq!(
        (&echo["name"], &echo["text"], &echo["client_id"]),
        (&json!("ada"), &json!("hello"), &json!("c1")),
        "the echo acknowledges the message: {echo}"
    );

    let mut bob = join(&server, "lobby", "bob").await;
    let history = next_of(&mut bob, "history").await;
    assert_eq!(history["messages"][0]["text"], "hello", "{history}");
    assert_eq!(next_of(&mut ada, "join").await["name"], "bob");
    assert_eq!(presence(&server, "lobby").await, json!(["ada", "bob"]));

    say(&mut bob, "hi ada", "c2").await;
    assert_eq!(next_of(&mut ada, "message").await["text"], "hi ada");
    assert_eq!(next_of(&mut bob, "message").await["text"], "hi ada");

    bob.close(None).await.expect("closed");
    assert!(
        next_close(&mut bob).await.is_none(),
        "the server answers the close (a clean close, not 1006)"
    );
    assert_eq!(
        next_of(&mut ada, "leave").await,
        json!({ "type": "leave", "name": "bob" })
    );
    assert_eq!(presence(&server, "lobby").await, json!(["ada"]));
    let (_, stored) = server
        .get_json("/objects/chat/lobby/messages?after=0")
        .await;
    assert_eq!(stored.as_array().map(Vec::len), Some(2), "{stored}");

    let mut other = join(&server, "kitchen", "cy").await;
    assert_eq!(next_of(&mut other, "history").await["messages"], json!([]));
    assert_eq!(presence(&server, "kitchen").await, json!(["cy"]));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_room_hibernates_with_open_sockets_and_wakes_on_a_message() {
    let (server, _dir) = Server::start(Options {
        idle_timeout: "300ms",
        ..Options::default()
    })
    .await;
    let mut ada = join(&server, "quiet", "ada").await;
    next_of(&mut ada, "join").await;
    assert!(
        server
            .metric_becomes("podhost_objects_active", WAIT, |n| n == 0)
            .await,
        "the room hibernated although its socket is open"
    );
    let activations = server.metric("podhost_activations_total").await;

    ada.send(Message::text("ping")).await.expect("sent");
    assert_eq!(
        tokio::time::timeout(WAIT, ada.next())
            .await
            .ok()
            .flatten()
            .map(Result::ok),
        Some(Some(Message::text("pong"))),
        "the host answers the auto-response"
    );
    assert_eq!(
        server.metric("podhost_activations_total").await,
        activations,
        "without waking the room"
    );
    assert_eq!(
        server.metric("podhost_socket_auto_responses_total").await,
        1
    );
    assert_eq!(server.metric("podhost_sockets_open").await, 1);

    say(&mut ada, "anyone?", "c1").await;
    let echo = next_of(&mut ada, "message").await;
    assert_eq!(echo["name"], "ada", "the attachment survived: {echo}");
    assert!(server.metric("podhost_activations_total").await > activations);
}

#[tokio::test(flavor = "multi_thread")]
async fn refused_sockets_and_oversized_messages() {
    let (server, _dir) = Server::start(Options {
        extra_config: "[sockets]\nmax_message_bytes = 1024\n",
        ..Options::default()
    })
    .await;
    let refused = |result: Result<Ws, tokio_tungstenite::tungstenite::Error>| match result {
        Err(tokio_tungstenite::tungstenite::Error::Http(response)) => response.status().as_u16(),
        Err(other) => panic!("refused with an HTTP status, not {other}"),
        Ok(_) => panic!("the socket was accepted"),
    };
    assert_eq!(refused(server.ws("/objects/chat/lobby/ws").await), 400);
    assert_eq!(
        refused(server.ws("/objects/chat/lobby/elsewhere?name=a").await),
        404
    );
    assert_eq!(refused(server.ws("/objects/counter/c/ws").await), 404);
    assert_eq!(refused(server.ws("/objects/nope/c/ws").await), 404);

    let mut ada = join(&server, "lobby", "ada").await;
    next_of(&mut ada, "join").await;
    ada.send(Message::text("x".repeat(2000)))
        .await
        .expect("sent");
    let close = next_close(&mut ada).await;
    assert_eq!(close, Some(CloseCode::Size), "closed with 1009");
    assert!(
        crate::support::eventually(WAIT, || async {
            presence(&server, "lobby").await == json!([])
        })
        .await,
        "the room was told"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn shutdown_closes_sockets_with_going_away() {
    let (server, _dir) = Server::start(Options::default()).await;
    let mut ada = join(&server, "lobby", "ada").await;
    next_of(&mut ada, "join").await;
    server.stop().await;
    let close = next_close(&mut ada).await;
    assert_eq!(close, Some(CloseCode::Away));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_thousand_members_all_get_a_broadcast() {
    const MEMBERS: usize = 1000;
    let (server, _dir) = Server::start(Options {
        durability: "normal",
        // Every member connects from 127.0.0.1.
        extra_config: "[server]\nmax_connections_per_address = 2000\n",
        ..Options::default()
    })
    .await;
    let (done_in, mut done) = tokio::sync::mpsc::channel(MEMBERS);
    let mut members = Vec::new();
    for i in 0..MEMBERS {
        let mut ws = join(&server, "stadium", &format!("m{i}")).await;
        let done_in = done_in.clone();
        // Each member reads everything (joins of later members included)
        // until the broadcast arrives.
        members.push(tokio::spawn(async move {
            let message = next_of(&mut ws, "message").await;
            let _ = done_in.send(message["text"] == "goal").await;
            ws
        }));
    }
    let mut speaker = join(&server, "stadium", "speaker").await;
    let started = std::time::Instant::now();
    say(&mut speaker, "goal", "g").await;
    let mut received = 0;
    while received < MEMBERS {
        let got = tokio::time::timeout(Duration::from_secs(60), done.recv())
            .await
            .expect("every member within a minute")
            .expect("a member's report");
        assert!(got, "the broadcast, not another message");
        received += 1;
    }
    println!(
        "{MEMBERS} members received one broadcast in {:?}",
        started.elapsed()
    );
    let mut open = Vec::new();
    for member in members {
        open.push(member.await.expect("a member's socket"));
    }
    assert_eq!(
        presence(&server, "stadium").await.as_array().map(Vec::len),
        Some(MEMBERS + 1)
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_slow_member_is_dropped_without_stalling_the_others() {
    let (server, _dir) = Server::start(Options {
        durability: "normal",
        extra_config: "[sockets]\nmax_queued_messages = 8\nping_interval = \"1s\"\n",
        ..Options::default()
    })
    .await;
    // Joins, then never reads.
    let slow = join(&server, "busy", "slow").await;
    let mut fast = join(&server, "busy", "fast").await;
    next_of(&mut fast, "join").await;
    let text = "x".repeat(4000);
    for i in 0..600 {
        say(&mut fast, &text, &i.to_string()).await;
        let echo = next_of(&mut fast, "message").await;
        assert_eq!(echo["client_id"], i.to_string());
    }
    // Keep reading (and answering pings) while the slow one is dropped.
    let reading = tokio::spawn(async move { while fast.next().await.is_some() {} });
    assert!(
        crate::support::eventually(WAIT, || async {
            presence(&server, "busy").await == json!(["fast"])
        })
        .await,
        "the slow member was dropped: {}",
        presence(&server, "busy").await
    );
    drop(slow);
    reading.abort();
}

#[tokio::test(flavor = "multi_thread")]
async fn messages_of_a_failed_event_never_leave() {
    let (server, _dir) = Server::start(Options::default()).await;
    let mut ws = server.ws("/objects/probe/gate/ws").await.expect("accepted");
    for text in ["publish-then-fail:A", "send-then-trap:B", "publish:C"] {
        ws.send(Message::text(text)).await.expect("sent");
    }
    assert_eq!(
        next_text(&mut ws).await,
        "C",
        "A and B belonged to events that were rolled back"
    );
    ws.send(Message::text("publish:D")).await.expect("sent");
    assert_eq!(
        next_text(&mut ws).await,
        "D",
        "the socket outlives the trap"
    );
}

/// The next SSE event's message text, checking its id.
async fn next_logged(events: &mut crate::support::EventStream, id: u64) -> String {
    let event = events.next().await;
    assert_eq!(
        (event.id, event.event.as_str()),
        (Some(id), "message"),
        "{event:?}"
    );
    let data: Value = serde_json::from_str(&event.data).expect("JSON data");
    data["text"].as_str().expect("a text").to_string()
}

#[tokio::test(flavor = "multi_thread")]
async fn an_sse_client_resumes_with_last_event_id_and_misses_nothing() {
    let (server, _dir) = Server::start(Options {
        idle_timeout: "300ms",
        extra_config: "[events]\nretention = 4\n",
        ..Options::default()
    })
    .await;
    let events = "/objects/chat/news/_events";
    let mut follower = server.events(events, None).await;
    let mut ada = join(&server, "news", "ada").await;
    for (i, text) in ["m1", "m2"].into_iter().enumerate() {
        say(&mut ada, text, "").await;
        next_of(&mut ada, "message").await;
        assert_eq!(next_logged(&mut follower, i as u64 + 1).await, text);
    }
    drop(follower);

    for text in ["m3", "m4", "m5"] {
        say(&mut ada, text, "").await;
        next_of(&mut ada, "message").await;
    }
    let mut follower = server.events(events, Some(2)).await;
    for (id, text) in [(3, "m3"), (4, "m4"), (5, "m5")] {
        assert_eq!(
            next_logged(&mut follower, id).await,
            text,
            "missed, in order"
        );
    }
    assert!(
        server
            .metric_becomes("podhost_objects_active", WAIT, |n| n == 0)
            .await,
        "the room hibernates with a follower connected"
    );
    say(&mut ada, "m6", "").await;
    assert_eq!(next_logged(&mut follower, 6).await, "m6", "then live ones");

    // The log keeps 4 events (3..=6): a client that saw only 1 is told.
    let mut late = server.events(events, Some(1)).await;
    assert_eq!(late.next().await.event, "podhost-gap");
    assert_eq!(next_logged(&mut late, 3).await, "m3");

    let (status, _) = server
        .client
        .get(server.url(events))
        .header("last-event-id", "yesterday")
        .send()
        .await
        .map(|r| (r.status().as_u16(), ()))
        .expect("answered");
    assert_eq!(status, 400);
}

#[tokio::test(flavor = "multi_thread")]
async fn sockets_past_the_limit_are_refused() {
    let (server, _dir) = Server::start(Options {
        extra_config: "[sockets]\nmax_per_object = 2\n",
        ..Options::default()
    })
    .await;
    let _ada = join(&server, "small", "ada").await;
    let bob = join(&server, "small", "bob").await;
    match server.ws("/objects/chat/small/ws?name=cy").await {
        Err(tokio_tungstenite::tungstenite::Error::Http(response)) => {
            assert_eq!(response.status().as_u16(), 503);
        }
        other => panic!("a third socket is refused, not {:?}", other.map(drop)),
    }
    let _other_room = join(&server, "big", "cy").await;
    drop(bob);
    assert!(
        crate::support::eventually(WAIT, || async {
            server.ws("/objects/chat/small/ws?name=cy").await.is_ok()
        })
        .await,
        "room again once one leaves"
    );
}

/// Messages far larger than one read from the connection (the host reads
/// up to 16 KiB at a time and hands tungstenite 256 bytes per call): sent
/// back to back, each arrives whole and in order.
#[tokio::test(flavor = "multi_thread")]
async fn large_messages_arrive_whole_and_in_order() {
    let (server, _dir) = Server::start(Options::default()).await;
    let mut ws = server
        .ws("/objects/probe/large/ws")
        .await
        .expect("accepted");
    let texts: Vec<String> = (0..3)
        .map(|n| {
            (0..200_000)
                .map(|i| char::from(b'a' + ((i * 7 + n) % 26) as u8))
                .collect()
        })
        .collect();
    for text in &texts {
        ws.send(Message::text(format!("publish:{text}")))
            .await
            .expect("sent");
    }
    for text in &texts {
        assert!(
            next_text(&mut ws).await == *text,
            "a message came back changed"
        );
    }
}

/// A request with the upgrade headers but not a WebSocket handshake the
/// host can answer is refused, and the connection is not upgraded.
#[tokio::test(flavor = "multi_thread")]
async fn a_handshake_without_version_13_or_a_key_is_refused() {
    let (server, _dir) = Server::start(Options::default()).await;
    let address = server.url("").trim_start_matches("http://").to_string();
    let cases = [
        (
            "Sec-WebSocket-Version: 8\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n",
            "HTTP/1.1 400",
        ),
        ("Sec-WebSocket-Version: 13\r\n", "HTTP/1.1 400"),
    ];
    for (headers, status) in cases {
        let request = format!(
            "GET /objects/probe/refused/ws HTTP/1.1\r\nHost: {address}\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n{headers}\r\n"
        );
        let response = server.raw_exchange_until(request.as_bytes(), "\r\n").await;
        assert!(response.starts_with(status), "{headers}: {response}");
    }
    let mut ws = server
        .ws("/objects/probe/refused/ws")
        .await
        .expect("a real handshake still works");
    ws.send(Message::text("publish:ok")).await.expect("sent");
    assert_eq!(next_text(&mut ws).await, "ok");
}
