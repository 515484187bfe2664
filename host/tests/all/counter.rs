//! The counter example: counting, isolation, serialization, restarts. In
//! process (`podhost::testing`): none of this is about the process.

use tokio::task::JoinSet;

use crate::support::{harness, harness_metric, harness_with};

#[tokio::test]
async fn each_object_counts_in_its_own_database() {
    let harness = harness().await;
    let alice = harness.object("counter", "alice");
    for expected in 1..=3 {
        let response = alice.post("/", "").await.expect("a response");
        assert_eq!(
            (response.status.as_u16(), response.text()),
            (200, expected.to_string())
        );
    }
    let response = alice.get("/").await.expect("a response");
    assert_eq!(
        (response.status.as_u16(), response.text()),
        (200, "3".into())
    );
    let bob = harness
        .object("counter", "bob")
        .get("/")
        .await
        .expect("a response");
    assert_eq!((bob.status.as_u16(), bob.text()), (200, "0".into()));

    let databases: Vec<_> = walk(&harness.data_dir().join("objects").join("counter"))
        .into_iter()
        .filter(|p| p.extension().is_some_and(|e| e == "sqlite"))
        .collect();
    assert_eq!(databases.len(), 2, "one database per object: {databases:?}");
    harness.shut_down().await;
}

#[tokio::test]
async fn concurrent_events_on_one_object_run_one_at_a_time() {
    let harness = std::sync::Arc::new(harness().await);
    let mut requests = JoinSet::new();
    for _ in 0..200 {
        let harness = std::sync::Arc::clone(&harness);
        requests.spawn(async move {
            let response = harness
                .object("counter", "busy")
                .post("/", "")
                .await
                .expect("a response");
            assert_eq!(response.status, 200);
            response.text().parse::<u32>().expect("a count")
        });
    }
    let mut seen = requests.join_all().await;
    seen.sort_unstable();
    assert_eq!(
        seen,
        (1..=200).collect::<Vec<_>>(),
        "every value exactly once"
    );
    let busy = harness
        .object("counter", "busy")
        .get("/")
        .await
        .expect("a response");
    assert_eq!((busy.status.as_u16(), busy.text()), (200, "200".into()));
    // Events that queued up while a commit waited for fsync shared the
    // next one.
    let events = harness_metric(&harness, "podhost_events_total").await;
    let commits = harness_metric(&harness, "podhost_commits_total").await;
    assert!(
        commits > 0 && commits * 2 < events,
        "{commits} commits for {events} events"
    );
    let Ok(harness) = std::sync::Arc::try_unwrap(harness) else {
        panic!("every request finished");
    };
    harness.shut_down().await;
}

#[tokio::test]
async fn counts_survive_a_restart() {
    let dir = tempfile::tempdir().expect("temp dir");
    let harness = harness_with(&[], Some(dir.path())).await;
    for _ in 0..5 {
        harness
            .object("counter", "a")
            .post("/", "")
            .await
            .expect("a response");
    }
    for _ in 0..2 {
        harness
            .object("counter", "b")
            .post("/", "")
            .await
            .expect("a response");
    }
    harness.shut_down().await;

    let harness = harness_with(&[], Some(dir.path())).await;
    let count = |name: &'static str| {
        let harness = &harness;
        async move {
            let response = harness
                .object("counter", name)
                .get("/")
                .await
                .expect("a response");
            (response.status.as_u16(), response.text())
        }
    };
    assert_eq!(count("a").await, (200, "5".into()));
    assert_eq!(count("b").await, (200, "2".into()));
    let a = harness
        .object("counter", "a")
        .post("/", "")
        .await
        .expect("a response");
    assert_eq!((a.status.as_u16(), a.text()), (200, "6".into()));
    harness.shut_down().await;
}

fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).expect("readable dir").flatten() {
        let path = entry.path();
        if path.is_dir() {
            files.extend(walk(&path));
        } else {
            files.push(path);
        }
    }
    files
}
