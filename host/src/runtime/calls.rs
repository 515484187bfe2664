//! How one object's call reaches another: the runtime's side of the
//! `objects` capability ([`Peers`]).
//!
//! A call is an ordinary event of the callee (`Event::Call`), queued in
//! its mailbox and run in its own transaction; the reply leaves once that
//! commits. The caller's guest waits on the reply inside its own event.
//!
//! No deadlock: an object whose event waits for a call cannot run the
//! events queued behind it, so a call to an object that is (directly or
//! through others) waiting for the caller could never be answered. Two
//! checks refuse such a call at once with `cycle`: the chain of calls the
//! event carries (`A -> B -> A` within one chain, in the capability), and
//! [`Waits`], every object's outstanding call, which also catches two
//! chains that started apart (a client's event in A calls B while another
//! in B calls A). What is left (every guest thread taken by waiting
//! callers, say) ends with the call timeout.

use std::collections::HashMap;
use std::sync::{Arc, Weak};

use parking_lot::Mutex;

use super::Runtime;
use crate::bindings::podhost::object::objects::{CallError, CallFailure, ListPage};
use crate::bindings::{Request, Response};
use crate::capabilities::objects::{CallChain, PeerFuture, Peers, label};
use crate::gateway::ApiError;
use crate::object::{EventError, ObjectAddr};

/// The runtime, as the capability sees it. Weak: an instance must not keep
/// the runtime alive.
pub(crate) struct RuntimePeers(pub(super) Weak<Runtime>);

impl RuntimePeers {
    fn runtime(&self) -> Result<Arc<Runtime>, CallError> {
        self.0
            .upgrade()
            .ok_or_else(|| failed(EventError::ShuttingDown))
    }
}

/// Most headers a call's request or response may have, and their bytes
/// (as the gateway allows an object's response).
const MAX_HEADERS: usize = 256;
const MAX_HEADER_BYTES: usize = 64 << 10;

/// The callee's failure as the gateway would have answered it.
fn failed(error: EventError) -> CallError {
    if let EventError::NoSuchClass(_) = error {
        return CallError::NoSuchClass;
    }
    answered(ApiError::from(error))
}

fn answered(error: ApiError) -> CallError {
    let message = error.to_string();
    let (status, code) = error.status_and_code();
    CallError::Failed(CallFailure {
        status: status.as_u16(),
        code: code.to_string(),
        message,
    })
}

/// Why `headers` are too many or too big, if they are.
fn headers_over(headers: &[(String, Vec<u8>)]) -> Option<String> {
    let bytes: usize = headers.iter().map(|(n, v)| n.len() + v.len()).sum();
    (headers.len() > MAX_HEADERS || bytes > MAX_HEADER_BYTES).then(|| {
        format!(
            "{} headers of {bytes} bytes; at most {MAX_HEADERS} and {MAX_HEADER_BYTES} bytes",
            headers.len()
        )
    })
}

/// The request as the callee's class takes one from a client (its body
/// within `max_body_bytes`).
fn check_request(request: &Request, max_body_bytes: usize) -> Result<(), CallError> {
    if request.body.len() > max_body_bytes {
        return Err(CallError::Invalid(format!(
            "the request body has {} bytes; the callee's class takes at most {max_body_bytes} (max_body_bytes)",
            request.body.len()
        )));
    }
    match headers_over(&request.headers) {
        Some(over) => Err(CallError::Invalid(over)),
        None => Ok(()),
    }
}

/// The response as the gateway would send it to a client, or `failed`
/// with the gateway's error (`invalid_response`, `response_too_large`).
fn check_response(response: Response, max_response_bytes: usize) -> Result<Response, CallError> {
    if !(200..=599).contains(&response.status) {
        return Err(answered(ApiError::InvalidResponse(format!(
            "status {} is not a final status (200 to 599)",
            response.status
        ))));
    }
    if response.body.len() > max_response_bytes {
        return Err(answered(ApiError::ResponseTooLarge {
            limit: max_response_bytes,
        }));
    }
    if let Some(over) = headers_over(&response.headers) {
        return Err(answered(ApiError::InvalidResponse(over)));
    }
    Ok(response)
}

impl Peers for RuntimePeers {
    fn call(&self, chain: CallChain, callee: ObjectAddr, request: Request) -> PeerFuture<Response> {
        let runtime = self.runtime();
        Box::pin(async move {
            let runtime = runtime?;
            let class = runtime
                .class(callee.class())
                .map_err(|_| CallError::NoSuchClass)?;
            let limits = &class.settings().limits;
            let max_response_bytes = limits.max_response_bytes;
            check_request(&request, limits.max_body_bytes)?;
            let (timeout, _waiting) =
                runtime.calls.start(&runtime, &chain).inspect_err(|error| {
                    tracing::debug!(%chain, ?error, "call refused");
                })?;
            let label = label(&callee);
            let delivered = runtime.call(callee, chain, request);
            match tokio::time::timeout(timeout, delivered).await {
                Ok(Ok(response)) => check_response(response, max_response_bytes),
                Ok(Err(error)) => Err(failed(error)),
                Err(_elapsed) => {
                    tracing::debug!(callee = label, ?timeout, "call timed out");
                    Err(CallError::Timeout)
                }
            }
        })
    }

    fn delete(&self, chain: CallChain, callee: ObjectAddr) -> PeerFuture<bool> {
        let runtime = self.runtime();
        Box::pin(async move {
            let runtime = runtime?;
            let (timeout, _waiting) = runtime.calls.start(&runtime, &chain)?;
            let deleted = runtime.delete(callee.class(), callee.name());
            match tokio::time::timeout(timeout, deleted).await {
                // `Runtime::delete` also forgets its API keys and handles.
                Ok(Ok(existed)) => Ok(existed),
                Ok(Err(error)) => Err(failed(error)),
                Err(_elapsed) => Err(CallError::Timeout),
            }
        })
    }

    fn list(
        &self,
        class: String,
        prefix: String,
        limit: u32,
        cursor: Option<String>,
    ) -> PeerFuture<ListPage> {
        let runtime = self.runtime();
        Box::pin(async move {
            let runtime = runtime?;
            // Objects activated before this call (a child just created,
            // say) are listed, though the catalog's writer is behind.
            runtime.catalog_flushed().await;
            let catalog = Arc::clone(runtime.catalog());
            // One more than asked tells whether a next page exists.
            let read = tokio::task::spawn_blocking(move || {
                catalog.names(&class, &prefix, cursor.as_deref(), limit + 1)
            })
            .await;
            let mut names = match read {
                Ok(Ok(names)) => names,
                Ok(Err(error)) => {
                    tracing::error!(%error, "cannot list objects from the catalog");
                    return Err(answered(ApiError::Internal(
                        "the catalog could not be read".into(),
                    )));
                }
                Err(error) => {
                    tracing::error!(%error, "listing objects panicked");
                    return Err(answered(ApiError::Internal(
                        "the catalog could not be read".into(),
                    )));
                }
            };
            let more = names.len() > limit as usize;
            names.truncate(limit as usize);
            let cursor = more.then(|| names.last().cloned()).flatten();
            Ok(ListPage { names, cursor })
        })
    }

    fn has_class(&self, class: &str) -> bool {
        self.0
            .upgrade()
            .is_some_and(|runtime| runtime.class(class).is_ok())
    }

    /// The access rule, in one place: an object may reach the classes of
    /// its own tenant (the owner of its class), the operator's classes
    /// those of the operator. With no tenants every class is the
    /// operator's, so every class may reach every other.
    fn may_call(&self, caller_class: &str, callee_class: &str) -> bool {
        self.0.upgrade().is_some_and(|runtime| {
            let tenants = runtime.tenants();
            tenants.owner_of(caller_class) == tenants.owner_of(callee_class)
        })
    }
}

/// Which object each waiting caller waits for (by id): the edges of the
/// wait-for graph, which stays free of cycles because an edge that would
/// close one is refused.
#[derive(Default)]
pub(crate) struct Waits {
    edges: Mutex<HashMap<String, Arc<ObjectAddr>>>,
}

impl Waits {
    /// Checks the call that `chain` ends with (depth, cycles) and records
    /// that its caller waits for the callee until the guard is dropped
    /// (answered, timed out, or the caller's event stopped). Returns the
    /// caller's call timeout too.
    fn start(
        &self,
        runtime: &Runtime,
        chain: &CallChain,
    ) -> Result<(std::time::Duration, Waiting<'_>), CallError> {
        let callee = chain.current();
        let Some(caller) = chain.caller() else {
            return Err(CallError::Invalid("a call needs a caller".into()));
        };
        let class = runtime
            .class(caller.class())
            .map_err(|_| CallError::NoSuchClass)?;
        let limits = &class.settings().limits;
        if chain.depth() > limits.max_call_depth as usize {
            return Err(CallError::Depth);
        }
        let mut edges = self.edges.lock();
        let mut path = vec![label(caller), label(callee)];
        let mut at = callee.id();
        // Bounded: the graph has no cycle, so the walk ends within its size.
        for _ in 0..=edges.len() {
            if at == caller.id() {
                return Err(CallError::Cycle(path.join(" -> ")));
            }
            let Some(next) = edges.get(at) else { break };
            path.push(label(next));
            at = next.id();
        }
        edges.insert(caller.id().to_string(), Arc::new(callee.clone()));
        Ok((
            limits.call_timeout,
            Waiting {
                waits: self,
                caller: caller.id().to_string(),
            },
        ))
    }
}

/// A caller's entry in [`Waits`], removed when dropped.
struct Waiting<'a> {
    waits: &'a Waits,
    caller: String,
}

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        self.waits.edges.lock().remove(&self.caller);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn response(status: u16, headers: usize, body: usize) -> Response {
        Response {
            status,
            headers: (0..headers)
                .map(|i| (format!("x-{i}"), b"v".to_vec()))
                .collect(),
            body: vec![0; body],
        }
    }

    fn failure_code(result: Result<Response, CallError>) -> String {
        match result {
            Err(CallError::Failed(failure)) => format!("{} {}", failure.status, failure.code),
            other => panic!("expected a failure, got {other:?}"),
        }
    }

    #[test]
    fn a_callee_answers_what_the_gateway_would_send() {
        assert!(check_response(response(200, 3, 10), 10).is_ok());
        assert_eq!(
            failure_code(check_response(response(101, 0, 0), 10)),
            "500 invalid_response"
        );
        assert_eq!(
            failure_code(check_response(response(200, 0, 11), 10)),
            "500 response_too_large"
        );
        assert_eq!(
            failure_code(check_response(response(200, MAX_HEADERS + 1, 0), 10)),
            "500 invalid_response"
        );
    }

    #[test]
    fn a_caller_sends_what_a_client_could() {
        let request = |headers: usize, body: usize| Request {
            method: "POST".into(),
            path_with_query: "/".into(),
            headers: response(200, headers, 0).headers,
            body: vec![0; body],
            caller: None,
            client_address: None,
        };
        assert!(check_request(&request(2, 100), 100).is_ok());
        assert!(matches!(
            check_request(&request(2, 101), 100),
            Err(CallError::Invalid(why)) if why.contains("max_body_bytes")
        ));
        assert!(check_request(&request(MAX_HEADERS + 1, 0), 100).is_err());
    }

    #[test]
    fn a_trap_is_the_gateways_500() {
        match failed(EventError::Trapped) {
            CallError::Failed(failure) => {
                assert_eq!(
                    (failure.status, failure.code.as_str()),
                    (500, "object_trapped")
                );
            }
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            failed(EventError::NoSuchClass("x".into())),
            CallError::NoSuchClass
        ));
    }
}
