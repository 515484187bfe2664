//! `examples/toolbox`: counters, short links, locks, job queues and vector
//! memories per API key holder at `/key`, over real HTTP, with a local
//! embeddings server for text queries.

use std::sync::Arc;
use std::time::Duration;

use axum::extract::State;
use axum::http::HeaderMap;
use axum::routing::post as route_post;
use parking_lot::Mutex;
use reqwest::Method;
use serde_json::{Value, json};

use crate::accounts::{ADMIN, call, call_with_headers, error_code};
use crate::support::{Options, Server, eventually};

const EMBEDDINGS_KEY: &str = "sk-test-embeddings-key-0123456789";

fn options() -> Options {
    options_with("")
}

/// The toolbox as a key class; `class_keys` adds keys to its table.
fn options_with(class_keys: &'static str) -> Options {
    Options {
        admin_token: Some(ADMIN),
        access: vec![("toolbox", "key")],
        class_keys: vec![("toolbox", class_keys)],
        env: vec![("TOOLBOX_TEST_EMBEDDINGS_KEY", EMBEDDINGS_KEY)],
        ..Options::default()
    }
}

/// A new API key for object `toolbox/{name}`.
async fn key(server: &Server, name: &str) -> String {
    let (status, created) = call(
        server,
        Method::POST,
        &format!("/admin/objects/toolbox/{name}/keys"),
        Some(ADMIN),
        Some(json!({ "label": name })),
    )
    .await;
    assert_eq!(status, 201, "{created}");
    created["key"]["key"].as_str().expect("the key").to_string()
}

/// A request to `/key{path}` with `key`.
async fn send(
    server: &Server,
    key: &str,
    method: Method,
    path: &str,
    body: Option<Value>,
) -> (u16, Value) {
    call(server, method, &format!("/key{path}"), Some(key), body).await
}

async fn post(server: &Server, key: &str, path: &str, body: Value) -> (u16, Value) {
    send(server, key, Method::POST, path, Some(body)).await
}

async fn get(server: &Server, key: &str, path: &str) -> (u16, Value) {
    send(server, key, Method::GET, path, None).await
}

#[tokio::test]
async fn a_key_holder_counts_up_and_down_within_remembered_bounds() {
    let (server, _dir) = Server::start(options()).await;
    let k = key(&server, "acme").await;

    let (status, body) = get(&server, &k, "/counters/visits").await;
    assert_eq!((status, error_code(&body)), (404, "not_found"));

    // No body: one step up.
    let (status, body) = send(
        &server,
        &k,
        Method::POST,
        "/counters/visits/increment",
        None,
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["value"], 1);
    let (_, body) = post(
        &server,
        &k,
        "/counters/visits/increment",
        json!({ "amount": 5 }),
    )
    .await;
    assert_eq!(body["value"], 6);
    let (_, body) = post(
        &server,
        &k,
        "/counters/visits/decrement",
        json!({ "amount": 2 }),
    )
    .await;
    assert_eq!(body["value"], 4);

    // Bounds clamp, and are remembered for later steps.
    let (_, body) = post(
        &server,
        &k,
        "/counters/visits/increment",
        json!({ "amount": 100, "max": 10 }),
    )
    .await;
    assert_eq!(
        (body["value"].clone(), body["max"].clone()),
        (json!(10), json!(10))
    );
    let (_, body) = post(&server, &k, "/counters/visits/increment", json!({})).await;
    assert_eq!(body["value"], 10, "the max is remembered");
    let (_, body) = post(
        &server,
        &k,
        "/counters/visits/decrement",
        json!({ "amount": 50, "min": -3 }),
    )
    .await;
    assert_eq!(body["value"], -3);
    let (_, body) = post(&server, &k, "/counters/visits/decrement", json!({})).await;
    assert_eq!(body["value"], -3, "the min is remembered");
    let (status, body) = get(&server, &k, "/counters/visits").await;
    assert_eq!(status, 200);
    assert_eq!(
        (
            body["name"].clone(),
            body["value"].clone(),
            body["min"].clone(),
            body["max"].clone()
        ),
        (json!("visits"), json!(-3), json!(-3), json!(10))
    );

    // Errors: bounds the wrong way round, a negative amount, a bad body.
    let (status, _) = post(
        &server,
        &k,
        "/counters/visits/increment",
        json!({ "min": 20 }),
    )
    .await;
    assert_eq!(status, 400, "min above the remembered max");
    let (status, _) = post(
        &server,
        &k,
        "/counters/visits/increment",
        json!({ "amount": -1 }),
    )
    .await;
    assert_eq!(status, 400);
    let (status, body) = post(
        &server,
        &k,
        "/counters/visits/increment",
        json!({ "amount": "x" }),
    )
    .await;
    assert_eq!(status, 400, "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap_or("")
            .contains("amount"),
        "{body}"
    );

    // Reset goes to 0 (within bounds), bounds stay.
    let (status, body) = send(&server, &k, Method::POST, "/counters/visits/reset", None).await;
    assert_eq!((status, body["value"].clone()), (200, json!(0)));
    let (status, _) = send(&server, &k, Method::POST, "/counters/none/reset", None).await;
    assert_eq!(status, 404);

    post(
        &server,
        &k,
        "/counters/apples/increment",
        json!({ "amount": 3 }),
    )
    .await;
    let (status, body) = get(&server, &k, "/counters").await;
    assert_eq!(status, 200);
    let names: Vec<&str> = body["counters"]
        .as_array()
        .expect("a list")
        .iter()
        .filter_map(|c| c["name"].as_str())
        .collect();
    assert_eq!(names, ["apples", "visits"]);

    let (status, _) = send(&server, &k, Method::DELETE, "/counters/apples", None).await;
    assert_eq!(status, 200);
    let (status, _) = send(&server, &k, Method::DELETE, "/counters/apples", None).await;
    assert_eq!(status, 404);
    let (status, _) = get(&server, &k, "/counters/apples").await;
    assert_eq!(status, 404);

    // Without the key: nothing.
    let (status, _) = call(&server, Method::GET, "/key/counters", None, None).await;
    assert_eq!(status, 401);
    let (status, _) = call(
        &server,
        Method::GET,
        "/objects/toolbox/acme/counters",
        None,
        None,
    )
    .await;
    assert_eq!(status, 403);
    server.stop().await;
}

/// A client that shows redirects instead of following them.
fn no_redirects() -> reqwest::Client {
    reqwest::Client::builder()
        .no_proxy()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(Duration::from_secs(30))
        .build()
        .expect("a client")
}

#[tokio::test]
async fn a_key_holder_shortens_links_and_sees_who_followed_them() {
    let (server, _dir) = Server::start(options()).await;
    let k = key(&server, "acme").await;

    let (status, body) = post(
        &server,
        &k,
        "/links",
        json!({ "slug": "docs", "url": "https://example.com/docs?a=1", "title": "Docs" }),
    )
    .await;
    assert_eq!(status, 201, "{body}");
    assert_eq!(body["link"]["slug"], "docs");
    assert_eq!(body["link"]["clicks"], 0);

    let (status, body) = post(
        &server,
        &k,
        "/links",
        json!({ "slug": "docs", "url": "https://example.com/other" }),
    )
    .await;
    assert_eq!(status, 409, "a taken slug: {body}");
    for url in [
        "ftp://example.com/x",
        "javascript:alert(1)",
        "example.com",
        "http://",
    ] {
        let (status, body) =
            post(&server, &k, "/links", json!({ "slug": "bad", "url": url })).await;
        assert_eq!(status, 400, "{url}: {body}");
    }
    let (status, _) = post(
        &server,
        &k,
        "/links",
        json!({ "slug": "no/slash", "url": "https://a.b" }),
    )
    .await;
    assert_eq!(status, 400);
    let (status, body) = post(&server, &k, "/links", json!({ "url": "https://a.b" })).await;
    assert_eq!(status, 400);
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap_or("")
            .contains("slug"),
        "{body}"
    );

    // Following: a 302 to the URL, counted with its referrer and agent.
    let client = no_redirects();
    let follow = |referrer: Option<&'static str>| {
        let mut request = client
            .get(server.url("/key/links/docs"))
            .bearer_auth(&k)
            .header("user-agent", "toolbox-test/1.0");
        if let Some(referrer) = referrer {
            request = request.header("referer", referrer);
        }
        async move { request.send().await.expect("followed") }
    };
    let response = follow(Some("https://news.example/")).await;
    assert_eq!(response.status(), 302);
    assert_eq!(
        response.headers()["location"],
        "https://example.com/docs?a=1"
    );
    follow(Some("https://news.example/")).await;
    follow(None).await;

    let (status, stats) = get(&server, &k, "/links/docs/stats").await;
    assert_eq!(status, 200, "{stats}");
    assert_eq!(stats["clicks"], 3);
    assert_eq!(
        stats["by_referrer"][0],
        json!({ "referrer": "https://news.example/", "clicks": 2 })
    );
    assert_eq!(stats["by_referrer"][1]["clicks"], 1);
    let recent = stats["recent"].as_array().expect("recent clicks");
    assert_eq!(recent.len(), 3);
    assert_eq!(recent[0]["referrer"], Value::Null, "newest first");
    assert_eq!(recent[1]["user_agent"], "toolbox-test/1.0");
    assert_eq!(recent[1]["client_address"], "127.0.0.1");
    assert!(recent[1]["at"].as_i64().unwrap_or(0) > 0);

    // An expired link is gone (410), but still listed and its slug taken.
    let (status, body) = post(
        &server,
        &k,
        "/links",
        json!({ "slug": "old", "url": "http://example.com/", "expires_at": 1_000_000_000_000i64 }),
    )
    .await;
    assert_eq!(status, 201, "{body}");
    let (status, body) = get(&server, &k, "/links/old").await;
    assert_eq!(status, 410, "{body}");
    let (status, _) = post(&server, &k, "/links", json!({ "slug": "later", "url": "http://example.com/", "expires_at": "2999-01-01T00:00:00Z" })).await;
    assert_eq!(status, 201);
    let response = client
        .get(server.url("/key/links/later"))
        .bearer_auth(&k)
        .send()
        .await
        .expect("followed");
    assert_eq!(response.status(), 302, "not expired yet");
    let (status, body) = post(
        &server,
        &k,
        "/links",
        json!({ "slug": "y2k", "url": "http://example.com/", "expires_at": "2000-01-01T00:00:00.5+01:00" }),
    )
    .await;
    assert_eq!(status, 201, "{body}");
    assert_eq!(
        body["link"]["expires_at"], 946_681_200_500i64,
        "RFC 3339 with an offset"
    );
    assert_eq!(get(&server, &k, "/links/y2k").await.0, 410);
    let (status, _) = post(
        &server,
        &k,
        "/links",
        json!({ "slug": "x", "url": "http://example.com/", "expires_at": "soon" }),
    )
    .await;
    assert_eq!(status, 400);

    let (status, body) = get(&server, &k, "/links").await;
    assert_eq!(status, 200);
    let mut slugs: Vec<&str> = body["links"]
        .as_array()
        .expect("a list")
        .iter()
        .filter_map(|l| l["slug"].as_str())
        .collect();
    slugs.sort_unstable();
    assert_eq!(slugs, ["docs", "later", "old", "y2k"]);

    let (status, _) = send(&server, &k, Method::DELETE, "/links/docs", None).await;
    assert_eq!(status, 200);
    let (status, _) = get(&server, &k, "/links/docs").await;
    assert_eq!(status, 404);
    let (status, _) = get(&server, &k, "/links/docs/stats").await;
    assert_eq!(status, 404);
    let (status, _) = send(&server, &k, Method::DELETE, "/links/docs", None).await;
    assert_eq!(status, 404);
    server.stop().await;
}

#[tokio::test]
async fn a_key_holder_takes_a_lock_that_frees_itself_when_its_ttl_runs_out() {
    let (server, _dir) = Server::start(options()).await;
    let k = key(&server, "acme").await;

    let (status, lock) = post(
        &server,
        &k,
        "/locks/deploy/acquire",
        json!({ "ttl_ms": 60_000 }),
    )
    .await;
    assert_eq!(status, 200, "{lock}");
    let token = lock["token"].as_str().expect("a token").to_string();
    let (status, body) = post(
        &server,
        &k,
        "/locks/deploy/acquire",
        json!({ "ttl_ms": 1000 }),
    )
    .await;
    assert_eq!(status, 409, "held: {body}");
    let (_, shown) = get(&server, &k, "/locks/deploy").await;
    assert_eq!(shown["held"], true);
    assert!(shown.get("token").is_none(), "the token is never shown");

    let (status, _) = post(
        &server,
        &k,
        "/locks/deploy/release",
        json!({ "token": "nope" }),
    )
    .await;
    assert_eq!(status, 409, "a wrong token releases nothing");
    let (status, _) = post(&server, &k, "/locks/deploy/acquire", json!({ "ttl_ms": 0 })).await;
    assert_eq!(status, 400);
    let (status, _) = post(&server, &k, "/locks/deploy/acquire", json!({})).await;
    assert_eq!(status, 400);

    let (status, extended) = post(
        &server,
        &k,
        "/locks/deploy/extend",
        json!({ "token": token, "ttl_ms": 120_000 }),
    )
    .await;
    assert_eq!(status, 200, "{extended}");
    assert!(extended["expires_at"].as_i64() > lock["expires_at"].as_i64());
    let (status, _) = post(
        &server,
        &k,
        "/locks/deploy/release",
        json!({ "token": token }),
    )
    .await;
    assert_eq!(status, 200);
    let (_, shown) = get(&server, &k, "/locks/deploy").await;
    assert_eq!(shown["held"], false);
    let (status, _) = post(
        &server,
        &k,
        "/locks/deploy/release",
        json!({ "token": token }),
    )
    .await;
    assert_eq!(status, 409, "released already");
    let (status, _) = post(
        &server,
        &k,
        "/locks/deploy/extend",
        json!({ "token": token, "ttl_ms": 10 }),
    )
    .await;
    assert_eq!(status, 409);

    // A short TTL: freed by the alarm, and the lock can be taken again.
    let (status, _) = post(
        &server,
        &k,
        "/locks/short/acquire",
        json!({ "ttl_ms": 300 }),
    )
    .await;
    assert_eq!(status, 200);
    let freed = eventually(Duration::from_secs(10), || async {
        get(&server, &k, "/locks/short").await.1["held"] == false
    })
    .await;
    assert!(freed, "the TTL frees the lock");
    let (status, _) = post(
        &server,
        &k,
        "/locks/short/acquire",
        json!({ "ttl_ms": 1000 }),
    )
    .await;
    assert_eq!(status, 200);
    server.stop().await;
}

#[tokio::test]
async fn a_queue_hands_out_jobs_by_priority_retries_failures_and_requeues_timeouts() {
    let (server, _dir) = Server::start(options()).await;
    let k = key(&server, "acme").await;
    let push = |queue: &'static str, body: Value| {
        let (server, k) = (&server, &k);
        async move {
            let (status, body) = post(server, k, &format!("/queues/{queue}/jobs"), body).await;
            assert_eq!(status, 201, "{body}");
            body["job"].clone()
        }
    };
    let pop = |queue: &'static str, body: Option<Value>| {
        let (server, k) = (&server, &k);
        async move {
            send(
                server,
                k,
                Method::POST,
                &format!("/queues/{queue}/pop"),
                body,
            )
            .await
        }
    };

    let (status, _) = pop("mail", None).await;
    assert_eq!(status, 204, "nothing to do");
    let low = push("mail", json!({ "payload": { "to": "a" } })).await;
    assert_eq!(low["status"], "pending");
    assert_eq!(low["max_attempts"], 3, "the default");
    let high = push("mail", json!({ "payload": { "to": "b" }, "priority": 5 })).await;
    let low2 = push("mail", json!({ "payload": "c" })).await;
    push("other", json!({ "payload": 1 })).await;
    let (status, _) = post(&server, &k, "/queues/mail/jobs", json!({ "priority": 1 })).await;
    assert_eq!(status, 400, "a job needs a payload");
    let (status, _) = post(
        &server,
        &k,
        "/queues/mail/jobs",
        json!({ "payload": 1, "max_attempts": 0 }),
    )
    .await;
    assert_eq!(status, 400);

    // Highest priority first, then oldest.
    let (status, first) = pop("mail", None).await;
    assert_eq!(status, 200, "{first}");
    assert_eq!(first["job"]["id"], high["id"]);
    assert_eq!(first["job"]["status"], "running");
    assert_eq!(first["job"]["payload"], json!({ "to": "b" }));
    assert_eq!(first["job"]["attempts"], 1);
    let (_, second) = pop("mail", None).await;
    assert_eq!(second["job"]["id"], low["id"]);

    let (status, done) = send(
        &server,
        &k,
        Method::POST,
        &format!("/jobs/{}/complete", high["id"]),
        None,
    )
    .await;
    assert_eq!(
        (status, done["job"]["status"].clone()),
        (200, json!("completed"))
    );
    let (status, _) = send(
        &server,
        &k,
        Method::POST,
        &format!("/jobs/{}/complete", high["id"]),
        None,
    )
    .await;
    assert_eq!(status, 409, "completed already");
    let (status, _) = send(&server, &k, Method::POST, "/jobs/9999/complete", None).await;
    assert_eq!(status, 404);

    // A failure puts the job back until its attempts are used up.
    let id = low["id"].clone();
    let fail = |error: &'static str| {
        let (server, k, id) = (&server, &k, id.clone());
        async move {
            post(
                server,
                k,
                &format!("/jobs/{id}/fail"),
                json!({ "error": error }),
            )
            .await
        }
    };
    let (status, failed) = fail("smtp down").await;
    assert_eq!(status, 200, "{failed}");
    assert_eq!(failed["job"]["status"], "pending");
    assert_eq!(failed["job"]["error"], "smtp down");
    for attempt in 2..=3 {
        let (_, job) = pop("mail", None).await;
        assert_eq!(job["job"]["id"], id, "attempt {attempt}");
        assert_eq!(job["job"]["attempts"], attempt);
        fail("still down").await;
    }
    let (status, body) = get(&server, &k, "/queues/mail/jobs?status=failed").await;
    assert_eq!(status, 200);
    let failed = body["jobs"].as_array().expect("a list");
    assert_eq!(failed.len(), 1);
    assert_eq!(failed[0]["id"], id);
    assert_eq!(failed[0]["attempts"], 3);
    let (status, _) = fail("again").await;
    assert_eq!(status, 409, "a failed job is not running");

    // A job not completed within its visibility timeout comes back.
    let (_, taken) = pop("mail", Some(json!({ "visibility_timeout_ms": 300 }))).await;
    assert_eq!(taken["job"]["id"], low2["id"]);
    let back = eventually(Duration::from_secs(10), || async {
        let (_, body) = get(&server, &k, "/queues/mail/jobs?status=pending").await;
        body["jobs"]
            .as_array()
            .is_some_and(|jobs| jobs.iter().any(|j| j["id"] == low2["id"]))
    })
    .await;
    assert!(back, "the timed-out job is pending again");
    let (_, again) = pop("mail", None).await;
    assert_eq!(again["job"]["id"], low2["id"]);
    assert_eq!(again["job"]["attempts"], 2);
    assert_eq!(again["job"]["error"], "visibility timeout");
    let (status, _) = pop("mail", Some(json!({ "visibility_timeout_ms": -5 }))).await;
    assert_eq!(status, 400);

    let (_, all) = get(&server, &k, "/queues/mail/jobs").await;
    assert_eq!(all["jobs"].as_array().map(Vec::len), Some(3));
    let (_, other) = get(&server, &k, "/queues/other/jobs?status=pending").await;
    assert_eq!(other["jobs"].as_array().map(Vec::len), Some(1));
    let (status, _) = get(&server, &k, "/queues/mail/jobs?status=lost").await;
    assert_eq!(status, 400);
    server.stop().await;
}

/// What the embeddings server saw: each request's `Authorization` and body.
type Seen = Arc<Mutex<Vec<(String, Value)>>>;

/// A local embeddings server: `POST /embed {"input"}` answers
/// `{"data": [{"embedding"}]}` (the OpenAI shape) with a 3-dimensional
/// vector per word it knows.
async fn embeddings_server() -> (String, Seen) {
    fn vector(text: &str) -> Vec<f32> {
        match text {
            t if t.contains("cat") => vec![1.0, 0.1, 0.0],
            t if t.contains("dog") => vec![0.1, 1.0, 0.0],
            _ => vec![0.0, 0.0, 1.0],
        }
    }
    async fn record(seen: &Seen, headers: &HeaderMap, body: &Value) -> Vec<f32> {
        let authorization = headers
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_string();
        seen.lock().push((authorization, body.clone()));
        vector(body["input"].as_str().unwrap_or_default())
    }
    let seen: Seen = Arc::default();
    let app = axum::Router::new()
        .route(
            "/embed",
            route_post(
                |State(seen): State<Seen>,
                 headers: HeaderMap,
                 axum::Json(body): axum::Json<Value>| async move {
                    let embedding = record(&seen, &headers, &body).await;
                    axum::Json(json!({ "data": [{ "embedding": embedding }] }))
                },
            ),
        )
        .with_state(Arc::clone(&seen));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("binding the embeddings server");
    let address = listener.local_addr().expect("its address");
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    (format!("http://{address}"), seen)
}

#[tokio::test]
async fn memories_are_searched_by_similarity_and_text_is_embedded_with_the_secret_key() {
    let (url, seen) = embeddings_server().await;
    let keys: &'static str = Box::leak(
        format!(
            "outbound = [\"127.0.0.1:*\"]\n\
             vars = {{ EMBEDDINGS_URL = \"{url}/embed\" }}\n\
             secrets = {{ EMBEDDINGS_API_KEY = {{ env = \"TOOLBOX_TEST_EMBEDDINGS_KEY\" }} }}"
        )
        .into_boxed_str(),
    );
    let (server, _dir) = Server::start(options_with(keys)).await;
    let k = key(&server, "acme").await;
    let put = |id: &'static str, body: Value| {
        let (server, k) = (&server, &k);
        async move {
            send(
                server,
                k,
                Method::PUT,
                &format!("/memories/{id}"),
                Some(body),
            )
            .await
        }
    };

    let (status, body) = put(
        "m1",
        json!({ "content": "about north", "embedding": [1.0, 0.0, 0.0], "metadata": { "tag": "n" } }),
    )
    .await;
    assert_eq!(status, 201, "{body}");
    put(
        "m2",
        json!({ "content": "about east", "embedding": [0.0, 1.0, 0.0] }),
    )
    .await;
    put(
        "m3",
        json!({ "content": "mostly north", "embedding": [0.9, 0.1, 0.0] }),
    )
    .await;
    let (status, _) = put(
        "m3",
        json!({ "content": "mostly north", "embedding": [0.8, 0.2, 0.0] }),
    )
    .await;
    assert_eq!(status, 200, "a replacement");
    assert!(seen.lock().is_empty(), "given embeddings need no endpoint");

    let (status, got) = get(&server, &k, "/memories/m1").await;
    assert_eq!(status, 200, "{got}");
    assert_eq!(got["memory"]["content"], "about north");
    assert_eq!(got["memory"]["metadata"], json!({ "tag": "n" }));
    assert_eq!(got["memory"]["embedding"], json!([1.0, 0.0, 0.0]));

    let (status, found) = post(
        &server,
        &k,
        "/memories/search",
        json!({ "embedding": [1.0, 0.0, 0.0], "limit": 2 }),
    )
    .await;
    assert_eq!(status, 200, "{found}");
    let results = found["results"].as_array().expect("results");
    assert_eq!(results.len(), 2);
    assert_eq!(results[0]["id"], "m1");
    assert!((results[0]["score"].as_f64().unwrap_or(0.0) - 1.0).abs() < 1e-6);
    assert_eq!(results[0]["metadata"], json!({ "tag": "n" }));
    assert_eq!(results[1]["id"], "m3");
    assert!(results[1]["score"].as_f64() < results[0]["score"].as_f64());

    // A text query goes to the embeddings endpoint, with the secret key.
    let (status, found) = post(
        &server,
        &k,
        "/memories/search",
        json!({ "query": "a cat", "limit": 1 }),
    )
    .await;
    assert_eq!(status, 200, "{found}");
    assert_eq!(found["results"][0]["id"], "m1");
    {
        let seen = seen.lock();
        assert_eq!(seen.len(), 1);
        assert_eq!(seen[0].0, format!("Bearer {EMBEDDINGS_KEY}"));
        assert_eq!(seen[0].1, json!({ "input": "a cat" }));
    }
    // A memory without an embedding gets one from the endpoint.
    let (status, _) = put("pet", json!({ "content": "my dog" })).await;
    assert_eq!(status, 201);
    let (_, found) = post(
        &server,
        &k,
        "/memories/search",
        json!({ "query": "dog", "limit": 1 }),
    )
    .await;
    assert_eq!(found["results"][0]["id"], "pet");

    // Errors.
    let (status, _) = post(&server, &k, "/memories/search", json!({ "limit": 3 })).await;
    assert_eq!(status, 400);
    let (status, _) = post(
        &server,
        &k,
        "/memories/search",
        json!({ "embedding": [0.0, 0.0, 0.0] }),
    )
    .await;
    assert_eq!(status, 400);
    let (status, _) = post(
        &server,
        &k,
        "/memories/search",
        json!({ "embedding": [1.0], "limit": 0 }),
    )
    .await;
    assert_eq!(status, 400);
    let (status, _) = put("bad", json!({ "content": 5 })).await;
    assert_eq!(status, 400);
    let (status, _) = put("bad", json!({ "content": "x", "embedding": [] })).await;
    assert_eq!(status, 400);

    let (status, _) = send(&server, &k, Method::DELETE, "/memories/m1", None).await;
    assert_eq!(status, 200);
    let (status, _) = get(&server, &k, "/memories/m1").await;
    assert_eq!(status, 404);
    let (status, _) = send(&server, &k, Method::DELETE, "/memories/m1", None).await;
    assert_eq!(status, 404);
    server.stop().await;
}

#[tokio::test]
async fn a_text_query_without_an_embeddings_endpoint_is_refused_clearly() {
    let (server, _dir) = Server::start(options()).await;
    let k = key(&server, "acme").await;
    let (status, _) = send(
        &server,
        &k,
        Method::PUT,
        "/memories/plain",
        Some(json!({ "content": "kept without an embedding" })),
    )
    .await;
    assert_eq!(status, 201);
    let (status, body) = post(
        &server,
        &k,
        "/memories/search",
        json!({ "query": "anything" }),
    )
    .await;
    assert_eq!(
        (status, error_code(&body)),
        (503, "embeddings_not_configured"),
        "{body}"
    );
    server.stop().await;
}

#[tokio::test]
async fn two_keys_for_two_objects_see_nothing_of_each_other() {
    let (server, _dir) = Server::start(options()).await;
    let acme = key(&server, "acme").await;
    let globex = key(&server, "globex").await;

    post(
        &server,
        &acme,
        "/counters/hits/increment",
        json!({ "amount": 7 }),
    )
    .await;
    post(
        &server,
        &acme,
        "/links",
        json!({ "slug": "home", "url": "https://acme.example/" }),
    )
    .await;
    post(
        &server,
        &acme,
        "/locks/build/acquire",
        json!({ "ttl_ms": 60_000 }),
    )
    .await;
    post(
        &server,
        &acme,
        "/queues/q/jobs",
        json!({ "payload": "secret" }),
    )
    .await;
    send(
        &server,
        &acme,
        Method::PUT,
        "/memories/m",
        Some(json!({ "content": "acme's", "embedding": [1.0] })),
    )
    .await;

    assert_eq!(get(&server, &globex, "/counters/hits").await.0, 404);
    assert_eq!(
        get(&server, &globex, "/counters").await.1,
        json!({ "counters": [] })
    );
    assert_eq!(get(&server, &globex, "/links/home").await.0, 404);
    assert_eq!(
        get(&server, &globex, "/links").await.1,
        json!({ "links": [] })
    );
    assert_eq!(get(&server, &globex, "/locks/build").await.1["held"], false);
    let (status, _) = post(
        &server,
        &globex,
        "/locks/build/acquire",
        json!({ "ttl_ms": 1000 }),
    )
    .await;
    assert_eq!(
        status, 200,
        "another key's lock of the same name is another lock"
    );
    assert_eq!(
        send(&server, &globex, Method::POST, "/queues/q/pop", None)
            .await
            .0,
        204
    );
    assert_eq!(get(&server, &globex, "/memories/m").await.0, 404);
    let (_, found) = post(
        &server,
        &globex,
        "/memories/search",
        json!({ "embedding": [1.0] }),
    )
    .await;
    assert_eq!(found["results"], json!([]));

    // And the first key still sees its own.
    assert_eq!(get(&server, &acme, "/counters/hits").await.1["value"], 7);

    // A revoked key reaches nothing.
    let (_, listed) = call(
        &server,
        Method::GET,
        "/admin/objects/toolbox/acme/keys",
        Some(ADMIN),
        None,
    )
    .await;
    let id = listed["keys"][0]["id"]
        .as_str()
        .expect("a key id")
        .to_string();
    let (status, _) = call(
        &server,
        Method::DELETE,
        &format!("/admin/keys/{id}"),
        Some(ADMIN),
        None,
    )
    .await;
    assert_eq!(status, 200);
    let (status, _, _) = call_with_headers(
        &server,
        Method::GET,
        "/key/counters",
        Some(&acme),
        None,
        &[],
    )
    .await;
    assert_eq!(status, 401);
    server.stop().await;
}

#[tokio::test]
async fn the_toolbox_survives_a_restart() {
    let dir = tempfile::tempdir().expect("temp dir");
    let options = options();
    let server = Server::start_in(dir.path(), &options).await;
    let k = key(&server, "acme").await;
    post(
        &server,
        &k,
        "/counters/c/increment",
        json!({ "amount": 4, "max": 9 }),
    )
    .await;
    post(
        &server,
        &k,
        "/links",
        json!({ "slug": "s", "url": "https://example.com/" }),
    )
    .await;
    let followed = no_redirects()
        .get(server.url("/key/links/s"))
        .bearer_auth(&k)
        .send()
        .await
        .expect("followed");
    assert_eq!(followed.status(), 302);
    let (_, lock) = post(
        &server,
        &k,
        "/locks/l/acquire",
        json!({ "ttl_ms": 600_000 }),
    )
    .await;
    post(
        &server,
        &k,
        "/queues/q/jobs",
        json!({ "payload": { "n": 1 } }),
    )
    .await;
    send(
        &server,
        &k,
        Method::PUT,
        "/memories/m",
        Some(json!({ "content": "kept", "embedding": [0.5, 0.5] })),
    )
    .await;
    server.stop().await;

    let server = Server::start_in(dir.path(), &options).await;
    let (_, counter) = get(&server, &k, "/counters/c").await;
    assert_eq!(
        (counter["value"].clone(), counter["max"].clone()),
        (json!(4), json!(9))
    );
    let (_, stats) = get(&server, &k, "/links/s/stats").await;
    assert_eq!(stats["clicks"], 1, "{stats}");
    let (_, shown) = get(&server, &k, "/locks/l").await;
    assert_eq!(shown["held"], true);
    let (status, _) = post(
        &server,
        &k,
        "/locks/l/release",
        json!({ "token": lock["token"] }),
    )
    .await;
    assert_eq!(status, 200, "the token still holds it");
    let (_, job) = send(&server, &k, Method::POST, "/queues/q/pop", None).await;
    assert_eq!(job["job"]["payload"], json!({ "n": 1 }));
    let (_, memory) = get(&server, &k, "/memories/m").await;
    assert_eq!(memory["memory"]["embedding"], json!([0.5, 0.5]));
    server.stop().await;
}
