//! Operating podhost (issue 22, items 4-6) over real HTTP: each object's
//! own log, metrics by class, and the operator's users API.

use std::time::{Duration, Instant};

use futures_util::StreamExt;
use reqwest::Method;
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

use crate::accounts::{ADMIN, PASSWORD, call, error_code, signup, token, user_id};
use crate::support::{Options, Server, eventually};

fn admin_options(extra_config: &'static str) -> Options {
    Options {
        admin_token: Some(ADMIN),
        extra_config,
        ..Options::default()
    }
}

async fn logs(server: &Server, object: &str) -> Vec<Value> {
    let (status, body) = call(
        server,
        Method::GET,
        &format!("/admin/objects/{object}/logs"),
        Some(ADMIN),
        None,
    )
    .await;
    assert_eq!(status, 200, "{body}");
    body["records"].as_array().expect("records").clone()
}

fn messages<'a>(records: &'a [Value], source: &str) -> Vec<&'a str> {
    records
        .iter()
        .filter(|r| r["source"] == source)
        .filter_map(|r| r["message"].as_str())
        .collect()
}

#[tokio::test]
async fn an_objects_log_holds_its_prints_and_traps_and_stays_bounded() {
    let (server, _dir) = Server::start(admin_options("[logs]\nring_records = 20\n")).await;
    let (status, _) = server.post("/objects/probe/noisy/print", "hello\n").await;
    assert_eq!(status, 200);
    let (status, _) = server
        .post("/objects/probe/noisy/print?stream=stderr", "careful\n")
        .await;
    assert_eq!(status, 200);
    let (status, _) = server
        .post("/objects/probe/noisy/write-then-trap", "x")
        .await;
    assert_eq!(status, 500);

    let complete = eventually(Duration::from_secs(5), || async {
        messages(&logs(&server, "probe/noisy").await, "host")
            .iter()
            .any(|m| m.contains("event trapped"))
    })
    .await;
    let records = logs(&server, "probe/noisy").await;
    assert!(complete, "{records:#?}");
    for record in &records {
        for field in ["seq", "time", "level", "source", "message"] {
            assert!(!record[field].is_null(), "{field} in {record}");
        }
    }
    let guest = messages(&records, "guest");
    assert!(guest.contains(&"hello"), "{guest:?}");
    assert!(guest.contains(&"careful"), "{guest:?}");
    let panics: Vec<_> = guest.iter().filter(|m| m.contains("panicked")).collect();
    assert_eq!(panics.len(), 1, "a panic is one record: {guest:#?}");
    assert!(panics[0].contains("trapping on purpose"), "{panics:?}");
    let host = messages(&records, "host");
    assert!(host.iter().any(|m| m.starts_with("activated")), "{host:?}");
    let trap = host
        .iter()
        .find(|m| m.contains("event trapped"))
        .expect("the trap");
    assert!(
        trap.contains("wasm backtrace"),
        "with its backtrace: {trap}"
    );

    // Bounded: 20 records at most, the newest kept.
    server
        .post("/objects/probe/noisy/print?repeat=100", "again\n")
        .await;
    let records = logs(&server, "probe/noisy").await;
    assert_eq!(records.len(), 20, "{records:#?}");
    assert_eq!(records[19]["message"], "again");

    // Followed as server-sent events: what is there, then what comes.
    let mut stream = server
        .events_as("/admin/objects/probe/noisy/logs?follow=true", ADMIN)
        .await;
    let first = stream.next().await;
    assert_eq!(first.event, "log");
    server
        .post("/objects/probe/noisy/print", "live one\n")
        .await;
    let found = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            let event = stream.next().await;
            if event.data.contains("live one") {
                return event;
            }
        }
    })
    .await
    .expect("the live record within 10 s");
    let record: Value = serde_json::from_str(&found.data).expect("JSON");
    assert_eq!(record["source"], "guest");
    assert_eq!(record["stream"], "stdout");

    // Only the operator (or the class's tenant) reads it.
    let (status, _) = server.get("/admin/objects/probe/noisy/logs").await;
    assert_eq!(status, 401);
    server.stop().await;
}

#[tokio::test]
async fn a_flooding_guest_is_rate_limited_and_the_host_stays_responsive() {
    let (server, _dir) = Server::start(admin_options("")).await;
    let line = format!("{}\n", "x".repeat(999));
    let flood = async {
        // 20 MB in 20,000 lines, in one event.
        server
            .post("/objects/probe/flood/print?repeat=20000", line.clone())
            .await
    };
    let others = async {
        tokio::time::sleep(Duration::from_millis(50)).await;
        let mut slowest = Duration::ZERO;
        for i in 0..10 {
            let started = Instant::now();
            let (status, _) = server
                .post(&format!("/objects/probe/calm-{i}/write"), "ok")
                .await;
            assert_eq!(status, 200);
            slowest = slowest.max(started.elapsed());
        }
        slowest
    };
    let ((status, _), slowest) = tokio::join!(flood, others);
    assert_eq!(status, 200);
    assert!(
        slowest < Duration::from_secs(2),
        "other objects answer while one floods: {slowest:?}"
    );
    let dropped = server.metric("podhost_guest_log_dropped_bytes_total").await;
    assert!(
        dropped > 15_000_000,
        "most of the flood is dropped: {dropped}"
    );
    let records = logs(&server, "probe/flood").await;
    let bytes: usize = records
        .iter()
        .filter_map(|r| r["message"].as_str())
        .map(str::len)
        .sum();
    assert!(bytes <= 64 << 10, "the ring holds at most 64 KiB: {bytes}");
    let noticed = eventually(Duration::from_secs(5), || async {
        messages(&logs(&server, "probe/flood").await, "host")
            .iter()
            .any(|m| m.contains("log rate was dropped"))
    })
    .await;
    assert!(noticed, "the object's log says what was dropped");
    server.stop().await;
}

#[tokio::test]
async fn metrics_by_class_move() {
    let (server, _dir) = Server::start(admin_options("")).await;
    let metric = |name: &str| format!("{name}{{class=\"probe\"}}");
    for _ in 0..3 {
        let (status, _) = server.post("/objects/probe/m/write", "a").await;
        assert_eq!(status, 200);
    }
    let (status, _) = server.post("/objects/probe/m/write-then-fail", "b").await;
    assert_eq!(status, 409);
    assert!(
        server
            .metric(&metric("podhost_event_duration_seconds_count"))
            .await
            >= 4
    );
    assert!(
        server
            .metric(&metric("podhost_commit_duration_seconds_count"))
            .await
            >= 4
    );
    assert!(
        server
            .metric(&metric("podhost_commit_batch_events_count"))
            .await
            >= 1
    );
    assert_eq!(
        server
            .metric(&metric("podhost_activation_duration_seconds_count"))
            .await,
        1
    );
    let responses =
        |status: &str| format!("podhost_responses_total{{class=\"probe\",status=\"{status}\"}}");
    assert_eq!(server.metric(&responses("2xx")).await, 3);
    assert_eq!(server.metric(&responses("4xx")).await, 1);
    assert_eq!(server.metric(&responses("5xx")).await, 0);
    // Another class has series of its own.
    server.post("/objects/counter/c", "").await;
    assert!(
        server
            .metric("podhost_event_duration_seconds_count{class=\"counter\"}")
            .await
            >= 1
    );
    assert_eq!(
        server
            .metric(&metric("podhost_event_duration_seconds_count"))
            .await,
        4
    );
    // An alarm's lag.
    let (status, _) = server.post("/objects/probe/m/alarm/set?in_ms=10", "").await;
    assert_eq!(status, 200);
    let fired = server
        .metric_becomes(
            &metric("podhost_alarm_lag_seconds_count"),
            Duration::from_secs(10),
            |count| count >= 1,
        )
        .await;
    assert!(fired, "the alarm's lag is observed");

    // Open sockets, per class: up while open, down once closed.
    let sockets = metric("podhost_class_sockets_open");
    let mut ws = server.ws("/objects/probe/room").await.expect("a socket");
    let up = server
        .metric_becomes(&sockets, Duration::from_secs(5), |n| n == 1)
        .await;
    assert!(up, "one socket open");
    ws.close(None).await.expect("closed");
    drop(ws);
    let down = server
        .metric_becomes(&sockets, Duration::from_secs(10), |n| n == 0)
        .await;
    assert!(down, "no socket open");
    server.stop().await;
}

fn user_options() -> Options {
    Options {
        tenants: vec![("probe", "acme")],
        ..crate::accounts::options("")
    }
}

async fn login(server: &Server, email: &str) -> (u16, Value) {
    call(
        server,
        Method::POST,
        "/auth/login",
        None,
        Some(json!({ "email": email, "password": PASSWORD })),
    )
    .await
}

/// A WebSocket to the user's own object, with their token.
async fn own_socket(
    server: &Server,
    session: &Value,
) -> tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>> {
    let url = format!(
        "{}/me/notes/socket",
        server.base.replacen("http://", "ws://", 1)
    );
    let mut request = url.into_client_request().expect("a request");
    let bearer = format!("Bearer {}", token(session));
    request
        .headers_mut()
        .insert("authorization", bearer.parse().expect("a header value"));
    let (ws, _) = tokio_tungstenite::connect_async(request)
        .await
        .expect("the socket opens");
    ws
}

async fn closes(
    ws: &mut tokio_tungstenite::WebSocketStream<
        tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>,
    >,
) -> bool {
    tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            match ws.next().await {
                Some(Ok(Message::Close(_))) | None | Some(Err(_)) => return true,
                Some(Ok(_)) => continue,
            }
        }
    })
    .await
    .unwrap_or(false)
}

#[tokio::test]
async fn the_operator_finds_disables_enables_and_deletes_users() {
    let (server, _dir) = Server::start(user_options()).await;
    let alice = signup(&server, "alice@example.com").await;
    let id = user_id(&alice).to_string();
    let (status, _) = call(
        &server,
        Method::POST,
        "/me/notes/write",
        Some(token(&alice)),
        Some(json!("mine")),
    )
    .await;
    assert_eq!(status, 200);

    // Found by email (any case); an unknown email finds no one.
    let (status, found) = call(
        &server,
        Method::GET,
        "/admin/users?email=Alice@Example.com",
        Some(ADMIN),
        None,
    )
    .await;
    assert_eq!(status, 200, "{found}");
    assert_eq!(found["users"][0]["id"], id.as_str());
    assert_eq!(found["users"][0]["disabled"], false);
    let (_, none) = call(
        &server,
        Method::GET,
        "/admin/users?email=nobody@example.com",
        Some(ADMIN),
        None,
    )
    .await;
    assert_eq!(none["users"], json!([]));

    // Admin token only: none, or a tenant's, is refused.
    let (status, _) = call(&server, Method::GET, "/admin/users", None, None).await;
    assert_eq!(status, 401);
    let (status, tenant) = call(
        &server,
        Method::POST,
        "/admin/tenants",
        Some(ADMIN),
        Some(json!({ "name": "acme" })),
    )
    .await;
    assert_eq!(status, 201, "{tenant}");
    let tenant_token = tenant["token"].as_str().expect("a token");
    for (method, path) in [
        (
            Method::GET,
            "/admin/users?email=alice@example.com".to_string(),
        ),
        (Method::POST, format!("/admin/users/{id}/disable")),
        (Method::DELETE, format!("/admin/users/{id}")),
    ] {
        let (status, body) = call(&server, method, &path, Some(tenant_token), None).await;
        assert_eq!(status, 403, "{path}: {body}");
    }

    // Disabled: the socket closes, the token and the refresh token are
    // refused, and so is logging in.
    let mut ws = own_socket(&server, &alice).await;
    let (status, disabled) = call(
        &server,
        Method::POST,
        &format!("/admin/users/{id}/disable"),
        Some(ADMIN),
        None,
    )
    .await;
    assert_eq!(status, 200, "{disabled}");
    assert_eq!(disabled["disabled"], true);
    assert!(closes(&mut ws).await, "the user's socket closes");
    let (status, _) = call(&server, Method::GET, "/auth/me", Some(token(&alice)), None).await;
    assert_eq!(status, 401);
    let (status, body) = call(
        &server,
        Method::POST,
        "/auth/refresh",
        None,
        Some(json!({ "refresh_token": alice["refresh_token"] })),
    )
    .await;
    assert!(status == 401 || status == 403, "{status} {body}");
    let (status, body) = login(&server, "alice@example.com").await;
    assert_eq!((status, error_code(&body)), (403, "account_disabled"));

    // Enabled: they log in again.
    let (status, _) = call(
        &server,
        Method::POST,
        &format!("/admin/users/{id}/enable"),
        Some(ADMIN),
        None,
    )
    .await;
    assert_eq!(status, 200);
    let (status, again) = login(&server, "alice@example.com").await;
    assert_eq!(status, 200, "{again}");

    // Deleted, objects kept by default: the session ends, the object stays.
    let mut ws = own_socket(&server, &again).await;
    let (status, deleted) = call(
        &server,
        Method::DELETE,
        &format!("/admin/users/{id}"),
        Some(ADMIN),
        None,
    )
    .await;
    assert_eq!(status, 200, "{deleted}");
    assert_eq!(deleted["objects_deleted"], json!([]));
    assert!(closes(&mut ws).await, "the deleted user's socket closes");
    let (status, _) = call(&server, Method::GET, "/auth/me", Some(token(&again)), None).await;
    assert_eq!(status, 401);
    let (status, _) = login(&server, "alice@example.com").await;
    assert_eq!(status, 401);
    let (status, _) = call(
        &server,
        Method::GET,
        &format!("/admin/objects/notes/{id}"),
        Some(ADMIN),
        None,
    )
    .await;
    assert_eq!(status, 200, "the per-user object is kept");
    let (status, _) = call(
        &server,
        Method::DELETE,
        &format!("/admin/users/{id}"),
        Some(ADMIN),
        None,
    )
    .await;
    assert_eq!(status, 404);

    // Deleted with ?objects=delete: the per-user object goes too.
    let bob = signup(&server, "bob@example.com").await;
    let bob_id = user_id(&bob).to_string();
    call(
        &server,
        Method::POST,
        "/me/notes/write",
        Some(token(&bob)),
        Some(json!("his")),
    )
    .await;
    let (status, deleted) = call(
        &server,
        Method::DELETE,
        &format!("/admin/users/{bob_id}?objects=delete"),
        Some(ADMIN),
        None,
    )
    .await;
    assert_eq!(status, 200, "{deleted}");
    assert_eq!(
        deleted["objects_deleted"],
        json!([{ "class": "notes", "name": bob_id }])
    );
    let (status, _) = call(
        &server,
        Method::GET,
        &format!("/admin/objects/notes/{bob_id}"),
        Some(ADMIN),
        None,
    )
    .await;
    assert_eq!(status, 404);
    let (status, _) = call(&server, Method::GET, "/auth/me", Some(token(&bob)), None).await;
    assert_eq!(status, 401);
    server.stop().await;
}
