//! `examples/blog`: a blog per signed-in user at `/me/blog`, over real
//! HTTP, SSE and WebSockets.

use std::time::Duration;

use futures_util::StreamExt;
use reqwest::Method;
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;

use crate::accounts::{call, error_code, signup, token, user};
use crate::support::{EventStream, Options, Server, Ws, parse_json};

fn options() -> Options {
    Options {
        access: vec![("blog", "user")],
        ..Options::default()
    }
}

async fn create(server: &Server, who: &str, title: &str, content: &str) -> Value {
    let (status, body) = call(
        server,
        Method::POST,
        "/me/blog/posts",
        Some(who),
        Some(json!({ "title": title, "content": content })),
    )
    .await;
    assert_eq!(status, 201, "{body}");
    body["post"].clone()
}

fn post_path(post: &Value) -> String {
    format!("/me/blog/posts/{}", post["id"])
}

/// The next text message on a socket, as JSON, within 10 s.
async fn next_json(ws: &mut Ws) -> Value {
    loop {
        let message = tokio::time::timeout(Duration::from_secs(10), ws.next())
            .await
            .expect("a message within 10 s")
            .expect("the socket is open")
            .expect("a readable message");
        if let Message::Text(text) = message {
            return parse_json(&text);
        }
    }
}

/// The next change on an event stream: its event name and JSON data.
async fn next_change(events: &mut EventStream) -> (String, Value) {
    let event = events.next().await;
    (event.event, parse_json(&event.data))
}

#[tokio::test]
async fn a_user_writes_lists_edits_and_deletes_their_posts() {
    let (server, _dir) = Server::start(options()).await;
    let ann = user(&server, "ann@example.com").await;

    let first = create(&server, &ann, "Hello", "first words").await;
    assert_eq!(first["title"], "Hello");
    assert_eq!(first["content"], "first words");
    assert!(first["id"].is_i64(), "{first}");
    assert!(first["created_at"].as_i64().unwrap_or(0) > 0, "{first}");
    assert_eq!(first["created_at"], first["updated_at"]);
    let second = create(&server, &ann, "Again", "more words").await;

    let (status, list) = call(&server, Method::GET, "/me/blog/posts", Some(&ann), None).await;
    assert_eq!(status, 200, "{list}");
    let titles: Vec<&str> = list["posts"]
        .as_array()
        .expect("a list")
        .iter()
        .filter_map(|post| post["title"].as_str())
        .collect();
    assert_eq!(titles, ["Again", "Hello"], "newest first");

    let (status, one) = call(&server, Method::GET, &post_path(&first), Some(&ann), None).await;
    assert_eq!(status, 200);
    assert_eq!(one["post"], first);

    let (status, edited) = call(
        &server,
        Method::PUT,
        &post_path(&first),
        Some(&ann),
        Some(json!({ "title": "Hello, world" })),
    )
    .await;
    assert_eq!(status, 200, "{edited}");
    assert_eq!(edited["post"]["title"], "Hello, world");
    assert_eq!(
        edited["post"]["content"], "first words",
        "a PUT changes what it names"
    );
    assert!(edited["post"]["updated_at"].as_i64() >= first["updated_at"].as_i64());

    let (status, deleted) = call(
        &server,
        Method::DELETE,
        &post_path(&second),
        Some(&ann),
        None,
    )
    .await;
    assert_eq!(status, 200, "{deleted}");
    for method in [Method::GET, Method::DELETE] {
        let (status, body) = call(&server, method, &post_path(&second), Some(&ann), None).await;
        assert_eq!(status, 404, "{body}");
        assert_eq!(error_code(&body), "not_found");
    }
    let (status, _) = call(
        &server,
        Method::PUT,
        &post_path(&second),
        Some(&ann),
        Some(json!({ "title": "ghost" })),
    )
    .await;
    assert_eq!(status, 404);
    let (status, _) = call(&server, Method::GET, "/me/blog/posts/abc", Some(&ann), None).await;
    assert_eq!(status, 404);
    let (_, list) = call(&server, Method::GET, "/me/blog/posts", Some(&ann), None).await;
    assert_eq!(list["posts"].as_array().map(Vec::len), Some(1));
    assert_eq!(list["next"], Value::Null);

    // Pages, newest first, with a cursor.
    let third = create(&server, &ann, "Third", "words").await;
    let (status, page) = call(
        &server,
        Method::GET,
        "/me/blog/posts?limit=1",
        Some(&ann),
        None,
    )
    .await;
    assert_eq!(status, 200, "{page}");
    assert_eq!(page["posts"], json!([third]));
    let (_, rest) = call(
        &server,
        Method::GET,
        &format!("/me/blog/posts?limit=1&after={}", page["next"]),
        Some(&ann),
        None,
    )
    .await;
    assert_eq!(rest["posts"][0]["title"], "Hello, world");
    assert_eq!(rest["next"], Value::Null);
    let (status, _) = call(
        &server,
        Method::GET,
        "/me/blog/posts?limit=0",
        Some(&ann),
        None,
    )
    .await;
    assert_eq!(status, 400);

    // A known path with another method: 405 naming the allowed ones.
    let response = server
        .client
        .patch(server.url("/me/blog/posts"))
        .bearer_auth(&ann)
        .send()
        .await
        .expect("sent");
    assert_eq!(response.status(), 405);
    assert_eq!(response.headers()["allow"], "POST, GET");
    let body = parse_json(&response.text().await.expect("a body"));
    assert_eq!(error_code(&body), "method_not_allowed");
    let (status, body) = call(&server, Method::GET, "/me/blog/nope", Some(&ann), None).await;
    assert_eq!(status, 404);
    assert_eq!(error_code(&body), "not_found");
}

#[tokio::test]
async fn a_post_with_a_missing_or_non_string_field_is_a_400_naming_it() {
    let (server, _dir) = Server::start(options()).await;
    let ann = user(&server, "ann@example.com").await;
    for (body, field) in [
        (json!({ "content": "no title" }), "title"),
        (json!({ "title": "no content" }), "content"),
        (json!({ "title": 5, "content": "x" }), "title"),
        (json!({ "title": "x", "content": null }), "content"),
        (json!({ "title": "x", "content": ["a"] }), "content"),
    ] {
        let (status, answer) = call(
            &server,
            Method::POST,
            "/me/blog/posts",
            Some(&ann),
            Some(body.clone()),
        )
        .await;
        assert_eq!(status, 400, "{body} -> {answer}");
        assert_eq!(error_code(&answer), "bad_request", "{answer}");
        let message = answer["error"]["message"].as_str().unwrap_or("");
        assert!(message.contains(field), "{body} -> {message}");
    }
    let response = server
        .client
        .post(server.url("/me/blog/posts"))
        .bearer_auth(&ann)
        .body("not json")
        .send()
        .await
        .expect("sent");
    assert_eq!(response.status(), 400);

    let post = create(&server, &ann, "Kept", "as it was").await;
    let (status, answer) = call(
        &server,
        Method::PUT,
        &post_path(&post),
        Some(&ann),
        Some(json!({ "content": 7 })),
    )
    .await;
    assert_eq!(status, 400, "{answer}");
    assert!(
        answer["error"]["message"]
            .as_str()
            .unwrap_or("")
            .contains("content")
    );
    let (_, list) = call(&server, Method::GET, "/me/blog/posts", Some(&ann), None).await;
    assert_eq!(
        list["posts"],
        json!([post]),
        "no bad request wrote anything"
    );
}

#[tokio::test]
async fn a_user_keeps_one_json_document_replaced_on_each_post() {
    let (server, _dir) = Server::start(options()).await;
    let ann = user(&server, "ann@example.com").await;
    let (status, data) = call(&server, Method::GET, "/me/blog/data", Some(&ann), None).await;
    assert_eq!(status, 200);
    assert_eq!(data, json!({}), "empty before the first POST");

    let document = json!({ "theme": "dark", "tags": ["rust", "wasm"], "n": 1 });
    let (status, saved) = call(
        &server,
        Method::POST,
        "/me/blog/data",
        Some(&ann),
        Some(document.clone()),
    )
    .await;
    assert_eq!(status, 200, "{saved}");
    let (_, data) = call(&server, Method::GET, "/me/blog/data", Some(&ann), None).await;
    assert_eq!(data, document);

    let replacement = json!({ "theme": "light" });
    call(
        &server,
        Method::POST,
        "/me/blog/data",
        Some(&ann),
        Some(replacement.clone()),
    )
    .await;
    let (_, data) = call(&server, Method::GET, "/me/blog/data", Some(&ann), None).await;
    assert_eq!(data, replacement, "replaced whole, not merged");

    let response = server
        .client
        .post(server.url("/me/blog/data"))
        .bearer_auth(&ann)
        .body("{broken")
        .send()
        .await
        .expect("sent");
    assert_eq!(response.status(), 400);
    let (_, data) = call(&server, Method::GET, "/me/blog/data", Some(&ann), None).await;
    assert_eq!(data, replacement);
}

#[tokio::test]
async fn users_never_see_or_touch_each_others_posts_and_data() {
    let (server, _dir) = Server::start(options()).await;
    let ann = user(&server, "ann@example.com").await;
    let bob = user(&server, "bob@example.com").await;
    let post = create(&server, &ann, "Ann's", "private").await;
    call(
        &server,
        Method::POST,
        "/me/blog/data",
        Some(&ann),
        Some(json!({ "secret": 1 })),
    )
    .await;

    let (_, list) = call(&server, Method::GET, "/me/blog/posts", Some(&bob), None).await;
    assert_eq!(list["posts"], json!([]));
    for method in [Method::GET, Method::DELETE] {
        let (status, _) = call(&server, method, &post_path(&post), Some(&bob), None).await;
        assert_eq!(status, 404);
    }
    let (status, _) = call(
        &server,
        Method::PUT,
        &post_path(&post),
        Some(&bob),
        Some(json!({ "title": "mine now" })),
    )
    .await;
    assert_eq!(status, 404);
    let (_, data) = call(&server, Method::GET, "/me/blog/data", Some(&bob), None).await;
    assert_eq!(data, json!({}));

    // Ann's post is as she left it.
    let (status, one) = call(&server, Method::GET, &post_path(&post), Some(&ann), None).await;
    assert_eq!(status, 200);
    assert_eq!(one["post"], post);

    // Nobody reaches a blog without signing in, or by its name.
    let (status, _) = call(&server, Method::GET, "/me/blog/posts", None, None).await;
    assert_eq!(status, 401);
    let (status, _) = server.get("/objects/blog/anyone/posts").await;
    assert_eq!(status, 403);
}

#[tokio::test]
async fn post_changes_reach_their_owners_event_stream_and_socket_only() {
    let (server, _dir) = Server::start(options()).await;
    let ann = user(&server, "ann@example.com").await;
    let bob = user(&server, "bob@example.com").await;
    let mut ann_events = server.events_as("/me/blog/_events", &ann).await;
    let mut bob_events = server.events_as("/me/blog/_events", &bob).await;
    let mut ann_ws = server
        .ws_as("/me/blog/ws", &ann)
        .await
        .expect("ann's socket");
    let mut bob_ws = server
        .ws_as("/me/blog/ws", &bob)
        .await
        .expect("bob's socket");

    let post = create(&server, &ann, "Live", "v1").await;
    call(
        &server,
        Method::PUT,
        &post_path(&post),
        Some(&ann),
        Some(json!({ "content": "v2" })),
    )
    .await;
    call(&server, Method::DELETE, &post_path(&post), Some(&ann), None).await;

    for (op, content) in [("create", "v1"), ("update", "v2"), ("delete", "v2")] {
        let (name, change) = next_change(&mut ann_events).await;
        assert_eq!(name, "table:posts");
        assert_eq!(change["table"], "posts");
        assert_eq!(change["op"], op, "{change}");
        assert_eq!(change["row"]["id"], post["id"]);
        assert_eq!(change["row"]["content"], content);
        let change = next_json(&mut ann_ws).await;
        assert_eq!(change["op"], op, "{change}");
        assert_eq!(change["row"]["id"], post["id"]);
    }

    // Bob's stream and socket got none of that: the first change they
    // see is Bob's own.
    let own = create(&server, &bob, "Bob's", "mine").await;
    let (name, change) = next_change(&mut bob_events).await;
    assert_eq!(name, "table:posts");
    assert_eq!(change["row"], own, "{change}");
    assert_eq!(next_json(&mut bob_ws).await["row"], own);

    // A rejected write announces nothing: Ann's next change is her next post.
    call(
        &server,
        Method::POST,
        "/me/blog/posts",
        Some(&ann),
        Some(json!({ "title": 1 })),
    )
    .await;
    let next = create(&server, &ann, "Next", "after a 400").await;
    assert_eq!(next_change(&mut ann_events).await.1["row"], next);
    assert_eq!(next_json(&mut ann_ws).await["row"], next);

    // A post too large for an event is announced by id, with `truncated`.
    let long = "x".repeat(100 * 1024);
    let big = create(&server, &ann, "Long", &long).await;
    let (_, change) = next_change(&mut ann_events).await;
    assert_eq!(change["op"], "create");
    assert_eq!(change["truncated"], true, "{}", change["row"]);
    assert_eq!(change["row"]["id"], big["id"]);
    assert_eq!(next_json(&mut ann_ws).await["row"]["id"], big["id"]);

    // Sockets are for signed-in users only.
    assert!(server.ws("/me/blog/ws").await.is_err());
}

#[tokio::test]
async fn posts_and_data_survive_a_restart() {
    let dir = tempfile::tempdir().expect("temp dir");
    let options = options();
    let server = Server::start_in(dir.path(), &options).await;
    let ann = signup(&server, "ann@example.com").await;
    let ann = token(&ann).to_string();
    let post = create(&server, &ann, "Durable", "kept").await;
    call(
        &server,
        Method::POST,
        "/me/blog/data",
        Some(&ann),
        Some(json!({ "kept": true })),
    )
    .await;
    server.stop().await;

    let server = Server::start_in(dir.path(), &options).await;
    let (status, list) = call(&server, Method::GET, "/me/blog/posts", Some(&ann), None).await;
    assert_eq!(status, 200, "{list}");
    assert_eq!(list["posts"], json!([post]));
    let (_, data) = call(&server, Method::GET, "/me/blog/data", Some(&ann), None).await;
    assert_eq!(data, json!({ "kept": true }));
    // New posts go on after the old ones.
    let newer = create(&server, &ann, "After", "the restart").await;
    assert!(newer["id"].as_i64() > post["id"].as_i64());
    server.stop().await;
}
