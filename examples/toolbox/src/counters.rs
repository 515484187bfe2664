//! Named counters with optional bounds: `increment` and `decrement` take
//! `{"amount"?, "min"?, "max"?}` (amount 1 by default); bounds given once
//! are remembered and clamp every later change.

use podhost_sdk::{Error, Response, Result, sql, time};
use serde::{Deserialize, Serialize};
use serde_json::json;

const SCHEMA: &str = "CREATE TABLE IF NOT EXISTS counters (
    name TEXT PRIMARY KEY,
    value INTEGER NOT NULL,
    min INTEGER,
    max INTEGER,
    updated_at INTEGER NOT NULL
)";

/// The body of `increment` and `decrement`.
#[derive(Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Step {
    amount: Option<i64>,
    min: Option<i64>,
    max: Option<i64>,
}

#[derive(Serialize, Deserialize)]
struct Counter {
    name: String,
    value: i64,
    min: Option<i64>,
    max: Option<i64>,
    updated_at: i64,
}

fn ensure() -> Result<()> {
    sql::script(SCHEMA)?;
    Ok(())
}

fn find(name: &str) -> Result<Option<Counter>> {
    ensure()?;
    Ok(sql::query_as(
        "SELECT name, value, min, max, updated_at FROM counters WHERE name = ?",
        (name,),
    )?
    .pop())
}

fn save(counter: &Counter) -> Result<()> {
    sql::execute(
        "INSERT INTO counters (name, value, min, max, updated_at) VALUES (?, ?, ?, ?, ?)
         ON CONFLICT (name) DO UPDATE SET value = excluded.value, min = excluded.min,
             max = excluded.max, updated_at = excluded.updated_at",
        (
            &counter.name,
            counter.value,
            counter.min,
            counter.max,
            counter.updated_at,
        ),
    )?;
    Ok(())
}

fn clamp(value: i64, min: Option<i64>, max: Option<i64>) -> i64 {
    let value = min.map_or(value, |min| value.max(min));
    max.map_or(value, |max| value.min(max))
}

/// `increment` (`sign` 1) or `decrement` (`sign` -1); creates the counter
/// at 0 first.
pub fn step(name: &str, step: Step, sign: i64) -> Result<Response> {
    let amount = step.amount.unwrap_or(1);
    if amount < 0 {
        return Err(Error::bad_request(
            "`amount` must not be negative: use the other direction",
        ));
    }
    let mut counter = find(name)?.unwrap_or(Counter {
        name: name.to_string(),
        value: 0,
        min: None,
        max: None,
        updated_at: 0,
    });
    if step.min.is_some() {
        counter.min = step.min;
    }
    if step.max.is_some() {
        counter.max = step.max;
    }
    if let (Some(min), Some(max)) = (counter.min, counter.max)
        && min > max
    {
        return Err(Error::bad_request(format!(
            "`min` ({min}) is above `max` ({max})"
        )));
    }
    counter.value = clamp(
        counter.value.saturating_add(sign.saturating_mul(amount)),
        counter.min,
        counter.max,
    );
    counter.updated_at = time::now_ms();
    save(&counter)?;
    Ok(Response::json(&counter))
}

pub fn show(name: &str) -> Result<Response> {
    let counter = find(name)?.ok_or_else(|| Error::not_found("no such counter"))?;
    Ok(Response::json(&counter))
}

/// Back to 0 (or the nearest bound); its bounds stay.
pub fn reset(name: &str) -> Result<Response> {
    let mut counter = find(name)?.ok_or_else(|| Error::not_found("no such counter"))?;
    counter.value = clamp(0, counter.min, counter.max);
    counter.updated_at = time::now_ms();
    save(&counter)?;
    Ok(Response::json(&counter))
}

pub fn list() -> Result<Response> {
    ensure()?;
    let counters: Vec<Counter> = sql::query_as(
        "SELECT name, value, min, max, updated_at FROM counters ORDER BY name",
        (),
    )?;
    Ok(Response::json(&json!({ "counters": counters })))
}

pub fn delete(name: &str) -> Result<Response> {
    ensure()?;
    if sql::execute("DELETE FROM counters WHERE name = ?", (name,))? == 0 {
        return Err(Error::not_found("no such counter"));
    }
    Ok(Response::json(&json!({ "deleted": true, "name": name })))
}
