//! The ratelimit example against a real server: a token bucket per key.

use serde_json::json;

use crate::support::{Options, Server};

#[tokio::test]
async fn a_bucket_answers_remaining_then_429_with_retry_after() {
    let (server, _dir) = Server::start(Options::default()).await;
    let take = |path: &'static str| server.client.post(server.url(path)).send();

    let (status, body) = server
        .post_json("/objects/ratelimit/k1/take?cost=1", json!(null))
        .await;
    assert_eq!((status, &body["remaining"]), (200, &json!(9)), "{body}");
    let response = take("/objects/ratelimit/k1/take?cost=9")
        .await
        .expect("sent");
    assert_eq!(response.status(), 200);
    // Empty now, and 10 tokens take 10 s to come back.
    let response = take("/objects/ratelimit/k1/take?cost=10")
        .await
        .expect("sent");
    assert_eq!(response.status(), 429);
    let retry: u64 = response
        .headers()
        .get("retry-after")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok())
        .expect("a Retry-After in seconds");
    assert!((9..=10).contains(&retry), "{retry}");
    let body: serde_json::Value = response.json().await.expect("JSON");
    assert_eq!(body["remaining"], 0, "{body}");

    // Another key has its own bucket.
    let (status, body) = server
        .post_json("/objects/ratelimit/k2/take", json!(null))
        .await;
    assert_eq!((status, &body["remaining"]), (200, &json!(9)), "{body}");
    server.stop().await;
}

#[tokio::test]
async fn a_bucket_refuses_bad_costs_and_can_be_resized() {
    let (server, _dir) = Server::start(Options::default()).await;
    for bad in ["abc", "-1", "11"] {
        let (status, body) = server
            .post(&format!("/objects/ratelimit/k/take?cost={bad}"), "")
            .await;
        assert_eq!(status, 400, "cost {bad}: {body}");
    }
    let response = server
        .client
        .put(server.url("/objects/ratelimit/k"))
        .json(&json!({ "capacity": 3, "refill_per_second": 0.001 }))
        .send()
        .await
        .expect("sent");
    assert_eq!(response.status(), 200);
    for remaining in [2, 1, 0] {
        let (status, body) = server
            .post_json("/objects/ratelimit/k/take", json!(null))
            .await;
        assert_eq!(
            (status, &body["remaining"]),
            (200, &json!(remaining)),
            "{body}"
        );
    }
    let (status, _) = server.post("/objects/ratelimit/k/take", "").await;
    assert_eq!(status, 429);
    let (status, body) = server.get_json("/objects/ratelimit/k").await;
    assert_eq!((status, &body["remaining"]), (200, &json!(0)), "{body}");
    server.stop().await;
}
