//! Request bodies read up to a limit. A body over its limit is refused
//! with `413`, but only after the rest of it is read and dropped (up to
//! [`DRAINED_AT_MOST`], for at most [`DRAIN_TIME`]): a client still
//! sending then reads the answer instead of a connection reset under it.

use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::http::{HeaderMap, header};
use futures_util::{Stream, StreamExt as _};

use super::ApiError;

/// The most of a refused body read and dropped; past it the connection
/// is cut.
const DRAINED_AT_MOST: u64 = 64 << 20;
const DRAIN_TIME: Duration = Duration::from_secs(10);

/// The body, at most `limit` bytes; `413` (`BodyTooLarge`) beyond, known
/// from `Content-Length` before anything is read when the client says.
pub(super) async fn read_capped(
    body: Body,
    headers: &HeaderMap,
    limit: usize,
) -> Result<Bytes, ApiError> {
    let declared = content_length(headers);
    let mut stream = body.into_data_stream();
    if declared.is_some_and(|length| length > limit as u64) {
        drain(stream).await;
        return Err(ApiError::BodyTooLarge { limit });
    }
    let capacity = declared.map_or(0, |length| length as usize).min(limit);
    let mut read = Vec::with_capacity(capacity);
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|error| {
            ApiError::BadRequest(format!("cannot read the request body: {error}"))
        })?;
        if read.len() + chunk.len() > limit {
            drop(read);
            drain(stream).await;
            return Err(ApiError::BodyTooLarge { limit });
        }
        read.extend_from_slice(&chunk);
    }
    Ok(Bytes::from(read))
}

/// `request`, unless its `Content-Length` says its body is over `limit`:
/// then `413` (`BodyTooLarge`), its body read and dropped first.
pub(super) async fn refuse_declared_over(
    request: axum::extract::Request,
    limit: usize,
) -> Result<axum::extract::Request, ApiError> {
    if content_length(request.headers()).is_none_or(|length| length <= limit as u64) {
        return Ok(request);
    }
    drain(request.into_body().into_data_stream()).await;
    Err(ApiError::BodyTooLarge { limit })
}

/// The `Content-Length` the client announced, if it is a number.
pub(super) fn content_length(headers: &HeaderMap) -> Option<u64> {
    headers
        .get(header::CONTENT_LENGTH)
        .and_then(|value| value.to_str().ok()?.trim().parse().ok())
}

/// Reads and drops what is left of a refused body (see the module's doc).
pub(super) async fn drain(mut stream: impl Stream<Item = Result<Bytes, axum::Error>> + Unpin) {
    let mut drained = 0u64;
    let deadline = tokio::time::Instant::now() + DRAIN_TIME;
    while drained < DRAINED_AT_MOST {
        match tokio::time::timeout_at(deadline, stream.next()).await {
            Ok(Some(Ok(chunk))) => drained += chunk.len() as u64,
            _ => break,
        }
    }
}
