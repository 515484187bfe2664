//! Objects calling objects (`objects.call`, `delete`, `list`) with the
//! `relay` test guest, in process: cycles and depth fail fast, calls to one
//! object are serialized, a callee's failure is the caller's to handle.

use std::time::{Duration, Instant};

use serde_json::{Value, json};
use tokio::task::JoinSet;

use crate::support::guest;
use podhost::testing::{Harness, TestResponse};

async fn relays(change: impl FnOnce(&mut podhost::Config)) -> Harness {
    Harness::builder()
        .class("relay", guest("relay"))
        .config(change)
        .start()
        .await
        .expect("the harness starts")
}

fn hops(names: &[&str]) -> Value {
    let hops: Vec<(&str, &str)> = names.iter().map(|name| ("relay", *name)).collect();
    json!({ "hops": hops })
}

async fn chain(harness: &Harness, from: &str, through: &[&str]) -> TestResponse {
    harness
        .object("relay", from)
        .post_json("/chain", &hops(through))
        .await
        .expect("a response")
}

fn json_of(response: &TestResponse) -> Value {
    response.json().unwrap_or_else(|_| json!(response.text()))
}

/// Each object still takes an event, and counts it.
async fn all_usable(harness: &Harness, names: &[&str]) {
    for name in names {
        let response = harness
            .object("relay", name)
            .post("/count", "")
            .await
            .expect("a response");
        assert_eq!(
            response.status,
            200,
            "{name} is usable: {}",
            response.text()
        );
    }
}

#[tokio::test]
async fn cycles_of_two_and_three_fail_fast_naming_the_chain() {
    let harness = relays(|_| {}).await;
    for (from, through, named) in [
        ("a", vec!["b", "a"], "relay/a -> relay/b -> relay/a"),
        (
            "c",
            vec!["d", "e", "c"],
            "relay/c -> relay/d -> relay/e -> relay/c",
        ),
        ("f", vec!["f"], "relay/f -> relay/f"),
    ] {
        let started = Instant::now();
        let response = chain(&harness, from, &through).await;
        assert!(
            started.elapsed() < Duration::from_secs(2),
            "well under the call timeout: {:?}",
            started.elapsed()
        );
        let body = json_of(&response);
        assert_eq!(response.status, 508, "{body}");
        assert_eq!(body["error"], "cycle", "{body}");
        let message = body["message"].as_str().unwrap_or_default();
        assert!(message.contains(named), "{message}");
    }
    all_usable(&harness, &["a", "b", "c", "d", "e", "f"]).await;
    harness.shut_down().await;
}

#[tokio::test]
async fn two_chains_that_meet_fail_fast_instead_of_deadlocking() {
    let harness = std::sync::Arc::new(relays(|_| {}).await);
    // b sleeps, then calls a; meanwhile a (from another client) calls b
    // and waits for it: b's call would wait for a forever.
    let first = {
        let harness = std::sync::Arc::clone(&harness);
        tokio::spawn(async move {
            let body = json!({ "hops": [["relay", "a"]], "sleep_ms": 400 });
            harness
                .object("relay", "b")
                .post_json("/chain", &body)
                .await
                .expect("a response")
        })
    };
    tokio::time::sleep(Duration::from_millis(100)).await;
    let started = Instant::now();
    let second = chain(&harness, "a", &["b"]).await;
    let first = first.await.expect("the first request");
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "{:?}",
        started.elapsed()
    );
    let first_body = json_of(&first);
    assert_eq!(first.status, 508, "{first_body}");
    assert!(
        first_body["message"]
            .as_str()
            .is_some_and(|m| m.contains("relay/b -> relay/a -> relay/b")),
        "{first_body}"
    );
    assert_eq!(second.status, 200, "{}", second.text());
    all_usable(&harness, &["a", "b"]).await;
}

#[tokio::test]
async fn a_hundred_callers_are_served_one_at_a_time() {
    let harness = std::sync::Arc::new(relays(|_| {}).await);
    let mut calls = JoinSet::new();
    for caller in 0..100 {
        let harness = std::sync::Arc::clone(&harness);
        calls.spawn(async move {
            let response = harness
                .object("relay", &format!("caller-{caller}"))
                .post("/call/relay/hub?path=/count", "")
                .await
                .expect("a response");
            assert_eq!(response.status, 200, "{}", response.text());
            response.text().parse::<u32>().expect("a count")
        });
    }
    let mut seen = calls.join_all().await;
    seen.sort_unstable();
    assert_eq!(seen, (1..=100).collect::<Vec<_>>(), "each count once");
    let total = harness
        .object("relay", "hub")
        .get("/count")
        .await
        .expect("a response");
    assert_eq!(total.text(), "100");
}

#[tokio::test]
async fn a_callee_trap_is_the_callers_to_handle() {
    let harness = relays(|_| {}).await;
    let caller = harness.object("relay", "caller");
    let response = caller
        .post("/call/relay/trapper?path=/trap", "")
        .await
        .expect("a response");
    let body = json_of(&response);
    assert_eq!(body["error"], "failed", "{body}");
    assert_eq!(body["failed_status"], 500, "{body}");
    let mine = caller.get("/mine").await.expect("a response");
    assert_eq!(mine.text(), "1", "the caller's own write stays");

    let response = caller
        .post("/call/relay/trapper?path=/trap&fail=1", "")
        .await
        .expect("a response");
    assert_eq!(response.status, 500, "{}", response.text());
    let mine = caller.get("/mine").await.expect("a response");
    assert_eq!(mine.text(), "1", "a caller that fails rolls its write back");
    all_usable(&harness, &["trapper", "caller"]).await;
}

#[tokio::test]
async fn chains_deeper_than_the_limit_fail() {
    let harness = relays(|config| config.limits.max_call_depth = 4).await;
    let response = chain(&harness, "d0", &["d1", "d2", "d3", "d4"]).await;
    assert_eq!(response.status, 200, "4 calls deep: {}", response.text());
    assert_eq!(json_of(&response)["at"], "relay/d4");
    let response = chain(&harness, "e0", &["e1", "e2", "e3", "e4", "e5"]).await;
    let body = json_of(&response);
    assert_eq!(
        (response.status.as_u16(), &body["error"]),
        (508, &json!("depth")),
        "{body}"
    );
}

#[tokio::test]
async fn the_default_depth_is_sixteen() {
    let harness = relays(|_| {}).await;
    let names: Vec<String> = (1..=17).map(|n| format!("n{n}")).collect();
    let names: Vec<&str> = names.iter().map(String::as_str).collect();
    let response = chain(&harness, "n0", &names[..16]).await;
    assert_eq!(response.status, 200, "{}", response.text());
    let response = chain(&harness, "m0", &names[..]).await;
    // n1..n16 already exist: fine, a chain is about calls, not objects.
    assert_eq!(json_of(&response)["error"], "depth", "{}", response.text());
}

#[tokio::test]
async fn unknown_classes_and_bad_arguments_are_refused() {
    let harness = relays(|_| {}).await;
    let caller = harness.object("relay", "caller");
    let response = caller.post("/call/nope/x", "").await.expect("a response");
    let body = json_of(&response);
    assert_eq!(
        (response.status.as_u16(), &body["error"]),
        (404, &json!("no-such-class")),
        "{body}"
    );
    let response = caller
        .post("/call/relay/x?path=no-slash", "")
        .await
        .expect("a response");
    assert_eq!(
        json_of(&response)["error"],
        "invalid",
        "{}",
        response.text()
    );
}

#[tokio::test]
async fn a_slow_callee_times_out_and_still_commits() {
    let harness = relays(|config| config.limits.call_timeout = Duration::from_millis(300)).await;
    let started = Instant::now();
    let response = harness
        .object("relay", "impatient")
        .post("/call/relay/slow?path=/sleep%3Fms%3D1500", "")
        .await
        .expect("a response");
    assert!(
        started.elapsed() < Duration::from_millis(1200),
        "{:?}",
        started.elapsed()
    );
    let body = json_of(&response);
    assert_eq!(
        (response.status.as_u16(), &body["error"]),
        (504, &json!("timeout")),
        "{body}"
    );
    let slow = harness.object("relay", "slow");
    let count = slow.get("/count").await.expect("a response");
    assert_eq!(count.text(), "1", "the callee's event ran to its end");
}

#[tokio::test]
async fn the_callee_sees_the_calling_object() {
    let harness = relays(|_| {}).await;
    let response = harness
        .object("relay", "asker")
        .post("/call/relay/answerer?path=/caller", "")
        .await
        .expect("a response");
    let text = response.text();
    assert!(
        text.contains("Object") && text.contains("\"asker\""),
        "{text}"
    );
    let response = harness
        .object("relay", "answerer")
        .get("/caller")
        .await
        .expect("a response");
    assert_eq!(response.text(), "None", "a client is no object");
}

#[tokio::test]
async fn list_pages_names_and_delete_removes_them() {
    let harness = relays(|_| {}).await;
    for name in ["p-1", "p-2", "p-3", "q-1"] {
        all_usable(&harness, &[name]).await;
    }
    let lister = harness.object("relay", "lister");
    let page = json_of(
        &lister
            .get("/list/relay?prefix=p-&limit=2")
            .await
            .expect("a page"),
    );
    assert_eq!(page["names"], json!(["p-1", "p-2"]), "{page}");
    assert_eq!(page["cursor"], "p-2", "{page}");
    let page = json_of(
        &lister
            .get("/list/relay?prefix=p-&limit=2&cursor=p-2")
            .await
            .expect("a page"),
    );
    assert_eq!(page, json!({ "names": ["p-3"], "cursor": null }));

    let deleted = lister
        .delete("/object/relay/p-2")
        .await
        .expect("a response");
    assert_eq!(deleted.text(), "true");
    let page = json_of(&lister.get("/list/relay?prefix=p-").await.expect("a page"));
    assert_eq!(page["names"], json!(["p-1", "p-3"]), "{page}");
    let fresh = harness
        .object("relay", "p-2")
        .get("/count")
        .await
        .expect("a response");
    assert_eq!(fresh.text(), "0", "a deleted object starts afresh");
}

#[tokio::test]
async fn an_object_can_delete_itself_once_its_event_commits() {
    let harness = relays(|_| {}).await;
    let object = harness.object("relay", "doomed");
    all_usable(&harness, &["doomed"]).await;
    let deleted = object
        .delete("/object/relay/doomed")
        .await
        .expect("a response");
    assert_eq!(deleted.text(), "true");
    let count = object.get("/count").await.expect("a response");
    assert_eq!(count.text(), "0", "its data is gone");
}

#[tokio::test]
async fn a_call_wakes_a_hibernated_callee() {
    let harness = relays(|config| config.idle_timeout = Duration::from_millis(200)).await;
    all_usable(&harness, &["sleeper"]).await;
    let hibernated = crate::support::eventually(Duration::from_secs(5), || async {
        harness.runtime().active_objects() == 0
    })
    .await;
    assert!(hibernated, "the callee hibernates");
    let response = harness
        .object("relay", "waker")
        .post("/call/relay/sleeper?path=/count", "")
        .await
        .expect("a response");
    assert_eq!(
        (response.status.as_u16(), response.text()),
        (200, "2".into())
    );
}

#[tokio::test]
async fn a_caller_stopped_while_waiting_leaves_the_callee_to_finish() {
    let harness = relays(|config| {
        config.limits.max_wall_time_per_event = Duration::from_millis(400);
    })
    .await;
    // The caller spends 250 ms, then waits for a callee that takes 300 ms
    // (within its own 400): the caller's event is stopped while it waits.
    let started = Instant::now();
    let response = harness
        .object("relay", "hasty")
        .post(
            "/call/relay/slowpoke?sleep_ms=250&path=/sleep%3Fms%3D300",
            "",
        )
        .await
        .expect("a response");
    assert!(
        started.elapsed() < Duration::from_millis(1500),
        "{:?}",
        started.elapsed()
    );
    let body = json_of(&response);
    assert_eq!(response.status, 500, "{body}");
    assert_eq!(body["error"]["code"], "wall_time_exceeded", "{body}");
    let mine = harness
        .object("relay", "hasty")
        .get("/mine")
        .await
        .expect("a response");
    assert_eq!(mine.text(), "0", "the stopped caller kept nothing");
    let count = harness
        .object("relay", "slowpoke")
        .get("/count")
        .await
        .expect("a response");
    assert_eq!(
        count.text(),
        "1",
        "the callee's event ran to its end and committed"
    );
    all_usable(&harness, &["hasty", "slowpoke"]).await;
    harness.shut_down().await;
}

#[tokio::test]
async fn an_object_reaches_only_the_classes_of_its_own_tenant() {
    use podhost::tenants::{Principal, QuotaOverrides};

    let harness = Harness::builder()
        .class("relay", guest("relay"))
        .class("foreign", guest("relay"))
        .class("sibling", guest("relay"))
        .start()
        .await
        .expect("the harness starts");
    let tenants = harness.runtime().tenants();
    tenants
        .create("acme", QuotaOverrides::default())
        .expect("a tenant");
    let acme = Principal::Tenant("acme".into());
    for class in ["foreign", "sibling"] {
        tenants
            .claim_class(&acme, class, false)
            .expect("acme's class");
    }
    for (from, to) in [("relay", "foreign"), ("foreign", "relay")] {
        let response = harness
            .object(from, "x")
            .post(&format!("/call/{to}/y"), "")
            .await
            .expect("a response");
        let body = json_of(&response);
        assert_eq!(
            (response.status.as_u16(), &body["error"]),
            (403, &json!("not-allowed")),
            "{from} -> {to}: {body}"
        );
        let listed = harness
            .object(from, "x")
            .get(&format!("/list/{to}"))
            .await
            .expect("a response");
        assert_eq!(
            json_of(&listed)["error"],
            "not-allowed",
            "{from} lists {to}"
        );
    }
    let response = harness
        .object("foreign", "x")
        .post("/call/sibling/y", "")
        .await
        .expect("a response");
    assert_eq!(response.status, 200, "same tenant: {}", response.text());
    harness.shut_down().await;
}
