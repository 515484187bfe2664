//! Idle objects hibernate and wake with their data.

use std::time::Duration;

use crate::support::{Options, Server, eventually};

#[tokio::test]
async fn idle_objects_hibernate_and_wake_with_their_data() {
    let options = Options {
        idle_timeout: "300ms",
        ..Options::default()
    };
    let (server, _dir) = Server::start(options).await;
    server.post("/objects/counter/sleepy", "").await;
    server.post("/objects/counter/sleepy", "").await;
    assert_eq!(server.metric("podhost_objects_active").await, 1);
    assert_eq!(server.metric("podhost_activations_total").await, 1);

    let hibernated = eventually(Duration::from_secs(10), || async {
        server.metric("podhost_objects_active").await == 0
    })
    .await;
    assert!(hibernated, "the object hibernated after its idle timeout");
    assert_eq!(server.metric("podhost_hibernations_total").await, 1);

    assert_eq!(
        server.get("/objects/counter/sleepy").await,
        (200, "2".into())
    );
    assert_eq!(
        server.metric("podhost_activations_total").await,
        2,
        "it woke as a new instance"
    );
    assert_eq!(server.metric("podhost_objects_active").await, 1);
    server.stop().await;
}
