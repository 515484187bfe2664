//! A class made for the integration tests: each route exercises one host
//! behaviour (traps, rollbacks, KV and SQL together, the SQL authorizer).

use podhost_sdk::caller::{Caller, User};
use podhost_sdk::context::this_object;
use podhost_sdk::sql::{self, Value};
use std::time::{Duration, UNIX_EPOCH};

use podhost_sdk::sockets::{self, Accept, Message, Socket};
use podhost_sdk::{Error, Method, Object, Request, Response, Result, alarms, config, kv};
use serde::{Deserialize, Serialize};
use serde_json::json;

struct Probe;

#[derive(Deserialize)]
struct Query {
    query: String,
    #[serde(default)]
    params: Vec<serde_json::Value>,
}

impl Object for Probe {
    fn activate() -> Result<Self> {
        sql::script(
            "CREATE TABLE IF NOT EXISTS notes (id INTEGER PRIMARY KEY, body TEXT NOT NULL);
             CREATE TABLE IF NOT EXISTS alarm_fires (n INTEGER PRIMARY KEY, retry INTEGER NOT NULL);",
        )?;
        Ok(Probe)
    }

    fn fetch(&mut self, req: Request) -> Result<Response> {
        match (req.method().clone(), req.segments().as_slice()) {
            (Method::GET, ["state"]) => state(),
            // Text kept in the instance's memory only, never stored.
            (Method::POST, ["memory"]) => {
                *remembered() = req.text()?.to_string();
                Ok(Response::text("kept"))
            }
            (Method::GET, ["memory"]) => {
                let text = remembered();
                Ok(Response::json(
                    &json!({ "bytes": text.len(), "head": text.chars().take(16).collect::<String>() }),
                ))
            }
            (Method::GET, ["whoami"]) => {
                let me = this_object();
                Ok(Response::json(
                    &json!({ "class": me.class, "name": me.name, "id": me.id }),
                ))
            }
            (Method::GET, ["caller"]) => Ok(Response::json(&caller_json(&req))),
            // A key of the class's config, read as a var and as a secret.
            (Method::GET, ["config", key]) => Ok(Response::json(&json!({
                "value": config::get(key),
                "secret_debug": config::secret(key).map(|secret| format!("{secret:?}")),
            }))),
            (Method::GET, ["client-address"]) => Ok(Response::json(&json!({
                "client_address": req.client_address().map(|address| address.to_string()),
            }))),
            // One SQL row and one KV key, committed together.
            (Method::POST, ["write"]) => {
                write(req.text()?)?;
                state()
            }
            // The same writes, then a failed event: both roll back.
            (Method::POST, ["write-then-fail"]) => {
                write(req.text()?)?;
                Err(Error::conflict("failing on purpose"))
            }
            // The same writes, then a trap: both roll back, the instance goes.
            (Method::POST, ["write-then-trap"]) => {
                write(req.text()?)?;
                panic!("trapping on purpose");
            }
            (Method::POST, ["sql"]) => run_sql(req.json()?),
            (Method::GET, ["alarm"]) => alarm_state(),
            // ?at_ms=T or ?in_ms=D; ?fail_first=N traps the first N
            // attempts; ?repeat=R&every_ms=E sets the alarm again R times.
            (Method::POST, ["alarm", "set"]) => {
                set_alarm(&req)?;
                alarm_state()
            }
            (Method::POST, ["alarm", "set-then-fail"]) => {
                set_alarm(&req)?;
                Err(Error::conflict("failing on purpose"))
            }
            (Method::POST, ["alarm", "cancel"]) => {
                let was_set = alarms::cancel()?;
                Ok(Response::json(&json!({ "was_set": was_set })))
            }
            // Writes 16 KiB rows until storage is full; reports what it got.
            (Method::POST, ["fill"]) => {
                let row = "x".repeat(16 << 10);
                let mut inserted = 0u32;
                let error = loop {
                    match sql::execute("INSERT INTO notes (body) VALUES (?)", (row.as_str(),)) {
                        Ok(_) => inserted += 1,
                        Err(error) => break error,
                    }
                    if inserted == 100_000 {
                        return Err(Error::internal("no storage limit was hit"));
                    }
                };
                Ok(Response::json(
                    &json!({ "inserted": inserted, "code": error.code.name(), "message": error.message }),
                ))
            }
            // Never returns: the host's CPU limit must stop it.
            (Method::POST, ["spin"]) => {
                let mut turns = 0u64;
                loop {
                    turns = std::hint::black_box(turns.wrapping_add(1));
                }
            }
            // Allocates without bound: the host's memory limit must stop it.
            (Method::POST, ["hog"]) => {
                let mut hoard: Vec<Vec<u8>> = Vec::new();
                loop {
                    hoard.push(std::hint::black_box(vec![1u8; 1 << 20]));
                }
            }
            // Grows the instance's memory by `?mb=N` MiB, kept until the
            // instance goes.
            (Method::POST, ["grow"]) => {
                let mb: usize = req
                    .query_param("mb")
                    .and_then(|mb| mb.parse().ok())
                    .ok_or_else(|| Error::bad_request("mb is required"))?;
                let mut kept = grown();
                kept.push(std::hint::black_box(vec![1u8; mb << 20]));
                let total: usize = kept.iter().map(Vec::len).sum();
                Ok(Response::json(&json!({ "bytes": total })))
            }
            // Waits on the host's clock (WASI), using no CPU: the host's
            // wall-clock limit must stop it. `?ms=N`, forever without.
            (Method::POST, ["sleep"]) => {
                let ms = req
                    .query_param("ms")
                    .and_then(|ms| ms.parse().ok())
                    .unwrap_or(u64::MAX);
                std::thread::sleep(Duration::from_millis(ms));
                write("slept")?;
                Ok(Response::json(&json!({ "slept_ms": ms })))
            }
            // Writes the body to stdout (stderr with ?stream=stderr),
            // ?repeat=N times, as is: newlines, escapes and all.
            (Method::POST, ["print"]) => {
                let repeat: u64 = req
                    .query_param("repeat")
                    .and_then(|v| v.parse().ok())
                    .unwrap_or(1);
                let text = req.text()?;
                let to_stderr = req.query_param("stream").as_deref() == Some("stderr");
                for _ in 0..repeat {
                    if to_stderr {
                        eprint!("{text}");
                    } else {
                        print!("{text}");
                    }
                }
                Ok(Response::json(
                    &json!({ "printed": text.len() as u64 * repeat }),
                ))
            }
            // Spins for ?ms=N milliseconds of wall time, then answers.
            (Method::POST, ["spin-for"]) => {
                let ms: u64 = req
                    .query_param("ms")
                    .and_then(|v| v.parse().ok())
                    .unwrap_or(100);
                let start = std::time::Instant::now();
                let mut turns = 0u64;
                while start.elapsed() < Duration::from_millis(ms) {
                    for _ in 0..100_000 {
                        turns = std::hint::black_box(turns.wrapping_add(1));
                    }
                }
                Ok(Response::json(&json!({ "turns": turns })))
            }
            (Method::POST, ["echo"]) => Ok(Response::json(&json!({
                "method": req.method().as_str(),
                "path": req.path(),
                "query": req.query(),
                "header": req.header("x-probe"),
                "body_len": req.body().len(),
            }))),
            // A response made to order (`Canned` as JSON): answered at
            // once by POST, kept by PUT and replayed by GET (a hostile
            // page, headers an object should not be able to send, ...).
            (Method::POST, ["canned"]) => canned(req.json()?),
            (Method::PUT, ["canned"]) => {
                let wanted: Canned = req.json()?;
                kv::put("canned", &wanted)?;
                Ok(Response::text("kept"))
            }
            (Method::GET, ["canned"]) => match kv::get::<Canned>("canned")? {
                Some(wanted) => canned(wanted),
                None => Err(Error::not_found("nothing canned yet")),
            },
            _ => Err(Error::not_found(format!(
                "no route {} {}",
                req.method(),
                req.path()
            ))),
        }
    }

    fn alarm(&mut self, retry_count: u32) -> Result<()> {
        let plan: AlarmPlan = kv::get("alarm-plan")?.unwrap_or_default();
        if retry_count < plan.fail_first {
            panic!("alarm trapping on purpose, attempt {}", retry_count + 1);
        }
        std::thread::sleep(Duration::from_millis(plan.sleep_ms));
        sql::execute(
            "INSERT INTO alarm_fires (retry) VALUES (?)",
            (i64::from(retry_count),),
        )?;
        if plan.repeat > 0 {
            kv::put(
                "alarm-plan",
                &AlarmPlan {
                    repeat: plan.repeat - 1,
                    ..plan
                },
            )?;
            alarms::set_in(Duration::from_millis(plan.every_ms))?;
        }
        Ok(())
    }

    /// Any socket is accepted, tagged `all`. One opened at
    /// `/client-address` is sent the client's address at once.
    fn socket_open(&mut self, socket: Socket, req: Request) -> Result<Accept> {
        if req.path() == "/client-address" {
            let address = req.client_address().map(|address| address.to_string());
            socket.send(address.unwrap_or_else(|| "none".into()))?;
        }
        Ok(Accept::new().tag("all"))
    }

    /// `publish:X` publishes X to `all`; `publish-then-fail:X` does too,
    /// then fails, so X must never leave; `send-then-trap:X` sends X back
    /// and traps.
    fn socket_message(&mut self, socket: Socket, message: Message) -> Result<()> {
        let text = message.as_text().unwrap_or_default();
        if let Some(x) = text.strip_prefix("publish:") {
            sockets::publish("all", x);
        } else if let Some(x) = text.strip_prefix("publish-then-fail:") {
            sockets::publish("all", x);
            return Err(Error::internal("failing on purpose"));
        } else if let Some(x) = text.strip_prefix("send-then-trap:") {
            socket.send(x)?;
            panic!("trapping on purpose");
        }
        Ok(())
    }
}

/// A response described by the test: status, HTML or text, more headers.
#[derive(Serialize, Deserialize)]
struct Canned {
    #[serde(default = "ok")]
    status: u16,
    #[serde(default)]
    html: bool,
    #[serde(default)]
    headers: Vec<(String, String)>,
    #[serde(default)]
    body: String,
}

fn ok() -> u16 {
    200
}

fn canned(wanted: Canned) -> Result<Response> {
    let status = podhost_sdk::StatusCode::from_u16(wanted.status)
        .map_err(|_| Error::bad_request("not a status"))?;
    let content_type = if wanted.html {
        "text/html; charset=utf-8"
    } else {
        "text/plain; charset=utf-8"
    };
    let mut response = Response::bytes(content_type, wanted.body.into_bytes()).with_status(status);
    for (name, value) in wanted.headers {
        let name = podhost_sdk::HeaderName::from_bytes(name.as_bytes())
            .map_err(|_| Error::bad_request(format!("bad header name {name:?}")))?;
        let value = podhost_sdk::HeaderValue::from_str(&value)
            .map_err(|_| Error::bad_request(format!("bad header value {value:?}")))?;
        response = response.with_header(name, value);
    }
    Ok(response)
}

#[derive(Default, Clone, Copy, Serialize, Deserialize)]
struct AlarmPlan {
    fail_first: u32,
    repeat: u32,
    every_ms: u64,
    /// How long the handler sleeps before it records its run.
    #[serde(default)]
    sleep_ms: u64,
}

/// The request's caller, and the credentials the object can see.
fn caller_json(req: &Request) -> serde_json::Value {
    let user = |user: &User| json!({ "id": user.id, "email": user.email });
    let caller = match req.caller() {
        None => json!(null),
        Some(Caller::User(u)) => json!({ "kind": "user", "user": user(u) }),
        Some(Caller::Member(member)) => json!({
            "kind": "member",
            "user": user(&member.user),
            "org": member.org,
            "role": member.role.as_str(),
        }),
        Some(Caller::Key(id)) => json!({ "kind": "key", "key": id }),
        Some(Caller::Admin) => json!({ "kind": "admin" }),
    };
    json!({
        "caller": caller,
        "authorization": req.header("authorization"),
        "cookie": req.header("cookie"),
    })
}

fn set_alarm(req: &Request) -> Result<()> {
    let number = |name: &str| -> Result<Option<u64>> {
        req.query_param(name)
            .map(|v| {
                v.parse()
                    .map_err(|_| Error::bad_request(format!("{name} must be a number")))
            })
            .transpose()
    };
    let plan = AlarmPlan {
        fail_first: number("fail_first")?.unwrap_or(0) as u32,
        repeat: number("repeat")?.unwrap_or(0) as u32,
        every_ms: number("every_ms")?.unwrap_or(0),
        sleep_ms: number("sleep_ms")?.unwrap_or(0),
    };
    kv::put("alarm-plan", &plan)?;
    match (number("at_ms")?, number("in_ms")?) {
        (Some(at), _) => alarms::set_at(UNIX_EPOCH + Duration::from_millis(at))?,
        (None, Some(delay)) => alarms::set_in(Duration::from_millis(delay))?,
        (None, None) => return Err(Error::bad_request("at_ms or in_ms is required")),
    }
    Ok(())
}

fn alarm_state() -> Result<Response> {
    let at = alarms::get()?.map(|t| {
        t.duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64)
    });
    let fires: Vec<i64> = sql::query("SELECT retry FROM alarm_fires ORDER BY n", ())?;
    Ok(Response::json(&json!({ "at_ms": at, "fires": fires })))
}

fn write(body: &str) -> Result<()> {
    sql::execute("INSERT INTO notes (body) VALUES (?)", (body,))?;
    kv::put("last", body)?;
    Ok(())
}

fn state() -> Result<Response> {
    let notes: Vec<String> = sql::query("SELECT body FROM notes ORDER BY id", ())?;
    let last: Option<String> = kv::get("last")?;
    Ok(Response::json(&json!({ "notes": notes, "last": last })))
}

/// Runs arbitrary SQL; a storage error comes back as a 400 naming its code.
fn run_sql(query: Query) -> Result<Response> {
    let params: Vec<Value> = query.params.into_iter().map(json_to_value).collect();
    match sql::exec(&query.query, params) {
        Ok(rows) => Ok(Response::json(&json!({
            "columns": rows.columns(),
            "rows": rows.iter().map(|r| r.to_json()).collect::<Vec<_>>(),
            "rows_written": rows.rows_written(),
        }))),
        Err(e) => Ok(Response::json(
            &json!({ "error": { "code": e.code.name(), "message": e.message } }),
        )
        .with_status(podhost_sdk::StatusCode::BAD_REQUEST)),
    }
}

fn json_to_value(value: serde_json::Value) -> Value {
    match value {
        serde_json::Value::Null => Value::Null,
        serde_json::Value::Bool(b) => b.into(),
        serde_json::Value::Number(n) => n
            .as_i64()
            .map_or_else(|| Value::Real(n.as_f64().unwrap_or(0.0)), Value::Integer),
        serde_json::Value::String(s) => Value::Text(s),
        other => Value::Text(other.to_string()),
    }
}

podhost_sdk::export!(Probe);

fn grown() -> std::sync::MutexGuard<'static, Vec<Vec<u8>>> {
    static GROWN: std::sync::Mutex<Vec<Vec<u8>>> = std::sync::Mutex::new(Vec::new());
    GROWN
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

fn remembered() -> std::sync::MutexGuard<'static, String> {
    static REMEMBERED: std::sync::Mutex<String> = std::sync::Mutex::new(String::new());
    REMEMBERED
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}
