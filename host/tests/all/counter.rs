//! The counter example: counting, isolation, serialization, restarts.

use tokio::task::JoinSet;

use crate::support::{Options, Server};

#[tokio::test]
async fn each_object_counts_in_its_own_database() {
    let (server, _dir) = Server::start(Options::default()).await;
    for expected in 1..=3 {
        assert_eq!(
            server.post("/objects/counter/alice", "").await,
            (200, expected.to_string())
        );
    }
    assert_eq!(
        server.get("/objects/counter/alice").await,
        (200, "3".into())
    );
    assert_eq!(server.get("/objects/counter/bob").await, (200, "0".into()));

    let databases: Vec<_> = walk(&server.data_dir().join("objects").join("counter"))
        .into_iter()
        .filter(|p| p.extension().is_some_and(|e| e == "sqlite"))
        .collect();
    assert_eq!(databases.len(), 2, "one database per object: {databases:?}");
    server.stop().await;
}

#[tokio::test]
async fn concurrent_events_on_one_object_run_one_at_a_time() {
    let (server, _dir) = Server::start(Options::default()).await;
    let mut requests = JoinSet::new();
    for _ in 0..200 {
        let client = server.client.clone();
        let url = server.url("/objects/counter/busy");
        requests.spawn(async move {
            let response = client.post(url).send().await.expect("request sent");
            assert_eq!(response.status(), 200);
            response
                .text()
                .await
                .expect("body")
                .parse::<u32>()
                .expect("a count")
        });
    }
    let mut seen = requests.join_all().await;
    seen.sort_unstable();
    assert_eq!(
        seen,
        (1..=200).collect::<Vec<_>>(),
        "every value exactly once"
    );
    assert_eq!(
        server.get("/objects/counter/busy").await,
        (200, "200".into())
    );
    // Events that queued up while a commit waited for fsync shared the
    // next one.
    let events = server.metric("podhost_events_total").await;
    let commits = server.metric("podhost_commits_total").await;
    assert!(
        commits > 0 && commits * 2 < events,
        "{commits} commits for {events} events"
    );
    server.stop().await;
}

#[tokio::test]
async fn counts_survive_a_restart() {
    let dir = tempfile::tempdir().expect("temp dir");
    let options = Options::default();
    let server = Server::start_in(dir.path(), &options).await;
    for _ in 0..5 {
        server.post("/objects/counter/a", "").await;
    }
    for _ in 0..2 {
        server.post("/objects/counter/b", "").await;
    }
    server.stop().await;

    let server = Server::start_in(dir.path(), &options).await;
    assert_eq!(server.get("/objects/counter/a").await, (200, "5".into()));
    assert_eq!(server.get("/objects/counter/b").await, (200, "2".into()));
    assert_eq!(
        server.post("/objects/counter/a", "").await,
        (200, "6".into())
    );
    server.stop().await;
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
