//! `GET /admin/objects/{class}/{name}/logs`: the object's own log (guest
//! stdout and stderr, the host's events for it; see `logs::ring`) as JSON,
//! or followed as Server-Sent Events with `?follow=true` or
//! `Accept: text/event-stream`. A tenant's token works for the objects of
//! its own classes.

use std::convert::Infallible;

use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, header};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use futures_util::StreamExt as _;
use futures_util::stream;
use serde::Deserialize;
use serde_json::json;
use tokio::sync::broadcast::error::RecvError;

use super::objects::check_name;
use super::{ApiError, Gateway};
use crate::logs::LogRecord;
use crate::object::ObjectAddr;
use crate::tenants::Principal;

#[derive(Deserialize)]
pub struct LogsQuery {
    #[serde(default)]
    follow: bool,
    /// Only records with a greater `seq`.
    after: Option<u64>,
}

pub async fn logs(
    State(gateway): State<Gateway>,
    Path((class, name)): Path<(String, String)>,
    Query(query): Query<LogsQuery>,
    headers: HeaderMap,
    principal: Principal,
) -> Result<Response, ApiError> {
    let runtime = gateway.runtime();
    runtime.tenants().may_manage(&principal, &class)?;
    runtime.class(&class)?;
    check_name(&name)?;
    let object = ObjectAddr::new(&class, &name);
    let rings = runtime.guest_logs().rings();
    let wants_stream = headers
        .get(header::ACCEPT)
        .and_then(|accept| accept.to_str().ok())
        .is_some_and(|accept| accept.contains("text/event-stream"));
    if !query.follow && !wants_stream {
        let records = rings.records(object.id(), query.after);
        return Ok(Json(json!({ "records": records })).into_response());
    }
    let (backlog, live) = rings.follow(object.id());
    let after = query.after.unwrap_or(0);
    let backlog = backlog
        .into_iter()
        .filter(move |record| record.seq > after)
        .map(|record| Ok::<_, Infallible>(sse_record(&record)));
    // Ends when the object is deleted (its ring's sender goes).
    let live = stream::unfold(live, |mut live| async move {
        let event = match live.recv().await {
            Ok(record) => sse_record(&record),
            Err(RecvError::Lagged(missed)) => Event::default()
                .event("podhost-gap")
                .data(format!("{missed} records were missed")),
            Err(RecvError::Closed) => return None,
        };
        Some((Ok(event), live))
    });
    let keep_alive = KeepAlive::new().interval(runtime.config().sockets.ping_interval);
    Ok(Sse::new(stream::iter(backlog).chain(live))
        .keep_alive(keep_alive)
        .into_response())
}

fn sse_record(record: &LogRecord) -> Event {
    let data = serde_json::to_string(record).unwrap_or_default();
    Event::default()
        .id(record.seq.to_string())
        .event("log")
        .data(data)
}
