//! Micro-benchmarks of the host's hot paths, in process (no HTTP):
//! - `dispatch`: one event to an active object (counter GET, and POST with
//!   `durability = normal` so fsync does not hide the host's own cost);
//! - `activation`: the first event of a new object (create and open its
//!   database, instantiate, run the event), and the first event of a
//!   hibernated one (reopen its database, instantiate, run the event; with
//!   more objects than `max_active` and `max_open_databases`, so each
//!   event also evicts one), and of one whose instance was dropped to make
//!   room but whose database stayed open (instantiate, run the event);
//! - `storage`: opening an existing object database alone;
//! - `sql`: a probe event running one `sql.exec` against one that runs
//!   none; the difference is one round trip across the component boundary.
//!
//!     cargo bench -p podhost --bench hot_paths

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use criterion::{Criterion, criterion_group, criterion_main};
use podhost::bindings::Request;
use podhost::config::{ClassSettings, Limits};
use podhost::storage::{Database, Durability};
use podhost::{Config, Runtime};

fn request(method: &str, path: &str, body: &[u8]) -> Request {
    Request {
        method: method.into(),
        path_with_query: path.into(),
        headers: Vec::new(),
        body: body.to_vec(),
        caller: None,
        client_address: None,
    }
}

fn start(
    tokio: &tokio::runtime::Runtime,
    data: &Path,
    max_active: u32,
    max_open_databases: Option<u32>,
) -> Arc<Runtime> {
    let workspace = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let packages = ["counter", "probe"].map(String::from);
    let guests = podhost::dev::build_guests(
        &workspace,
        &packages,
        &workspace.join("target").join("guests"),
    )
    .expect("building the guests");
    let config = Config {
        data_dir: data.to_path_buf(),
        durability: Durability::Normal,
        max_active,
        max_open_databases,
        classes: podhost::dev::classes(guests),
        ..Config::default()
    };
    let _entered = tokio.enter();
    Runtime::new(config).expect("runtime")
}

const HIBERNATING: u64 = 1024;

fn hot_paths(c: &mut Criterion) {
    let tokio = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio");
    let data = tempfile::tempdir().expect("temp dir");
    // New objects push out the least recently used, as on a server at
    // capacity: with room for all of them, criterion's iterations would
    // run the process out of memory mappings and open files (a few
    // thousand live objects; see os_limits).
    let runtime = start(&tokio, data.path(), 1_000, None);
    let fetch = |class: &'static str, name: String, request: Request| {
        fetch_from(&runtime, class, name, request)
    };

    let mut dispatch = c.benchmark_group("dispatch");
    dispatch.bench_function("counter GET, active object", |b| {
        b.to_async(&tokio)
            .iter(|| fetch("counter", "hot".into(), request("GET", "/", b"")));
    });
    dispatch.bench_function("counter POST, active object, durability normal", |b| {
        b.to_async(&tokio)
            .iter(|| fetch("counter", "hot".into(), request("POST", "/", b"")));
    });
    dispatch.finish();

    let fresh = AtomicU64::new(0);
    c.bench_function("activation: first event of a new object", |b| {
        b.to_async(&tokio).iter(|| {
            let name = format!("new-{}", fresh.fetch_add(1, Ordering::Relaxed));
            fetch("counter", name, request("GET", "/", b""))
        });
    });

    // More objects than may be active or open: visiting them in turn
    // reopens each. Then more than may be active but not more than may be
    // open: visiting them in turn instantiates each around its open
    // database.
    for (label, max_open_databases) in [
        ("activation: first event of a hibernated object", 64),
        (
            "activation: first event of an object whose database stayed open",
            2 * HIBERNATING as u32,
        ),
    ] {
        let small_data = tempfile::tempdir().expect("temp dir");
        let small = start(&tokio, small_data.path(), 64, Some(max_open_databases));
        tokio.block_on(async {
            for n in 0..HIBERNATING {
                fetch_from(
                    &small,
                    "counter",
                    format!("h-{n}"),
                    request("POST", "/", b""),
                )
                .await;
            }
        });
        let turn = AtomicU64::new(0);
        c.bench_function(label, |b| {
            b.to_async(&tokio).iter(|| {
                let n = turn.fetch_add(1, Ordering::Relaxed) % HIBERNATING;
                fetch_from(
                    &small,
                    "counter",
                    format!("h-{n}"),
                    request("GET", "/", b""),
                )
            });
        });
        tokio.block_on(small.shut_down());
    }

    let settings = ClassSettings {
        access: podhost::config::Access::Public,
        durability: Durability::Normal,
        limits: Limits::default(),
        config: Default::default(),
        outbound: Default::default(),
    };
    let existing = data.path().join("bench.sqlite");
    drop(Database::open(&existing, &settings.database()).expect("create"));
    c.bench_function("storage: open an existing object database", |b| {
        b.iter(|| Database::open(&existing, &settings.database()).expect("open"));
    });

    let select = br#"{"query": "SELECT 1"}"#;
    let mut sql = c.benchmark_group("sql");
    sql.bench_function("probe event without SQL", |b| {
        b.to_async(&tokio)
            .iter(|| fetch("probe", "sql".into(), request("POST", "/echo", select)));
    });
    sql.bench_function("probe event with one sql.exec", |b| {
        b.to_async(&tokio)
            .iter(|| fetch("probe", "sql".into(), request("POST", "/sql", select)));
    });
    sql.finish();

    tokio.block_on(runtime.shut_down());
}

async fn fetch_from(runtime: &Arc<Runtime>, class: &str, name: String, request: Request) {
    let response = runtime
        .fetch(class, &name, request)
        .await
        .expect("a response");
    assert!(response.status < 300, "status {}", response.status);
}

criterion_group!(benches, hot_paths);
criterion_main!(benches);
