//! Per-event limits: a guest that loops forever or allocates without bound
//! fails its own event with an error naming the limit, and nobody else
//! notices. The process's own limits, likewise, refuse new objects with a
//! clear reason and leave live ones alone.

use std::time::{Duration, Instant};

use crate::support::{Options, Server, parse_json};

#[tokio::test]
async fn an_endless_loop_is_stopped_at_the_cpu_limit_while_others_answer() {
    let options = Options {
        max_cpu_per_event: "300ms",
        ..Options::default()
    };
    let (server, _dir) = Server::start(options).await;
    assert_eq!(
        server
            .post("/objects/probe/spinner/write", "before")
            .await
            .0,
        200
    );

    let started = Instant::now();
    let spins: Vec<_> = (0..2)
        .map(|_| {
            let request = server
                .client
                .post(server.url("/objects/probe/spinner/spin"))
                .send();
            tokio::spawn(async move {
                let response = request.await.expect("request sent");
                (
                    response.status().as_u16(),
                    response.text().await.expect("body"),
                )
            })
        })
        .collect();
    // Two runtime threads, two spinning events queued on one object: the
    // rest of the host must keep answering while they run.
    for expected in 1..=5 {
        assert_eq!(
            server.post("/objects/counter/bystander", "").await,
            (200, expected.to_string())
        );
    }
    for spin in spins {
        let (status, body) = spin.await.expect("spin task");
        assert_eq!(status, 500, "{body}");
        let error = parse_json(&body);
        assert_eq!(error["error"]["code"], "cpu_limit_exceeded");
        assert!(
            error["error"]["message"]
                .as_str()
                .is_some_and(|m| m.contains("300ms")),
            "{body}"
        );
    }
    assert!(
        started.elapsed() < Duration::from_secs(20),
        "stopped near the limit: {:?}",
        started.elapsed()
    );

    let (status, body) = server.get("/objects/probe/spinner/state").await;
    assert_eq!(status, 200, "the object recovers: {body}");
    assert_eq!(parse_json(&body)["notes"], serde_json::json!(["before"]));
    server.stop().await;
}

#[tokio::test]
async fn unbounded_allocation_hits_the_memory_limit_not_the_host() {
    let options = Options {
        max_memory_bytes: 32 << 20,
        ..Options::default()
    };
    let (server, _dir) = Server::start(options).await;
    let (status, body) = server.post("/objects/probe/hog/hog", "").await;
    assert_eq!(status, 500, "{body}");
    let error = parse_json(&body);
    assert_eq!(error["error"]["code"], "memory_limit_exceeded");
    assert!(
        error["error"]["message"]
            .as_str()
            .is_some_and(|m| m.contains(&(32u64 << 20).to_string())),
        "{body}"
    );

    assert_eq!(
        server.post("/objects/probe/hog/write", "fine").await.0,
        200,
        "the object recovers"
    );
    assert_eq!(
        server.post("/objects/counter/other", "").await,
        (200, "1".into())
    );
    server.stop().await;
}

#[tokio::test]
async fn writes_past_the_storage_limit_get_a_typed_error_the_guest_handles() {
    let options = Options {
        max_storage_bytes: 512 << 10,
        ..Options::default()
    };
    let (server, _dir) = Server::start(options).await;
    let (status, body) = server.post("/objects/probe/full/fill", "").await;
    assert_eq!(status, 200, "the guest handled the error: {body}");
    let report = parse_json(&body);
    assert_eq!(report["code"], "storage-full", "{body}");
    assert!(
        report["inserted"]
            .as_u64()
            .is_some_and(|n| (1..32).contains(&n)),
        "{body}"
    );

    let (status, body) = server.get("/objects/probe/full/state").await;
    assert_eq!(status, 200, "{body}");
    let kept = parse_json(&body)["notes"].as_array().map_or(0, Vec::len) as u64;
    assert_eq!(
        kept,
        report["inserted"].as_u64().unwrap_or(0),
        "what fitted was committed"
    );
    assert_eq!(
        server.post("/objects/counter/roomy", "").await,
        (200, "1".into()),
        "other objects are unaffected"
    );
    server.stop().await;
}

#[tokio::test]
async fn endless_guest_sql_is_stopped_at_the_cpu_limit() {
    let options = Options {
        max_cpu_per_event: "300ms",
        ..Options::default()
    };
    let (server, _dir) = Server::start(options).await;
    let endless =
        "WITH RECURSIVE n(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM n) SELECT count(*) FROM n";
    let query = server
        .client
        .post(server.url("/objects/probe/slow/sql"))
        .body(serde_json::json!({ "query": endless }).to_string())
        .send();
    let started = Instant::now();
    let pending = tokio::spawn(query);
    assert_eq!(
        server.post("/objects/counter/meanwhile", "").await,
        (200, "1".into())
    );
    let response = pending.await.expect("task").expect("sent");
    assert_eq!(response.status(), 500);
    let body: serde_json::Value = response.json().await.expect("JSON");
    assert_eq!(body["error"]["code"], "cpu_limit_exceeded", "{body}");
    assert!(started.elapsed() < Duration::from_secs(20));
    assert_eq!(
        server.post("/objects/probe/slow/write", "after").await.0,
        200,
        "the object recovers"
    );
    server.stop().await;
}

#[tokio::test]
async fn a_server_out_of_open_files_refuses_new_objects_clearly_and_serves_live_ones() {
    let options = Options {
        max_active: 500,
        file_limit: Some(128),
        ..Options::default()
    };
    let (server, _dir) = Server::start(options).await;
    assert!(
        server.log().contains("open files"),
        "a warning at start: {}",
        server.log()
    );
    // Each live object holds two files, so activations soon fail.
    let mut refused = None;
    for n in 0..100 {
        let (status, body) = server.post(&format!("/objects/counter/n{n}"), "").await;
        if status != 200 {
            refused = Some((n, status, body));
            break;
        }
    }
    let (live, status, body) = refused.expect("activations stop before 100 objects");
    assert!(live > 5, "only {live} objects were activated");
    assert_eq!(status, 500, "{body}");
    assert_eq!(parse_json(&body)["error"]["code"], "activation_failed");
    assert!(
        server.log().contains("ulimit -n"),
        "the log names the cause: {}",
        server.log()
    );
    assert_eq!(
        server.post("/objects/counter/n0", "").await,
        (200, "2".into()),
        "a live object still answers"
    );
    server.stop().await;
}
