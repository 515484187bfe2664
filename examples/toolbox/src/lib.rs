//! A toolbox per API key holder (the "stx402 UserDurableObject" pattern):
//! each object is one customer's counters, short links, locks, job queues
//! and vector memories, reached with the customer's API key at `/key`
//! (`access = "key"`). Each family keeps its tables to itself and creates
//! them the first time it is used.
//!
//! Routes below `/key` (see the README, "Examples: toolbox"):
//!
//! - counters: `POST /counters/{name}/increment|decrement|reset`,
//!   `GET /counters[/{name}]`, `DELETE /counters/{name}` ([`counters`]);
//! - links: `POST /links`, `GET /links[/{slug}[/stats]]`,
//!   `DELETE /links/{slug}` ([`links`]);
//! - locks: `POST /locks/{name}/acquire|release|extend`,
//!   `GET /locks/{name}` ([`locks`]);
//! - queues: `POST /queues/{q}/jobs`, `POST /queues/{q}/pop`,
//!   `GET /queues/{q}/jobs?status=`, `POST /jobs/{id}/complete|fail`
//!   ([`queue`]);
//! - memories: `PUT|GET|DELETE /memories/{id}`, `POST /memories/search`
//!   ([`memories`], text queries embedded by [`embeddings`]).
//!
//! Lock expiries and job visibility timeouts share the object's one alarm
//! through `schedule`.

use std::sync::LazyLock;

use podhost_sdk::{Error, Object, Params, Request, Response, Result, Router, schedule};
use serde::de::DeserializeOwned;

mod counters;
mod embeddings;
mod links;
mod locks;
mod memories;
mod queue;

/// Longest name of a counter, lock, queue, link slug or memory id.
const MAX_NAME_BYTES: usize = 256;

struct Toolbox;

static ROUTES: LazyLock<Router<Toolbox>> = LazyLock::new(|| {
    Router::<Toolbox>::new()
        .get("/counters", |_, _, _| counters::list())
        .get("/counters/:name", |_, _, params| {
            counters::show(name(params, "name")?)
        })
        .delete("/counters/:name", |_, _, params| {
            counters::delete(name(params, "name")?)
        })
        .post("/counters/:name/increment", |_, req, params| {
            counters::step(name(params, "name")?, optional_json(&req)?, 1)
        })
        .post("/counters/:name/decrement", |_, req, params| {
            counters::step(name(params, "name")?, optional_json(&req)?, -1)
        })
        .post("/counters/:name/reset", |_, _, params| {
            counters::reset(name(params, "name")?)
        })
        .post("/links", |_, req, _| links::create(req.json()?))
        .get("/links", |_, _, _| links::list())
        .get("/links/:slug", |_, req, params| {
            links::follow(name(params, "slug")?, &req)
        })
        .delete("/links/:slug", |_, _, params| {
            links::delete(name(params, "slug")?)
        })
        .get("/links/:slug/stats", |_, _, params| {
            links::stats(name(params, "slug")?)
        })
        .get("/locks/:name", |_, _, params| {
            locks::show(name(params, "name")?)
        })
        .post("/locks/:name/acquire", |_, req, params| {
            locks::acquire(name(params, "name")?, req.json()?)
        })
        .post("/locks/:name/release", |_, req, params| {
            locks::release(name(params, "name")?, req.json()?)
        })
        .post("/locks/:name/extend", |_, req, params| {
            locks::extend(name(params, "name")?, req.json()?)
        })
        .post("/queues/:queue/jobs", |_, req, params| {
            queue::push(name(params, "queue")?, req.json()?)
        })
        .get("/queues/:queue/jobs", |_, req, params| {
            queue::list(name(params, "queue")?, &req)
        })
        .post("/queues/:queue/pop", |_, req, params| {
            queue::pop(name(params, "queue")?, optional_json(&req)?)
        })
        .post("/jobs/:id/complete", |_, _, params| {
            queue::complete(job_id(params)?)
        })
        .post("/jobs/:id/fail", |_, req, params| {
            queue::fail(job_id(params)?, optional_json(&req)?)
        })
        .post("/memories/search", |_, req, _| {
            memories::search(req.json()?)
        })
        .put("/memories/:id", |_, req, params| {
            memories::put(name(params, "id")?, req.json()?)
        })
        .get("/memories/:id", |_, _, params| {
            memories::show(name(params, "id")?)
        })
        .delete("/memories/:id", |_, _, params| {
            memories::delete(name(params, "id")?)
        })
});

impl Object for Toolbox {
    fn activate() -> Result<Self> {
        Ok(Toolbox)
    }

    fn fetch(&mut self, req: Request) -> Result<Response> {
        ROUTES.handle(self, req)
    }

    /// Frees locks whose TTL ran out and puts jobs whose visibility
    /// timeout passed back in their queue.
    fn alarm(&mut self, _retry_count: u32) -> Result<()> {
        for task in schedule::take_due()? {
            if let Some(lock) = task.name.strip_prefix(locks::TASK_PREFIX) {
                locks::expire_if_due(lock)?;
            } else if let Some(Ok(job)) = task.name.strip_prefix(queue::TASK_PREFIX).map(str::parse)
            {
                queue::time_out_if_due(job)?;
            }
        }
        Ok(())
    }
}

/// Path parameter `param`, at most [`MAX_NAME_BYTES`] long.
fn name<'p>(params: &'p Params, param: &str) -> Result<&'p str> {
    let value = params.get(param)?;
    if value.len() > MAX_NAME_BYTES {
        return Err(Error::bad_request(format!(
            "`{param}` has at most {MAX_NAME_BYTES} bytes"
        )));
    }
    Ok(value)
}

/// The `{id}` of a job; a job id is a number, so anything else names no job.
fn job_id(params: &Params) -> Result<i64> {
    params
        .number("id")?
        .ok_or_else(|| Error::not_found("no such job"))
}

/// The JSON body, or the defaults when the body is empty (the fields of
/// these bodies are all optional).
fn optional_json<T: Default + DeserializeOwned>(req: &Request) -> Result<T> {
    if req.body().iter().all(u8::is_ascii_whitespace) {
        Ok(T::default())
    } else {
        req.json()
    }
}

podhost_sdk::export!(Toolbox);
