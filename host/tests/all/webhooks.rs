//! `examples/webhooks` against a receiver the test runs on 127.0.0.1:
//! outbound HTTP through `wasi:http`, its allow-list and limits, and the
//! example's once-per-key delivery with retries by alarm.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use parking_lot::Mutex;
use serde_json::{Value, json};

use crate::support::{Options, Server, eventually};

/// One request the receiver got.
#[derive(Debug, Clone)]
struct Received {
    route: String,
    key: String,
    attempt: String,
    length: String,
    body: String,
}

#[derive(Default)]
struct Receiver {
    received: Mutex<Vec<Received>>,
    flaky_calls: AtomicUsize,
    hang_calls: AtomicUsize,
    /// A hung request's handler was dropped: its client went away.
    abandoned: AtomicBool,
}

impl Receiver {
    fn of(&self, key: &str) -> Vec<Received> {
        self.received
            .lock()
            .iter()
            .filter(|r| r.key == key)
            .cloned()
            .collect()
    }
}

/// Sets `abandoned` when the handler holding it is dropped unfinished.
struct Abandoned(Arc<Receiver>);

impl Drop for Abandoned {
    fn drop(&mut self) {
        self.0.abandoned.store(true, Ordering::SeqCst);
    }
}

/// Starts the receiver; returns its base URL (`http://127.0.0.1:port`).
async fn receiver() -> (String, Arc<Receiver>) {
    let state = Arc::new(Receiver::default());
    let app = Router::new()
        .route("/{route}", post(receive))
        .with_state(Arc::clone(&state));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("binding the receiver");
    let address = listener.local_addr().expect("its address");
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    (format!("http://{address}"), state)
}

async fn receive(
    State(state): State<Arc<Receiver>>,
    Path(route): Path<String>,
    headers: HeaderMap,
    body: String,
) -> (StatusCode, String) {
    let header = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_string()
    };
    state.received.lock().push(Received {
        route: route.clone(),
        key: header("idempotency-key"),
        attempt: header("webhook-attempt"),
        length: header("content-length"),
        body,
    });
    match route.as_str() {
        "ok" => (StatusCode::OK, "thanks".into()),
        // Fails twice, then succeeds.
        "flaky" => match state.flaky_calls.fetch_add(1, Ordering::SeqCst) {
            0 | 1 => (StatusCode::INTERNAL_SERVER_ERROR, "not now".into()),
            _ => (StatusCode::OK, "at last".into()),
        },
        // Hangs the first time (far past the outbound timeout), then answers.
        "hang" => {
            if state.hang_calls.fetch_add(1, Ordering::SeqCst) == 0 {
                tokio::time::sleep(Duration::from_secs(60)).await;
            }
            (StatusCode::OK, "late but fine".into())
        }
        // Never answers; notes when its client gives up.
        "hang-forever" => {
            let _guard = Abandoned(Arc::clone(&state));
            tokio::time::sleep(Duration::from_secs(300)).await;
            std::mem::forget(_guard);
            (StatusCode::OK, String::new())
        }
        // An answer over the test's max_outbound_response_bytes (64 KiB).
        "big" => (StatusCode::OK, "x".repeat(1 << 20)),
        _ => (StatusCode::NOT_FOUND, String::new()),
    }
}

/// A server whose `webhooks` class may reach 127.0.0.1 on any port, with
/// a short outbound timeout and a 64 KiB response cap.
async fn server() -> (Server, tempfile::TempDir) {
    Server::start(Options {
        extra_config: "outbound_timeout = \"1s\"\nmax_outbound_response_bytes = 65536\n",
        class_keys: vec![("webhooks", "outbound = [\"127.0.0.1:*\"]")],
        ..Options::default()
    })
    .await
}

async fn send(server: &Server, inbox: &str, body: Value) -> (u16, Value) {
    server
        .post_json(&format!("/objects/webhooks/{inbox}/send"), body)
        .await
}

async fn delivery(server: &Server, inbox: &str, key: &str) -> Value {
    let (status, body) = server
        .get_json(&format!("/objects/webhooks/{inbox}/deliveries/{key}"))
        .await;
    assert_eq!(status, 200, "{body}");
    body
}

#[tokio::test]
async fn a_key_is_delivered_once_even_when_sent_twice() {
    let (base, receiver) = receiver().await;
    let (server, _dir) = server().await;
    let request = json!({ "url": format!("{base}/ok"), "body": {"order": 7}, "key": "order-7" });

    let (status, first) = send(&server, "shop", request.clone()).await;
    assert_eq!(status, 200, "{first}");
    assert_eq!(first["status"], "delivered");
    assert_eq!(first["attempts"], 1);
    assert_eq!(first["duplicate"], false);

    let (status, again) = send(&server, "shop", request).await;
    assert_eq!(status, 200, "{again}");
    assert_eq!(again["duplicate"], true);
    assert_eq!(again["status"], "delivered");

    let got = receiver.of("order-7");
    assert_eq!(got.len(), 1, "delivered exactly once: {got:?}");
    assert_eq!(got[0].route, "ok");
    assert_eq!(got[0].attempt, "1");
    // A known length, not chunked: simple receivers read it.
    assert_eq!(got[0].length, got[0].body.len().to_string());
    assert_eq!(
        serde_json::from_str::<Value>(&got[0].body).expect("JSON"),
        json!({"order": 7})
    );
    let (_, attempts) = server
        .get_json("/objects/webhooks/shop/attempts?key=order-7")
        .await;
    assert_eq!(attempts.as_array().map(Vec::len), Some(1), "{attempts}");
    assert_eq!(attempts[0]["http_status"], 200);
    server.stop().await;
}

#[tokio::test]
async fn a_failing_receiver_is_retried_by_alarm_until_the_third_attempt_succeeds() {
    let (base, receiver) = receiver().await;
    let (server, _dir) = server().await;
    let (status, first) = send(
        &server,
        "billing",
        json!({ "url": format!("{base}/flaky"), "body": "paid", "key": "inv-1", "backoff_ms": 100 }),
    )
    .await;
    assert_eq!(status, 202, "{first}");
    assert_eq!(first["status"], "retrying");
    assert!(
        first["error"].as_str().unwrap_or_default().contains("500"),
        "{first}"
    );

    let delivered = eventually(Duration::from_secs(20), || async {
        delivery(&server, "billing", "inv-1").await["delivery"]["status"] == "delivered"
    })
    .await;
    assert!(delivered, "{}", delivery(&server, "billing", "inv-1").await);
    let state = delivery(&server, "billing", "inv-1").await;
    assert_eq!(state["delivery"]["attempts"], 3, "{state}");
    // Newest first: 200 after two 500s.
    let statuses: Vec<&Value> = state["attempts"]
        .as_array()
        .expect("attempts")
        .iter()
        .map(|a| &a["http_status"])
        .collect();
    assert_eq!(statuses, [&json!(200), &json!(500), &json!(500)], "{state}");
    let got = receiver.of("inv-1");
    let numbers: Vec<&str> = got.iter().map(|r| r.attempt.as_str()).collect();
    assert_eq!(numbers, ["1", "2", "3"]);
    assert!(got.iter().all(|r| r.body == "paid"));
    server.stop().await;
}

#[tokio::test]
async fn a_hanging_receiver_times_out_cleanly_and_is_retried_later() {
    let (base, receiver) = receiver().await;
    let (server, _dir) = server().await;
    let started = Instant::now();
    let (status, first) = send(
        &server,
        "slow",
        json!({ "url": format!("{base}/hang"), "body": {}, "key": "k", "backoff_ms": 200 }),
    )
    .await;
    let took = started.elapsed();
    // The event ended on the outbound timeout (1 s), long before the
    // event's wall-clock limit (60 s), and committed its record.
    assert_eq!(status, 202, "{first}");
    assert!(took < Duration::from_secs(10), "took {took:?}");
    let error = first["error"].as_str().unwrap_or_default();
    assert!(error.contains("timed out"), "{first}");
    assert!(error.contains("outbound_timeout"), "{first}");

    let delivered = eventually(Duration::from_secs(20), || async {
        delivery(&server, "slow", "k").await["delivery"]["status"] == "delivered"
    })
    .await;
    assert!(delivered, "{}", delivery(&server, "slow", "k").await);
    assert_eq!(receiver.of("k").len(), 2);
    server.stop().await;
}

#[tokio::test]
async fn a_host_not_in_outbound_fails_at_once_naming_the_host_and_the_key() {
    let (server, _dir) = server().await;
    let started = Instant::now();
    let (status, body) = send(
        &server,
        "shop",
        json!({ "url": "http://hooks.example.net:8080/in", "body": {}, "key": "k1" }),
    )
    .await;
    assert!(started.elapsed() < Duration::from_secs(5));
    assert_eq!(status, 403, "{body}");
    let error = body["error"]["message"].as_str().unwrap_or_default();
    assert!(error.contains("hooks.example.net:8080"), "{error}");
    assert!(error.contains("classes.webhooks.outbound"), "{error}");
    // Nothing was recorded: fixing the setting and sending again works.
    let (_, deliveries) = server.get_json("/objects/webhooks/shop/deliveries").await;
    assert_eq!(deliveries, json!([]));
    assert_eq!(server.metric("podhost_outbound_refused_total").await, 1);
    assert_eq!(server.metric("podhost_outbound_requests_total").await, 0);
    // The operator sees it too, with the object's class.
    assert!(
        eventually(Duration::from_secs(5), || async {
            let log = server.log();
            log.contains("denied") && log.contains("hooks.example.net")
        })
        .await,
        "{}",
        server.log()
    );
    server.stop().await;
}

#[tokio::test]
async fn a_class_without_outbound_reaches_nothing() {
    let (base, receiver) = receiver().await;
    let (server, _dir) = Server::start(Options::default()).await;
    let (status, body) = send(
        &server,
        "shop",
        json!({ "url": format!("{base}/ok"), "body": {}, "key": "k" }),
    )
    .await;
    assert_eq!(status, 403, "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap_or_default()
            .contains("127.0.0.1"),
        "{body}"
    );
    assert!(receiver.received.lock().is_empty());
    server.stop().await;
}

#[tokio::test]
async fn a_response_over_the_size_cap_is_an_error_not_a_truncated_body() {
    let (base, _receiver) = receiver().await;
    let (server, _dir) = server().await;
    let (status, body) = send(
        &server,
        "shop",
        json!({ "url": format!("{base}/big"), "body": {}, "key": "big", "max_attempts": 1 }),
    )
    .await;
    assert_eq!(status, 502, "{body}");
    assert_eq!(body["status"], "failed");
    let error = body["error"].as_str().unwrap_or_default();
    assert!(error.contains("too large"), "{error}");
    assert!(error.contains("max_outbound_response_bytes"), "{error}");
    server.stop().await;
}

#[tokio::test]
async fn the_wall_clock_limit_drops_a_request_in_flight() {
    let (base, receiver) = receiver().await;
    let (server, _dir) = Server::start(Options {
        extra_config: "max_wall_time_per_event = \"1s\"\noutbound_timeout = \"30s\"\noutbound_first_byte_timeout = \"30s\"\n",
        class_keys: vec![("webhooks", "outbound = [\"127.0.0.1:*\"]")],
        ..Options::default()
    })
    .await;
    let started = Instant::now();
    let (status, body) = send(
        &server,
        "shop",
        json!({ "url": format!("{base}/hang-forever"), "body": {}, "key": "k" }),
    )
    .await;
    assert!(status >= 500, "{status} {body}");
    assert!(started.elapsed() < Duration::from_secs(15));
    // The host let go of the connection: the receiver's handler was dropped.
    assert!(
        eventually(Duration::from_secs(10), || async {
            receiver.abandoned.load(Ordering::SeqCst)
        })
        .await
    );
    // Nothing of the event stands; the object still works.
    let (_, deliveries) = server.get_json("/objects/webhooks/shop/deliveries").await;
    assert_eq!(deliveries, json!([]));
    server.stop().await;
}
