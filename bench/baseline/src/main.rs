//! The benchmarks' baseline: the counter workload of
//! `shared/bench/peer-workerd/worker.js` written by hand with axum and
//! rusqlite, no Wasm: one SQLite file per name (WAL, `synchronous=FULL`,
//! like podhost's default durability), at most `MAX_OPEN` open at once.
//!
//!     baseline PORT DATA_DIR
//!     POST /c/{name}  adds one hit, returns the count
//!     GET  /c/{name}  returns the count

use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use anyhow::Context as _;
use axum::Router;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::routing::get;
use hashlink::LruCache;
use rusqlite::{Connection, OptionalExtension};

/// Open databases kept; the least recently used one closes beyond this.
const MAX_OPEN: usize = 2048;

struct Counters {
    dir: PathBuf,
    open: Mutex<LruCache<String, Arc<Mutex<Connection>>>>,
}

impl Counters {
    fn connection(&self, name: &str) -> rusqlite::Result<Arc<Mutex<Connection>>> {
        let mut open = self.open.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(conn) = open.get(name) {
            return Ok(Arc::clone(conn));
        }
        // Names become file names: keep them to a safe alphabet.
        let file: String = name
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || c == '-' {
                    c
                } else {
                    '_'
                }
            })
            .collect();
        let conn = Connection::open(self.dir.join(format!("{file}.sqlite")))?;
        conn.query_row("PRAGMA journal_mode = WAL", [], |_| Ok(()))?;
        conn.execute_batch(
            "PRAGMA synchronous = FULL;
             CREATE TABLE IF NOT EXISTS c (k TEXT PRIMARY KEY, v INTEGER);",
        )?;
        let conn = Arc::new(Mutex::new(conn));
        open.insert(name.to_string(), Arc::clone(&conn));
        Ok(conn)
    }

    fn count(&self, name: &str, increment: bool) -> rusqlite::Result<i64> {
        let conn = self.connection(name)?;
        let conn = conn.lock().unwrap_or_else(|p| p.into_inner());
        if increment {
            conn.prepare_cached(
                "INSERT INTO c VALUES (?1, 1) ON CONFLICT(k) DO UPDATE SET v = v + 1",
            )?
            .execute(["hits"])?;
        }
        let value: Option<i64> = conn
            .prepare_cached("SELECT v FROM c WHERE k = ?1")?
            .query_row(["hits"], |row| row.get(0))
            .optional()?;
        Ok(value.unwrap_or(0))
    }
}

async fn handle(counters: Arc<Counters>, name: String, increment: bool) -> (StatusCode, String) {
    let result = tokio::task::spawn_blocking(move || counters.count(&name, increment)).await;
    match result {
        Ok(Ok(value)) => (StatusCode::OK, value.to_string()),
        Ok(Err(error)) => (StatusCode::INTERNAL_SERVER_ERROR, error.to_string()),
        Err(error) => (StatusCode::INTERNAL_SERVER_ERROR, error.to_string()),
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let usage = "usage: baseline PORT DATA_DIR";
    let port: u16 = args.next().context(usage)?.parse().context(usage)?;
    let dir = PathBuf::from(args.next().context(usage)?);
    std::fs::create_dir_all(&dir)?;
    let counters = Arc::new(Counters {
        dir,
        open: Mutex::new(LruCache::new(MAX_OPEN)),
    });
    let app = Router::new()
        .route(
            "/c/{name}",
            get(|State(c): State<Arc<Counters>>, Path(name): Path<String>| handle(c, name, false))
                .post(|State(c): State<Arc<Counters>>, Path(name): Path<String>| {
                    handle(c, name, true)
                }),
        )
        .with_state(counters);
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", port)).await?;
    println!("baseline listening on http://{}", listener.local_addr()?);
    axum::serve(listener, app).await?;
    Ok(())
}
