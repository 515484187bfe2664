//! Alarms: durable timers that wake objects, at least once, through
//! hibernation, failures and a SIGKILL of the host.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde_json::Value;

use crate::support::{Options, Server, eventually, parse_json};

async fn alarm_state(server: &Server, name: &str) -> Value {
    let (status, body) = server.get(&format!("/objects/probe/{name}/alarm")).await;
    assert_eq!(status, 200, "{body}");
    parse_json(&body)
}

async fn fires(server: &Server, name: &str) -> Vec<u64> {
    alarm_state(server, name).await["fires"]
        .as_array()
        .expect("fires")
        .iter()
        .map(|f| f.as_u64().expect("retry count"))
        .collect()
}

async fn set(server: &Server, name: &str, query: &str) {
    let (status, body) = server
        .post(&format!("/objects/probe/{name}/alarm/set?{query}"), "")
        .await;
    assert_eq!(status, 200, "{body}");
}

async fn fired(server: &Server, name: &str, count: usize, within: Duration) -> bool {
    eventually(within, || async {
        fires(server, name).await.len() >= count
    })
    .await
}

/// Sets an alarm on another object, due `in_ms` from now, and waits for it
/// to fire: the positive control of a test that checks an alarm did *not*
/// fire. Once a later alarm has fired, the scheduler has looked past the
/// time the unwanted one would have been due, however slow the machine.
async fn witness_fires(server: &Server, witness: &str, in_ms: u64) {
    set(server, witness, &format!("in_ms={in_ms}")).await;
    assert!(
        fired(server, witness, 1, Duration::from_secs(10)).await,
        "the witness alarm {witness} fired"
    );
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock")
        .as_millis() as u64
}

#[tokio::test(flavor = "multi_thread")]
async fn an_alarm_wakes_a_hibernated_object_once_and_clears() {
    let (server, _dir) = Server::start(Options {
        idle_timeout: "200ms",
        ..Options::default()
    })
    .await;
    set(&server, "sleeper", "in_ms=1200").await;
    assert!(alarm_state(&server, "sleeper").await["at_ms"].is_u64());
    assert!(
        server
            .metric_becomes("podhost_objects_active", Duration::from_secs(5), |n| n == 0)
            .await,
        "the object hibernates before its alarm"
    );
    let activations = server.metric("podhost_activations_total").await;
    assert!(
        server
            .metric_becomes("podhost_alarms_fired_total", Duration::from_secs(10), |n| n
                == 1)
            .await,
        "the alarm fired"
    );
    assert!(server.metric("podhost_activations_total").await > activations);
    let state = alarm_state(&server, "sleeper").await;
    assert_eq!(state["fires"], serde_json::json!([0]));
    assert!(
        state["at_ms"].is_null(),
        "a fired alarm is cleared: {state}"
    );
    let lag = server.metric("podhost_alarm_lag_ms_max").await;
    assert!(lag < 5_000, "the lag is recorded: {lag} ms");
    // A second firing would be due by now: wait until an alarm due later
    // has fired, then look.
    witness_fires(&server, "sleeper-witness", 1500).await;
    assert_eq!(fires(&server, "sleeper").await, [0], "it fired once");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn cancelled_and_rolled_back_alarms_never_fire() {
    let (server, _dir) = Server::start(Options::default()).await;
    set(&server, "cancelled", "in_ms=600").await;
    let (status, body) = server
        .post("/objects/probe/cancelled/alarm/cancel", "")
        .await;
    assert_eq!(
        (status, parse_json(&body)["was_set"].as_bool()),
        (200, Some(true))
    );
    let (status, _) = server
        .post(
            "/objects/probe/rolled-back/alarm/set-then-fail?in_ms=300",
            "",
        )
        .await;
    assert_eq!(status, 409);
    assert!(alarm_state(&server, "rolled-back").await["at_ms"].is_null());
    // One due after both that does fire, so the look below is not for
    // nothing (the scheduler has passed their times).
    witness_fires(&server, "kept", 1100).await;
    assert!(fires(&server, "cancelled").await.is_empty());
    assert!(fires(&server, "rolled-back").await.is_empty());
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn an_alarm_in_the_past_fires_at_once_and_handlers_can_reschedule() {
    let (server, _dir) = Server::start(Options::default()).await;
    set(&server, "past", "at_ms=1000").await;
    assert!(fired(&server, "past", 1, Duration::from_secs(5)).await);
    set(&server, "repeating", "in_ms=100&repeat=2&every_ms=200").await;
    assert!(fired(&server, "repeating", 3, Duration::from_secs(10)).await);
    // A fourth run would be due 200 ms after the third: wait for an alarm
    // due well after that.
    witness_fires(&server, "repeating-witness", 600).await;
    assert_eq!(fires(&server, "repeating").await, [0, 0, 0]);
    assert!(alarm_state(&server, "repeating").await["at_ms"].is_null());
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_failing_alarm_is_retried_with_backoff_then_dropped() {
    let (server, _dir) = Server::start(Options {
        alarm_retry_backoff: "100ms",
        ..Options::default()
    })
    .await;
    // Traps twice, then succeeds on the third attempt (retry count 2).
    let started = std::time::Instant::now();
    set(&server, "flaky", "in_ms=0&fail_first=2").await;
    assert!(fired(&server, "flaky", 1, Duration::from_secs(10)).await);
    assert_eq!(fires(&server, "flaky").await, [2]);
    // 100 ms, then 200 ms of backoff.
    assert!(started.elapsed() >= Duration::from_millis(300));
    assert_eq!(server.metric("podhost_alarm_retries_total").await, 2);

    // Never succeeds: 1 attempt + 6 retries (100 ms .. 3.2 s), then dropped.
    set(&server, "doomed", "in_ms=0&fail_first=100").await;
    assert!(
        server
            .metric_becomes(
                "podhost_alarms_dropped_total",
                Duration::from_secs(20),
                |n| n == 1
            )
            .await,
        "the alarm is dropped after its last retry"
    );
    assert_eq!(server.metric("podhost_alarm_retries_total").await, 2 + 6);
    assert!(fires(&server, "doomed").await.is_empty());
    assert!(
        alarm_state(&server, "doomed").await["at_ms"].is_null(),
        "a dropped alarm is cleared"
    );
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn an_alarm_due_while_the_host_was_killed_fires_after_restart() {
    let dir = tempfile::tempdir().expect("temp dir");
    let options = Options::default();
    let server = Server::start_in(dir.path(), &options).await;
    set(&server, "survivor", "in_ms=1000").await;
    server.kill().await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let server = Server::start_in(dir.path(), &options).await;
    assert!(
        server
            .metric_becomes("podhost_alarms_fired_total", Duration::from_secs(10), |n| n
                == 1)
            .await,
        "the alarm fired after the restart"
    );
    assert_eq!(fires(&server, "survivor").await, [0]);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_thousand_alarms_due_in_the_same_second_all_fire() {
    const OBJECTS: usize = 1000;
    let (server, _dir) = Server::start(Options {
        idle_timeout: "1s",
        max_active: 200,
        ..Options::default()
    })
    .await;
    // Lead time for 1,000 sequential requests that each create an object,
    // on a loaded CI machine (8 s was not always enough).
    let at = now_ms() + 25_000;
    let names: Vec<String> = (0..OBJECTS).map(|n| format!("many-{n}")).collect();
    for name in &names {
        set(&server, name, &format!("at_ms={at}")).await;
    }
    assert!(
        now_ms() < at,
        "setting the alarms took too long to test this"
    );
    assert!(
        server
            .metric_becomes("podhost_alarms_fired_total", Duration::from_secs(60), |n| n
                >= OBJECTS as u64)
            .await,
        "fired: {}",
        server.metric("podhost_alarms_fired_total").await
    );
    // At least once allows a repeat only when a firing's commit is lost
    // (a crash): the handler's write and the clearing of the alarm commit
    // together. No host died here, so each object fired exactly once.
    let mut duplicated = Vec::new();
    for name in &names {
        let count = fires(&server, name).await.len();
        assert!(count >= 1, "{name} never fired");
        if count > 1 {
            duplicated.push((name, count));
        }
    }
    assert!(
        duplicated.is_empty(),
        "alarms fired more than once without a crash: {duplicated:?}"
    );
    assert_eq!(
        server.metric("podhost_alarms_fired_total").await,
        OBJECTS as u64,
        "no alarm fired again while the fires were read"
    );
    server.stop().await;
}
