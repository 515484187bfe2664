//! A test guest for calls between objects (`objects.call`, `delete`,
//! `list`): chains of calls, a counter many objects bump, writes before a
//! call, a trap and a sleep to fail or slow a callee.
//!
//! A call that fails answers with the `CallError`'s status and
//! `{"error": kind, "message"}`, so a test sees exactly what the caller got.

use std::time::{Duration, Instant};

use podhost_sdk::objects::{self, CallError};
use podhost_sdk::{Error, Method, Object, Request, Response, Result, context, kv};
use serde::Deserialize;
use serde_json::json;

struct Relay;

#[derive(Deserialize)]
struct Chain {
    /// Who to call next, then who that one calls, and so on.
    hops: Vec<(String, String)>,
    /// Sleep this long before calling (this object only).
    #[serde(default)]
    sleep_ms: u64,
}

fn kind(error: &CallError) -> &'static str {
    match error {
        CallError::Cycle(_) => "cycle",
        CallError::Depth => "depth",
        CallError::Timeout => "timeout",
        CallError::Failed(_) => "failed",
        CallError::NoSuchClass => "no-such-class",
        CallError::NotAllowed => "not-allowed",
        CallError::Invalid(_) => "invalid",
    }
}

/// What the caller got, as an answer of its own.
fn failure(error: &CallError) -> Response {
    let failed_status = match error {
        CallError::Failed(failure) => Some(failure.status),
        _ => None,
    };
    Response::json(&json!({
        "error": kind(error),
        "message": error.message(),
        "failed_status": failed_status,
    }))
    .with_status(error.status())
}

fn me() -> String {
    let me = context::this_object();
    format!("{}/{}", me.class, me.name)
}

fn bump(key: &str) -> Result<i64> {
    let count = kv::get::<i64>(key)?.unwrap_or(0) + 1;
    kv::put(key, &count)?;
    Ok(count)
}

impl Object for Relay {
    fn activate() -> Result<Self> {
        Ok(Relay)
    }

    fn fetch(&mut self, req: Request) -> Result<Response> {
        match (req.method().clone(), req.segments().as_slice()) {
            (Method::POST, ["chain"]) => {
                let chain: Chain = req.json()?;
                bump("hops")?;
                std::thread::sleep(Duration::from_millis(chain.sleep_ms));
                let Some(((class, name), rest)) = chain.hops.split_first() else {
                    return Ok(Response::json(&json!({ "at": me() })));
                };
                let body = serde_json::to_vec(&json!({ "hops": rest }))?;
                match objects::get(class, name).call(Method::POST, "/chain", body) {
                    Ok(answer) => Ok(answer),
                    Err(error) => Ok(failure(&error)),
                }
            }
            (Method::POST, ["count"]) => Ok(Response::json(&bump("count")?)),
            (Method::GET, ["count"]) => Ok(Response::json(&kv::get::<i64>("count")?.unwrap_or(0))),
            (Method::GET, ["mine"]) => Ok(Response::json(&kv::get::<i64>("mine")?.unwrap_or(0))),
            (Method::POST, ["call", class, name]) => {
                // A write of the caller's own before the call.
                bump("mine")?;
                let path = req.query_param("path").unwrap_or_else(|| "/count".into());
                let sleep_ms = req.query_param("sleep_ms").and_then(|ms| ms.parse().ok());
                std::thread::sleep(Duration::from_millis(sleep_ms.unwrap_or(0)));
                match objects::get(class, name).call(Method::POST, &path, Vec::new()) {
                    Ok(answer) => Ok(answer),
                    Err(error) if req.query_param("fail").as_deref() == Some("1") => {
                        Err(error.into_error())
                    }
                    Err(error) => Ok(failure(&error)),
                }
            }
            (Method::POST, ["trap"]) => panic!("the relay traps on purpose"),
            (Method::POST, ["sleep"]) => {
                let ms = req
                    .query_param("ms")
                    .and_then(|ms| ms.parse().ok())
                    .unwrap_or(0);
                std::thread::sleep(Duration::from_millis(ms));
                Ok(Response::json(&bump("count")?))
            }
            (Method::POST, ["bench", class, name]) => bench(class, name, &req),
            (_, ["caller"]) => Ok(Response::text(format!("{:?}", req.caller()))),
            (Method::DELETE, ["object", class, name]) => match objects::delete(class, name) {
                Ok(existed) => Ok(Response::json(&existed)),
                Err(error) => Ok(failure(&error)),
            },
            (Method::GET, ["list", class]) => {
                let prefix = req.query_param("prefix").unwrap_or_default();
                let limit = req
                    .query_param("limit")
                    .and_then(|limit| limit.parse().ok())
                    .unwrap_or(100);
                let cursor = req.query_param("cursor");
                match objects::list(class, &prefix, limit, cursor.as_deref()) {
                    Ok(page) => Ok(Response::json(&json!({
                        "names": page.names,
                        "cursor": page.cursor,
                    }))),
                    Err(error) => Ok(failure(&error)),
                }
            }
            _ => Err(Error::not_found("no such route")),
        }
    }
}

/// `n` calls in a row to `class/name` (`method path`, `GET /count` by
/// default), timed here: `{"n", "p50_us", "p99_us", "calls_per_s"}`.
fn bench(class: &str, name: &str, req: &Request) -> Result<Response> {
    let n: usize = req
        .query_param("n")
        .and_then(|n| n.parse().ok())
        .unwrap_or(1000)
        .clamp(1, 100_000);
    let method = Method::from_bytes(req.query_param("method").unwrap_or("GET".into()).as_bytes())
        .map_err(|_| Error::bad_request("invalid method"))?;
    let path = req.query_param("path").unwrap_or_else(|| "/count".into());
    let callee = objects::get(class, name);
    let mut nanos = Vec::with_capacity(n);
    let started = Instant::now();
    for _ in 0..n {
        let call = Instant::now();
        let answer = callee
            .call(method.clone(), &path, Vec::new())
            .map_err(CallError::into_error)?;
        nanos.push(call.elapsed().as_nanos() as u64);
        if !answer.status().is_success() {
            return Err(Error::internal(format!(
                "the callee answered {}",
                answer.status()
            )));
        }
    }
    let total = started.elapsed();
    nanos.sort_unstable();
    let micros = |at: usize| nanos[at.min(n - 1)] as f64 / 1000.0;
    Ok(Response::json(&json!({
        "n": n,
        "p50_us": micros(n / 2),
        "p99_us": micros(n * 99 / 100),
        "calls_per_s": n as f64 / total.as_secs_f64(),
    })))
}

podhost_sdk::export!(Relay);
