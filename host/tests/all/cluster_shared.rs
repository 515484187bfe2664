//! Shared state in a cluster: in process, how a node loads a version it
//! learns of from the catalog: its component fetched from the store and
//! checked.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde_json::json;

use podhost::storage::Durability;
use podhost::storage::catalog::Catalog;
use podhost::storage::shared::RowChange;
use podhost::storage::versions::NewVersion;

use crate::support::guest_variant;

/// How long a change may take to reach another node here; the issue
/// asks for a second, which the printed times show.
const WITHIN: Duration = Duration::from_secs(10);

/// Polls `check` until it holds, for at most [`WITHIN`]; how long it took.
async fn within<F, Fut>(what: &str, mut check: F) -> Duration
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let started = Instant::now();
    while started.elapsed() < WITHIN {
        if check().await {
            let took = started.elapsed();
            println!("{what}: {took:?}");
            return took;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("{what}: not within {WITHIN:?}");
}

/// The catalog of a harness's data directory, through a connection of its
/// own: what another node's rows, once applied here, look like.
fn other_nodes_record(data: &Path, version: u64, wasm: &[u8]) -> RowChange {
    let catalog = Catalog::open(data, Durability::Normal).expect("the catalog");
    let hash = podhost::deploy::hash(wasm);
    catalog
        .add_version(&NewVersion {
            class: "versioned",
            version,
            hash: &hash,
            size_bytes: wasm.len() as u64,
            deployed_by: "admin",
            config: "{}",
            migrations: None,
        })
        .expect("recorded");
    RowChange {
        table: "class_versions",
        key: vec![json!("versioned"), json!(version)],
        row: Some(
            serde_json::from_value(
                json!({ "class": "versioned", "version": version, "hash": hash, "active": 1 }),
            )
            .expect("a row"),
        ),
    }
}

/// Where a store keeps component `wasm` (`_catalog/classes/<sha256>.wasm`).
fn stored_component(store: &Path, wasm: &[u8]) -> PathBuf {
    store
        .join("_catalog")
        .join("classes")
        .join(format!("{}.wasm", podhost::deploy::hash(wasm)))
}

#[tokio::test]
async fn a_version_recorded_elsewhere_is_served_here_with_its_component_fetched_and_checked() {
    let store = tempfile::tempdir().expect("a store");
    let url = format!("file://{}", store.path().display());
    let harness = podhost::testing::Harness::builder()
        .class("versioned", guest_variant("versioned", None))
        .config(|config| config.replication.url = Some(url))
        .start()
        .await
        .expect("the harness starts");
    let runtime = harness.runtime();
    let object = harness.object("versioned", "kept");
    let said = async || object.get("/version").await.expect("an answer").text();
    assert_eq!(said().await, "v1");

    // v2, recorded by another node whose upload was tampered with: this
    // node fetches it, refuses it, and keeps serving v1.
    let v2 = std::fs::read(guest_variant("versioned", Some("v2"))).expect("v2");
    let stored = stored_component(store.path(), &v2);
    std::fs::create_dir_all(stored.parent().expect("a folder")).expect("the folder");
    let mut tampered = v2.clone();
    tampered.extend_from_slice(b"\0");
    std::fs::write(&stored, &tampered).expect("stored");
    let change = other_nodes_record(harness.data_dir(), 2, &v2);
    runtime.shared_rows_applied(vec![change.clone()]);
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(
        said().await,
        "v1",
        "a component that fails its hash is not run"
    );
    assert_eq!(runtime.class("versioned").expect("served").version(), 1);

    // The right bytes: taken on the next try (or the next change).
    std::fs::write(&stored, &v2).expect("stored");
    runtime.shared_rows_applied(vec![change.clone()]);
    within("a version recorded elsewhere, served here", || async {
        said().await == "v2"
    })
    .await;
    assert!(
        harness
            .data_dir()
            .join("classes")
            .join(format!("{}.wasm", podhost::deploy::hash(&v2)))
            .exists(),
        "kept in the data directory"
    );
    // Told again (as the node that wrote it is): nothing to do.
    let served = runtime.class("versioned").expect("served");
    runtime.shared_rows_applied(vec![change]);
    tokio::time::sleep(Duration::from_millis(300)).await;
    let still = runtime.class("versioned").expect("served");
    assert!(std::sync::Arc::ptr_eq(&served, &still), "not loaded again");

    // Removed elsewhere: no longer served.
    Catalog::open(harness.data_dir(), Durability::Normal)
        .expect("the catalog")
        .remove_versions("versioned")
        .expect("removed");
    runtime.shared_rows_applied(vec![RowChange {
        table: "class_versions",
        key: vec![json!("versioned"), json!(1)],
        row: None,
    }]);
    within("a class removed elsewhere, gone here", || async {
        runtime.class("versioned").is_err()
    })
    .await;
    harness.shut_down().await;
}
