//! The reference counter: the same workload as the Durable Object in
//! `shared/bench/peer-workerd/worker.js`, for side-by-side benchmarks.
//!
//! `POST /objects/counter/{name}` adds one hit and returns the new count;
//! `GET` returns the count (0 for a new object).

use podhost_sdk::{Method, Object, Request, Response, Result, sql};

struct Counter;

impl Object for Counter {
    fn activate() -> Result<Self> {
        sql::script("CREATE TABLE IF NOT EXISTS c (k TEXT PRIMARY KEY, v INTEGER)")?;
        Ok(Counter)
    }

    fn fetch(&mut self, req: Request) -> Result<Response> {
        if req.method() == Method::POST {
            sql::execute(
                "INSERT INTO c VALUES (?, 1) ON CONFLICT(k) DO UPDATE SET v = v + 1",
                ("hits",),
            )?;
        }
        let hits: Option<i64> = sql::query_one("SELECT v FROM c WHERE k = ?", ("hits",))?;
        Ok(Response::text(hits.unwrap_or(0).to_string()))
    }
}

podhost_sdk::export!(Counter);
