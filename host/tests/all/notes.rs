//! `examples/notes`: notes per signed-in user at `/me/notes`, synced to
//! every tab's WebSocket in acknowledged, batched, retried deliveries kept
//! in the object's SQL. Real server, real HTTP and WebSocket clients.

use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use reqwest::Method;
use serde_json::{Value, json};
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::Message;

use crate::accounts::{call, call_with_headers, error_code, login, signup, token};
use crate::support::{Options, Server, Ws, parse_json};

fn options() -> Options {
    Options {
        access: vec![("notes", "user")],
        ..Options::default()
    }
}

async fn user(server: &Server, email: &str) -> String {
    token(&signup(server, email).await).to_string()
}

/// Creates a note as `who`, from tab `client_id` with request `request_id`.
async fn create(
    server: &Server,
    who: &str,
    title: &str,
    client_id: &str,
    request_id: &str,
) -> Value {
    let (status, body, _) = call_with_headers(
        server,
        Method::POST,
        "/me/notes/notes",
        Some(who),
        Some(json!({ "title": title, "body": "text", "request_id": request_id })),
        &[("podhost-client-id", client_id)],
    )
    .await;
    assert_eq!(status, 201, "{body}");
    body["note"].clone()
}

async fn open(server: &Server, who: &str, client_id: &str) -> Ws {
    server
        .ws_as(&format!("/me/notes/ws?client_id={client_id}"), who)
        .await
        .expect("the socket opens")
}

/// The next text message, within `limit`.
async fn next_text_within(ws: &mut Ws, limit: Duration) -> Option<String> {
    let deadline = Instant::now() + limit;
    loop {
        let message = tokio::time::timeout_at(deadline, ws.next()).await.ok()?;
        match message
            .expect("the socket is open")
            .expect("a readable message")
        {
            Message::Text(text) => return Some(text.to_string()),
            Message::Close(frame) => panic!("the server closed the socket: {frame:?}"),
            _ => {}
        }
    }
}

/// The next text message as JSON, within 10 s.
async fn next_json(ws: &mut Ws) -> Value {
    let text = next_text_within(ws, Duration::from_secs(10))
        .await
        .expect("a message within 10 s");
    parse_json(&text)
}

async fn send(ws: &mut Ws, value: Value) {
    ws.send(Message::text(value.to_string()))
        .await
        .expect("sent");
}

async fn ack(ws: &mut Ws, seq: &Value) {
    send(ws, json!({ "type": "ack", "seq": seq })).await;
}

/// A new client id's first message is a `resync`; acknowledges it.
async fn settle(ws: &mut Ws) {
    let first = next_json(ws).await;
    assert_eq!(first["type"], "resync", "{first}");
    ack(ws, &first["seq"]).await;
}

/// Asserts nothing is queued for the socket: the host's `pong` to a
/// `ping` sent now is the next message.
async fn assert_quiet(ws: &mut Ws) {
    ws.send(Message::text("ping")).await.expect("sent");
    let next = next_text_within(ws, Duration::from_secs(10))
        .await
        .expect("a pong within 10 s");
    assert_eq!(next, "pong", "nothing else was waiting");
}

/// The next `sync` batch.
async fn next_sync(ws: &mut Ws) -> Value {
    let message = next_json(ws).await;
    assert_eq!(message["type"], "sync", "{message}");
    message
}

#[tokio::test]
async fn a_user_creates_lists_edits_and_deletes_notes_with_version_checks() {
    let (server, _dir) = Server::start(options()).await;
    let ann = user(&server, "ann@example.com").await;
    let bob = user(&server, "bob@example.com").await;

    let first = create(&server, &ann, "Groceries", "tab-a", "r1").await;
    assert_eq!(first["title"], "Groceries");
    assert_eq!(first["body"], "text");
    assert_eq!(first["version"], 1);
    assert!(first["id"].is_i64(), "{first}");
    assert!(first["created_at"].as_i64().unwrap_or(0) > 0, "{first}");
    assert_eq!(first["created_at"], first["updated_at"]);
    let second = create(&server, &ann, "Ideas", "tab-a", "r2").await;
    let path = format!("/me/notes/notes/{}", first["id"]);

    let (status, list) = call(&server, Method::GET, "/me/notes/notes", Some(&ann), None).await;
    assert_eq!(status, 200, "{list}");
    assert_eq!(list["notes"].as_array().map(Vec::len), Some(2), "{list}");
    let (_, theirs) = call(&server, Method::GET, "/me/notes/notes", Some(&bob), None).await;
    assert_eq!(
        theirs,
        json!({ "notes": [] }),
        "bob sees none of ann's notes"
    );

    let (status, body) = call(
        &server,
        Method::PUT,
        &path,
        Some(&ann),
        Some(json!({ "title": "Groceries", "body": "milk, eggs", "version": 1 })),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["note"]["version"], 2);
    assert_eq!(body["note"]["body"], "milk, eggs");
    let (_, list) = call(&server, Method::GET, "/me/notes/notes", Some(&ann), None).await;
    assert_eq!(
        list["notes"][0]["id"], first["id"],
        "the last edited comes first"
    );

    let (status, body) = call(
        &server,
        Method::PUT,
        &path,
        Some(&ann),
        Some(json!({ "title": "stale", "body": "edit", "version": 1 })),
    )
    .await;
    assert_eq!(status, 409, "{body}");
    assert_eq!(error_code(&body), "conflict");
    assert!(body["error"]["message"].is_string(), "{body}");
    assert_eq!(body["current"]["version"], 2, "{body}");
    assert_eq!(body["current"]["body"], "milk, eggs");
    let (_, body) = call(&server, Method::GET, &path, Some(&ann), None).await;
    assert_eq!(
        body["note"]["title"], "Groceries",
        "the stale edit wrote nothing"
    );

    let (status, body) = call(&server, Method::GET, &path, Some(&bob), None).await;
    assert_eq!((status, error_code(&body)), (404, "not_found"), "{body}");

    let (status, body) = call(&server, Method::DELETE, &path, Some(&ann), None).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body, json!({ "deleted": true, "id": first["id"] }));
    let (status, _) = call(&server, Method::DELETE, &path, Some(&ann), None).await;
    assert_eq!(status, 404);
    let (_, list) = call(&server, Method::GET, "/me/notes/notes", Some(&ann), None).await;
    assert_eq!(list["notes"][0]["id"], second["id"]);
    assert_eq!(list["notes"].as_array().map(Vec::len), Some(1));

    let (status, body) = call(&server, Method::GET, "/me/notes/notes", None, None).await;
    assert_eq!(status, 401, "{body}");
    server.stop().await;
}

#[tokio::test]
async fn bad_input_gets_a_clear_400_and_writes_nothing() {
    let (server, _dir) = Server::start(options()).await;
    let ann = user(&server, "ann@example.com").await;
    let note = create(&server, &ann, "Keep", "tab-a", "r1").await;
    let path = format!("/me/notes/notes/{}", note["id"]);

    let long_title = "t".repeat(1025);
    let long_body = "b".repeat((64 << 10) + 1);
    let cases = [
        (
            Method::POST,
            "/me/notes/notes",
            json!({ "body": "x" }),
            "title",
        ),
        (
            Method::POST,
            "/me/notes/notes",
            json!({ "title": 5, "body": "x" }),
            "title",
        ),
        (
            Method::POST,
            "/me/notes/notes",
            json!({ "title": long_title, "body": "x" }),
            "title",
        ),
        (
            Method::POST,
            "/me/notes/notes",
            json!({ "title": "x", "body": long_body }),
            "body",
        ),
        (
            Method::POST,
            "/me/notes/notes",
            json!({ "title": "x", "body": "x", "request_id": "a b" }),
            "request id",
        ),
        (
            Method::PUT,
            path.as_str(),
            json!({ "title": "x", "body": "x" }),
            "version",
        ),
        (
            Method::PUT,
            path.as_str(),
            json!({ "title": "x", "body": "x", "version": 0 }),
            "version",
        ),
        (
            Method::PUT,
            path.as_str(),
            json!({ "title": "x", "body": "x", "version": 1.5 }),
            "version",
        ),
        (
            Method::PUT,
            path.as_str(),
            json!({ "title": "x", "body": "x", "version": "1" }),
            "version",
        ),
    ];
    for (method, path, body, named) in cases {
        let (status, answer) = call(
            &server,
            method.clone(),
            path,
            Some(&ann),
            Some(body.clone()),
        )
        .await;
        assert_eq!(
            (status, error_code(&answer)),
            (400, "bad_request"),
            "{method} {body}: {answer}"
        );
        let message = answer["error"]["message"].as_str().unwrap_or("");
        assert!(message.contains(named), "{body}: {message} names {named}");
    }
    let (status, answer, _) = call_with_headers(
        &server,
        Method::POST,
        "/me/notes/notes",
        Some(&ann),
        Some(json!({ "title": "x", "body": "x" })),
        &[("podhost-client-id", "no/slashes")],
    )
    .await;
    assert_eq!(
        (status, error_code(&answer)),
        (400, "bad_request"),
        "{answer}"
    );
    let (status, _) = server.post("/me/notes/notes", "{not json").await;
    assert_eq!(status, 401, "no session, no parsing");
    let (status, answer) = call(
        &server,
        Method::PUT,
        "/me/notes/notes/abc",
        Some(&ann),
        Some(json!({})),
    )
    .await;
    assert_eq!(status, 404, "{answer}");

    let (_, list) = call(&server, Method::GET, "/me/notes/notes", Some(&ann), None).await;
    assert_eq!(list["notes"].as_array().map(Vec::len), Some(1), "{list}");
    assert_eq!(list["notes"][0]["version"], 1);

    let refused = server.ws_as("/me/notes/ws", &ann).await;
    assert!(refused.is_err(), "a socket needs a client id");
    let refused = server.ws_as("/me/notes/ws?client_id=a%20b", &ann).await;
    assert!(refused.is_err(), "a client id is a plain word");
    server.stop().await;
}

#[tokio::test]
async fn both_tabs_of_a_user_get_a_change_with_its_request_id_and_no_one_else_does() {
    let (server, _dir) = Server::start(options()).await;
    let ann = user(&server, "ann@example.com").await;
    let bob = user(&server, "bob@example.com").await;
    let mut tab_a = open(&server, &ann, "tab-a").await;
    let mut tab_b = open(&server, &ann, "tab-b").await;
    let mut bobs = open(&server, &bob, "tab-c").await;
    for ws in [&mut tab_a, &mut tab_b, &mut bobs] {
        settle(ws).await;
    }

    let note = create(&server, &ann, "Shared", "tab-a", "req-1").await;
    for ws in [&mut tab_a, &mut tab_b] {
        let batch = next_sync(ws).await;
        assert_eq!(
            batch["changes"],
            json!([{ "op": "upsert", "note": note, "client_id": "tab-a", "request_id": "req-1" }]),
            "{batch}"
        );
        ack(ws, &batch["seq"]).await;
    }
    assert_quiet(&mut bobs).await;

    let path = format!("/me/notes/notes/{}", note["id"]);
    let (status, _, _) = call_with_headers(
        &server,
        Method::DELETE,
        &path,
        Some(&ann),
        None,
        &[
            ("podhost-client-id", "tab-b"),
            ("podhost-request-id", "req-2"),
        ],
    )
    .await;
    assert_eq!(status, 200);
    for ws in [&mut tab_a, &mut tab_b] {
        let batch = next_sync(ws).await;
        assert_eq!(
            batch["changes"],
            json!([{ "op": "delete", "id": note["id"], "client_id": "tab-b", "request_id": "req-2" }]),
            "{batch}"
        );
        ack(ws, &batch["seq"]).await;
    }
    assert_quiet(&mut bobs).await;

    // Writes over the socket: answered with a reply, and synced like any.
    send(
        &mut bobs,
        json!({ "type": "put", "title": "Mine", "body": "b", "request_id": "s1" }),
    )
    .await;
    let reply = next_json(&mut bobs).await;
    assert_eq!(reply["type"], "reply", "{reply}");
    assert_eq!(reply["status"], 201);
    assert_eq!(reply["request_id"], "s1");
    let id = reply["note"]["id"].clone();
    let batch = next_sync(&mut bobs).await;
    assert_eq!(batch["changes"][0]["request_id"], "s1", "{batch}");
    ack(&mut bobs, &batch["seq"]).await;
    send(&mut bobs, json!({ "type": "put", "id": id, "title": "x", "body": "y", "version": 7, "request_id": "s2" })).await;
    let reply = next_json(&mut bobs).await;
    assert_eq!(reply["status"], 409, "{reply}");
    assert_eq!(reply["error"]["code"], "conflict");
    assert_eq!(reply["current"]["version"], 1);
    send(
        &mut bobs,
        json!({ "type": "put", "id": id, "title": "x", "body": "y", "request_id": "s3" }),
    )
    .await;
    let reply = next_json(&mut bobs).await;
    assert_eq!(
        (reply["type"].as_str(), reply["status"].as_u64()),
        (Some("reply"), Some(400)),
        "{reply}"
    );
    assert_eq!(reply["request_id"], "s3");
    assert_eq!(reply["error"]["code"], "bad_request");
    bobs.send(Message::text("{\"type\":\"dance\"}"))
        .await
        .expect("sent");
    let error = next_json(&mut bobs).await;
    assert_eq!(
        (error["type"].as_str(), error["error"]["code"].as_str()),
        (Some("error"), Some("bad_request")),
        "{error}"
    );
    assert_quiet(&mut tab_a).await;

    // A second socket with a client id in use replaces the first.
    let mut again = open(&server, &ann, "tab-a").await;
    let closed = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            match tab_a.next().await {
                Some(Ok(Message::Close(frame))) => return frame.map(|f| u16::from(f.code)),
                Some(Ok(_)) => {}
                _ => return None,
            }
        }
    })
    .await
    .expect("closed within 10 s");
    assert_eq!(closed, Some(4000));
    assert_quiet(&mut again).await;
    server.stop().await;
}

#[tokio::test]
async fn a_burst_of_edits_arrives_in_few_batches() {
    let (server, _dir) = Server::start(options()).await;
    let ann = user(&server, "ann@example.com").await;
    let mut tab = open(&server, &ann, "tab-a").await;
    settle(&mut tab).await;

    const EDITS: usize = 10;
    let started = Instant::now();
    let mut requests = tokio::task::JoinSet::new();
    for i in 0..EDITS {
        let request = server
            .client
            .post(server.url("/me/notes/notes"))
            .bearer_auth(&ann)
            .body(json!({ "title": format!("n{i}"), "body": "" }).to_string())
            .send();
        requests.spawn(async move { request.await.expect("sent").status().as_u16() });
    }
    while let Some(status) = requests.join_next().await {
        assert_eq!(status.expect("joined"), 201);
    }
    let elapsed = started.elapsed();

    let mut changes = 0;
    let mut batches = 0;
    while changes < EDITS {
        let batch = next_sync(&mut tab).await;
        changes += batch["changes"].as_array().map_or(0, Vec::len);
        batches += 1;
        ack(&mut tab, &batch["seq"]).await;
    }
    assert_eq!(changes, EDITS);
    // One batch per 150 ms window the burst touched.
    let windows = usize::try_from(elapsed.as_millis() / 150).unwrap_or(usize::MAX) + 2;
    assert!(
        batches <= windows,
        "{batches} batches for a burst of {elapsed:?}"
    );
    server.stop().await;
}

#[tokio::test]
async fn an_unacknowledged_batch_is_resent_until_acknowledged_also_after_a_reconnect() {
    let (server, _dir) = Server::start(options()).await;
    let ann = user(&server, "ann@example.com").await;
    let mut tab = open(&server, &ann, "tab-a").await;
    settle(&mut tab).await;

    create(&server, &ann, "One", "tab-a", "r1").await;
    let batch = next_sync(&mut tab).await;
    let again = next_sync(&mut tab).await;
    assert_eq!(again, batch, "resent as it was");
    ack(&mut tab, &batch["seq"]).await;
    // Past the next resend time: nothing comes.
    tokio::time::sleep(Duration::from_millis(2500)).await;
    assert_quiet(&mut tab).await;

    // Gone: what is written meanwhile waits for this client id.
    drop(tab);
    create(&server, &ann, "Two", "tab-b", "r2").await;
    tokio::time::sleep(Duration::from_millis(400)).await;
    create(&server, &ann, "Three", "tab-b", "r3").await;
    tokio::time::sleep(Duration::from_millis(400)).await;
    let mut tab = open(&server, &ann, "tab-a").await;
    let first = next_sync(&mut tab).await;
    let second = next_sync(&mut tab).await;
    assert_eq!(first["changes"][0]["note"]["title"], "Two", "{first}");
    assert_eq!(second["changes"][0]["note"]["title"], "Three", "{second}");
    assert!(second["seq"].as_i64() > first["seq"].as_i64());
    ack(&mut tab, &second["seq"]).await;
    tokio::time::sleep(Duration::from_millis(2500)).await;
    assert_quiet(&mut tab).await;
    server.stop().await;
}

#[tokio::test]
async fn resending_gives_up_after_five_times_and_the_client_resyncs_when_back() {
    let (server, _dir) = Server::start(options()).await;
    let ann = user(&server, "ann@example.com").await;
    let mut tab = open(&server, &ann, "tab-a").await;
    settle(&mut tab).await;

    create(&server, &ann, "Unheard", "tab-a", "r1").await;
    let first = next_sync(&mut tab).await;
    for resend in 1..=5 {
        let again = next_sync(&mut tab).await;
        assert_eq!(again["seq"], first["seq"], "resend {resend}");
    }
    tokio::time::sleep(Duration::from_millis(2500)).await;
    assert_quiet(&mut tab).await;
    // Still connected, it acknowledges a later batch: that covers what it
    // was sent, not the resync held for its next connection.
    create(&server, &ann, "Heard", "tab-b", "r2").await;
    let later = next_sync(&mut tab).await;
    assert!(later["seq"].as_i64() > first["seq"].as_i64(), "{later}");
    ack(&mut tab, &later["seq"]).await;
    assert_quiet(&mut tab).await;

    drop(tab);
    let mut tab = open(&server, &ann, "tab-a").await;
    let message = next_json(&mut tab).await;
    assert_eq!(message["type"], "resync", "what it missed: {message}");
    assert!(message["seq"].as_i64() > first["seq"].as_i64());
    ack(&mut tab, &message["seq"]).await;
    tokio::time::sleep(Duration::from_millis(2500)).await;
    assert_quiet(&mut tab).await;
    server.stop().await;
}

#[tokio::test]
async fn pending_batches_survive_hibernation_and_a_restart() {
    let hibernating = || Options {
        idle_timeout: "300ms",
        ..options()
    };
    let (server, dir) = Server::start(hibernating()).await;
    let ann = user(&server, "ann@example.com").await;
    let mut away = open(&server, &ann, "away").await;
    settle(&mut away).await;
    drop(away);
    let mut watcher = open(&server, &ann, "watcher").await;
    settle(&mut watcher).await;

    create(&server, &ann, "While away", "watcher", "r1").await;
    let seen = next_sync(&mut watcher).await;
    ack(&mut watcher, &seen["seq"]).await;
    let hibernated = server
        .metric_becomes("podhost_objects_active", Duration::from_secs(10), |n| {
            n == 0
        })
        .await;
    assert!(hibernated, "the object hibernated with a batch pending");

    let mut away = open(&server, &ann, "away").await;
    let pending = next_sync(&mut away).await;
    assert_eq!(pending, seen, "the same batch, from the database");
    drop(away);
    drop(watcher);

    server.stop().await;
    let server = Server::start_in(dir.path(), &hibernating()).await;
    let ann = login(&server, "ann@example.com").await;
    let mut away = open(&server, &ann, "away").await;
    let pending = next_sync(&mut away).await;
    assert_eq!(pending, seen, "still pending after a restart");
    ack(&mut away, &pending["seq"]).await;
    tokio::time::sleep(Duration::from_millis(2500)).await;
    assert_quiet(&mut away).await;
    server.stop().await;
}

#[tokio::test]
async fn a_retried_write_is_made_once_and_answered_as_the_first_time() {
    let (server, _dir) = Server::start(options()).await;
    let ann = user(&server, "ann@example.com").await;
    let first = create(&server, &ann, "Once", "tab-a", "same").await;
    let again = create(&server, &ann, "Once", "tab-a", "same").await;
    assert_eq!(again, first, "the first answer");
    let other = create(&server, &ann, "Once", "tab-b", "same").await;
    assert_ne!(
        other["id"], first["id"],
        "another tab's request is another write"
    );
    let (_, list) = call(&server, Method::GET, "/me/notes/notes", Some(&ann), None).await;
    assert_eq!(list["notes"].as_array().map(Vec::len), Some(2), "{list}");

    let path = format!("/me/notes/notes/{}", first["id"]);
    let edit = json!({ "title": "Once", "body": "edited", "version": 1, "request_id": "edit-1" });
    let headers = [("podhost-client-id", "tab-a")];
    let (status, updated, _) = call_with_headers(
        &server,
        Method::PUT,
        &path,
        Some(&ann),
        Some(edit.clone()),
        &headers,
    )
    .await;
    assert_eq!(status, 200, "{updated}");
    let (status, retried, _) = call_with_headers(
        &server,
        Method::PUT,
        &path,
        Some(&ann),
        Some(edit),
        &headers,
    )
    .await;
    assert_eq!(
        (status, &retried),
        (200, &updated),
        "not a conflict with itself"
    );
    let (_, body) = call(&server, Method::GET, &path, Some(&ann), None).await;
    assert_eq!(body["note"]["version"], 2, "written once");
    server.stop().await;
}

#[tokio::test]
async fn a_user_cannot_grow_their_notes_past_one_listable_response() {
    let (server, _dir) = Server::start(options()).await;
    let ann = user(&server, "ann@example.com").await;
    // Quotes take twice their size as JSON: 128 KiB per note in the list.
    let heavy = json!({ "title": "heavy", "body": "\"".repeat(64 << 10) });
    let mut made = Vec::new();
    let refusal = loop {
        let (status, body) = call(
            &server,
            Method::POST,
            "/me/notes/notes",
            Some(&ann),
            Some(heavy.clone()),
        )
        .await;
        if status != 201 {
            break (status, body);
        }
        made.push(body["note"]["id"].clone());
        assert!(made.len() < 200, "the total is capped");
    };
    assert_eq!(
        (refusal.0, error_code(&refusal.1)),
        (403, "notes_full"),
        "{}",
        refusal.1
    );
    assert!(
        made.len() >= 100,
        "{} notes of 128 KiB fit in 16 MiB",
        made.len()
    );

    let response = server
        .client
        .get(server.url("/me/notes/notes"))
        .bearer_auth(&ann)
        .send()
        .await
        .expect("listed");
    assert_eq!(response.status(), 200);
    let list = response.bytes().await.expect("a body");
    assert!(
        list.len() <= (16 << 20) + (64 << 10),
        "{} bytes",
        list.len()
    );

    let (status, _) = call(
        &server,
        Method::DELETE,
        &format!("/me/notes/notes/{}", made[0]),
        Some(&ann),
        None,
    )
    .await;
    assert_eq!(status, 200);
    let (status, body) = call(
        &server,
        Method::POST,
        "/me/notes/notes",
        Some(&ann),
        Some(heavy),
    )
    .await;
    assert_eq!(status, 201, "a delete makes room: {body}");
    server.stop().await;
}

#[tokio::test]
async fn a_client_away_through_too_many_batches_gets_one_resync() {
    let (server, _dir) = Server::start(options()).await;
    let ann = user(&server, "ann@example.com").await;
    let mut away = open(&server, &ann, "away").await;
    settle(&mut away).await;
    drop(away);

    // Each delete is a batch of its own: more than the 64 that may wait.
    let mut ids = Vec::new();
    for i in 0..70 {
        ids.push(
            create(&server, &ann, &format!("n{i}"), "tab-b", &format!("c{i}")).await["id"].clone(),
        );
    }
    for id in &ids {
        let (status, _) = call(
            &server,
            Method::DELETE,
            &format!("/me/notes/notes/{id}"),
            Some(&ann),
            None,
        )
        .await;
        assert_eq!(status, 200);
    }

    let mut away = open(&server, &ann, "away").await;
    let first = next_json(&mut away).await;
    assert_eq!(first["type"], "resync", "the pile became a resync: {first}");
    away.send(Message::text("ping")).await.expect("sent");
    let mut after = 0;
    loop {
        let text = next_text_within(&mut away, Duration::from_secs(10))
            .await
            .expect("a message");
        if text == "pong" {
            break;
        }
        after += 1;
    }
    assert!(after < 64, "{after} batches after the resync");
    server.stop().await;
}
