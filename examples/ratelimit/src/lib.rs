//! A token bucket per key: each object is one bucket, so every `take` on
//! a key is serialized by the object and no two clients spend the same
//! token.
//!
//! Routes below `/objects/ratelimit/{key}`:
//!
//! - `POST /take?cost=1`: takes `cost` tokens (1 by default). `200
//!   {"remaining", "capacity"}` when there were enough; otherwise `429`
//!   with `Retry-After` (seconds until enough have refilled) and
//!   `{"error", "remaining", "retry_after_ms"}`, taking none.
//! - `GET /`: the bucket, without taking anything.
//! - `PUT /` with `{"capacity", "refill_per_second"}`: resizes the bucket
//!   (the defaults are 10 tokens, 1 a second); a new bucket starts full.
//!
//! Other objects use it through `objects.call`, as `examples/game` does to
//! rate-limit moves per lobby.

use podhost_sdk::{
    Error, HeaderName, HeaderValue, Method, Object, Request, Response, Result, StatusCode, kv, time,
};
use serde::{Deserialize, Serialize};
use serde_json::json;

const DEFAULT_CAPACITY: f64 = 10.0;
const DEFAULT_REFILL_PER_SECOND: f64 = 1.0;
/// Largest capacity and cost: keeps the arithmetic exact in an `f64`.
const MAX_TOKENS: f64 = 1e12;

struct RateLimit;

/// The bucket, as stored: tokens at `updated_ms`, refilling since.
#[derive(Serialize, Deserialize)]
struct Bucket {
    capacity: f64,
    refill_per_second: f64,
    tokens: f64,
    updated_ms: i64,
}

#[derive(Deserialize)]
struct Resize {
    capacity: f64,
    refill_per_second: f64,
}

impl Bucket {
    fn load() -> Result<Bucket> {
        let now = time::now_ms();
        let mut bucket = kv::get::<Bucket>("bucket")?.unwrap_or(Bucket {
            capacity: DEFAULT_CAPACITY,
            refill_per_second: DEFAULT_REFILL_PER_SECOND,
            tokens: DEFAULT_CAPACITY,
            updated_ms: now,
        });
        bucket.refill(now);
        Ok(bucket)
    }

    /// Adds what refilled since `updated_ms`, up to the capacity.
    fn refill(&mut self, now: i64) {
        let elapsed = (now - self.updated_ms).max(0) as f64 / 1000.0;
        self.tokens = (self.tokens + elapsed * self.refill_per_second).min(self.capacity);
        self.updated_ms = now;
    }

    fn save(&self) -> Result<()> {
        Ok(kv::put("bucket", self)?)
    }

    /// Milliseconds until `cost` tokens are there.
    fn wait_ms(&self, cost: f64) -> i64 {
        if self.refill_per_second <= 0.0 {
            return i64::MAX;
        }
        (((cost - self.tokens) / self.refill_per_second) * 1000.0).ceil() as i64
    }

    fn view(&self) -> serde_json::Value {
        json!({
            "remaining": self.tokens.floor() as i64,
            "capacity": self.capacity,
            "refill_per_second": self.refill_per_second,
        })
    }
}

impl Object for RateLimit {
    fn activate() -> Result<Self> {
        Ok(RateLimit)
    }

    fn fetch(&mut self, req: Request) -> Result<Response> {
        match (req.method().clone(), req.segments().as_slice()) {
            (Method::POST, ["take"]) => take(&req),
            (Method::GET, []) => Ok(Response::json(&Bucket::load()?.view())),
            (Method::PUT, []) => resize(&req),
            _ => Err(Error::not_found("no such route")),
        }
    }
}

fn take(req: &Request) -> Result<Response> {
    let cost = match req.query_param("cost") {
        None => 1.0,
        Some(cost) => {
            cost.parse::<u64>()
                .map_err(|_| Error::bad_request("cost must be a whole number"))? as f64
        }
    };
    let mut bucket = Bucket::load()?;
    if cost > bucket.capacity || cost > MAX_TOKENS {
        return Err(Error::bad_request(format!(
            "cost {cost} is more than the bucket holds ({})",
            bucket.capacity
        )));
    }
    if bucket.tokens < cost {
        let wait_ms = bucket.wait_ms(cost);
        let seconds = (wait_ms.saturating_add(999) / 1000).max(1);
        let body = json!({
            "error": "rate limited",
            "remaining": bucket.tokens.floor() as i64,
            "retry_after_ms": wait_ms,
        });
        // Nothing taken, nothing to keep: the refill is recomputed anyway.
        return Ok(Response::json(&body)
            .with_status(StatusCode::TOO_MANY_REQUESTS)
            .with_header(
                HeaderName::from_static("retry-after"),
                HeaderValue::from(seconds),
            ));
    }
    bucket.tokens -= cost;
    bucket.save()?;
    Ok(Response::json(&bucket.view()))
}

fn resize(req: &Request) -> Result<Response> {
    let resize: Resize = req.json()?;
    let valid = |n: f64| n.is_finite() && (0.0..=MAX_TOKENS).contains(&n);
    if !valid(resize.capacity) || resize.capacity < 1.0 || !valid(resize.refill_per_second) {
        return Err(Error::bad_request(
            "capacity must be 1 to 1e12 and refill_per_second 0 to 1e12",
        ));
    }
    // A new bucket starts full at its new size; a used one keeps what it
    // has, up to that.
    let new = kv::get::<Bucket>("bucket")?.is_none();
    let mut bucket = Bucket::load()?;
    bucket.capacity = resize.capacity;
    bucket.refill_per_second = resize.refill_per_second;
    bucket.tokens = if new {
        bucket.capacity
    } else {
        bucket.tokens.min(bucket.capacity)
    };
    bucket.save()?;
    Ok(Response::json(&bucket.view()))
}

podhost_sdk::export!(RateLimit);
