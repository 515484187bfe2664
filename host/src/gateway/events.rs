//! `GET /objects/{class}/{name}/_events`: the object's event log as
//! Server-Sent Events. With `Last-Event-ID` (or `?last_event_id=`), the
//! client first gets every event after that id, then live ones; without,
//! only live ones. A subscriber too far behind is disconnected and resumes
//! by id, so it misses nothing the log still holds; if the log no longer
//! holds some, a `podhost-gap` event says so first.

use std::convert::Infallible;
use std::sync::Arc;

use axum::http::request::Parts;
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use futures_util::StreamExt;
use futures_util::stream;
use tokio::sync::mpsc;

use super::ApiError;
use crate::accounts::Revocation;
use crate::runtime::Runtime;
use crate::sockets::LoggedEvent;

/// The path below an object's address that streams its events.
pub const EVENTS_PATH: &str = "_events";

pub async fn stream(
    runtime: Arc<Runtime>,
    class: String,
    name: String,
    parts: Parts,
    revocation: Revocation,
) -> Result<Response, ApiError> {
    let after = last_event_id(&parts)?;
    let (subscriber, live) = mpsc::channel(runtime.config().sockets.max_queued_messages);
    let backlog = runtime.subscribe(&class, &name, after, subscriber).await?;
    let gap = backlog.gap.then(|| {
        Event::default()
            .event("podhost-gap")
            .data("some events after Last-Event-ID are no longer in the log")
    });
    let missed = gap
        .into_iter()
        .chain(backlog.events.iter().map(sse_event))
        .map(Ok::<_, Infallible>)
        .collect::<Vec<_>>();
    let live = stream::unfold(live, |mut live| async move {
        let event = live.recv().await?;
        Some((Ok(sse_event(&event)), live))
    });
    let keep_alive = KeepAlive::new().interval(runtime.config().sockets.ping_interval);
    // The stream ends when the subscriber's session or key does.
    let live = live.take_until(revocation.ended());
    Ok(Sse::new(stream::iter(missed).chain(live))
        .keep_alive(keep_alive)
        .into_response())
}

fn sse_event(event: &LoggedEvent) -> Event {
    Event::default()
        .id(event.id.to_string())
        .event(&*event.name)
        .data(&*event.data)
}

/// The id the client saw last: the `Last-Event-ID` header (what a
/// browser's `EventSource` sends when it reconnects), else the query
/// parameter `last_event_id`.
fn last_event_id(parts: &Parts) -> Result<Option<u64>, ApiError> {
    let from_query = parts.uri.query().and_then(|query| {
        query
            .split('&')
            .find_map(|pair| pair.strip_prefix("last_event_id="))
    });
    let value = match parts.headers.get("last-event-id") {
        Some(header) => Some(header.to_str().map_err(|_| bad_id())?),
        None => from_query,
    };
    value
        .map(|value| value.trim().parse::<u64>().map_err(|_| bad_id()))
        .transpose()
}

fn bad_id() -> ApiError {
    ApiError::BadRequest("Last-Event-ID must be an event id (a number)".into())
}
