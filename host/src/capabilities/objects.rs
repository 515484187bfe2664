//! `podhost:object/objects`: calling, deleting and listing other objects.
//!
//! This module checks what it can without the runtime (the arguments, the
//! chain of calls) and hands the rest to [`Peers`] (who may call whom too),
//! which the runtime implements: it delivers a call as an ordinary event
//! to the callee and answers with its committed response. The guest waits
//! on that host future, which the watchdog does not count as CPU.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use crate::bindings::podhost::object::context::ObjectRef;
use crate::bindings::podhost::object::objects::{CallError, Host, ListPage};
use crate::bindings::podhost::object::types::Caller;
use crate::bindings::{Request, Response};
use crate::capabilities::ObjectState;
use crate::config::MAX_OBJECT_NAME_BYTES;
use crate::object::ObjectAddr;

/// Most names one `list` returns.
pub const MAX_LIST_NAMES: u32 = 1000;

/// Longest prefix or cursor `list` takes, in bytes (a name's limit).
const MAX_LIST_KEY_BYTES: usize = MAX_OBJECT_NAME_BYTES;

pub type PeerFuture<T> = Pin<Box<dyn Future<Output = Result<T, CallError>> + Send>>;

/// How an object reaches others: implemented by the runtime, so that this
/// capability knows neither actors nor HTTP.
pub trait Peers: Send + Sync {
    /// Delivers `request` to `callee` as an event carrying `chain` (which
    /// ends with the callee) and waits for its committed response.
    fn call(&self, chain: CallChain, callee: ObjectAddr, request: Request) -> PeerFuture<Response>;

    /// Deletes `callee` for good, `chain` ending with it.
    fn delete(&self, chain: CallChain, callee: ObjectAddr) -> PeerFuture<bool>;

    /// Names of `class`'s objects from the catalog (wakes none of them).
    fn list(
        &self,
        class: String,
        prefix: String,
        limit: u32,
        cursor: Option<String>,
    ) -> PeerFuture<ListPage>;

    /// Whether a class named `class` is deployed.
    fn has_class(&self, class: &str) -> bool;

    /// Whether an object of `caller_class` may call, delete or list the
    /// objects of `callee_class`: the one place the access rule lives (an
    /// object may reach the classes of its own tenant, or every class when
    /// tenants are off).
    fn may_call(&self, caller_class: &str, callee_class: &str) -> bool;
}

/// The objects an event's chain of calls went through, the running object
/// last: `[a]` for an event that came from a client, `[a, b]` for the
/// event `b` runs because `a` called it.
#[derive(Debug, Clone)]
pub struct CallChain(Arc<[Arc<ObjectAddr>]>);

impl CallChain {
    /// The chain of an event that no object sent.
    pub fn root(object: Arc<ObjectAddr>) -> Self {
        CallChain(Arc::from([object]))
    }

    /// This chain, then `callee`; or `cycle` naming the loop if `callee`
    /// is already in it (it is busy waiting, so the call would deadlock).
    pub fn then(&self, callee: ObjectAddr) -> Result<CallChain, CallError> {
        if let Some(at) = self.0.iter().position(|link| link.id() == callee.id()) {
            let looped = self.0[at..].iter().map(|link| label(link));
            let names: Vec<String> = looped.chain([label(&callee)]).collect();
            return Err(CallError::Cycle(names.join(" -> ")));
        }
        Ok(CallChain(
            self.0.iter().cloned().chain([Arc::new(callee)]).collect(),
        ))
    }

    /// How many calls led to the running event (0 for a client's).
    pub fn depth(&self) -> usize {
        self.0.len().saturating_sub(1)
    }

    /// The running object.
    pub fn current(&self) -> &ObjectAddr {
        // A chain is never empty: it starts with `root`.
        &self.0[self.0.len() - 1]
    }

    /// The object before the running one (the caller), if any.
    pub fn caller(&self) -> Option<&ObjectAddr> {
        self.0.len().checked_sub(2).map(|at| &*self.0[at])
    }
}

impl fmt::Display for CallChain {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let names: Vec<String> = self.0.iter().map(|link| label(link)).collect();
        f.write_str(&names.join(" -> "))
    }
}

/// `class/name`, as chains are written.
pub fn label(object: &ObjectAddr) -> String {
    format!("{}/{}", object.class(), object.name())
}

/// The WIT reference to `object`.
pub fn object_ref(object: &ObjectAddr) -> ObjectRef {
    ObjectRef {
        class: object.class().to_string(),
        name: object.name().to_string(),
        id: object.id().to_string(),
    }
}

/// Where the running event's calls start from, and how they get out.
pub struct Calls {
    peers: Option<Arc<dyn Peers>>,
    chain: Option<CallChain>,
    /// The running event deleted its own object (done after its batch
    /// commits, if the event's writes are kept).
    delete_self: bool,
}

impl Calls {
    pub fn new(peers: Option<Arc<dyn Peers>>) -> Self {
        Calls {
            peers,
            chain: None,
            delete_self: false,
        }
    }
}

impl ObjectState {
    /// Gives the object a way to reach others (instances without it answer
    /// every call `not-allowed`).
    pub fn with_peers(mut self, peers: Arc<dyn Peers>) -> Self {
        self.calls.peers = Some(peers);
        self
    }

    /// The chain of calls of the event about to run (`None`: a client's).
    pub fn begin_calls(&mut self, chain: Option<CallChain>) {
        self.calls.chain = chain;
    }

    /// Whether the event that just ran deleted its own object (and forgets
    /// it, for the next event).
    pub fn take_delete_self(&mut self) -> bool {
        std::mem::take(&mut self.calls.delete_self)
    }

    /// How this object reaches others, if it may (also asked by
    /// `routing`, which follows the same access rule).
    pub(super) fn peers(&self) -> Option<Arc<dyn Peers>> {
        self.calls.peers.clone()
    }

    fn chain(&self) -> CallChain {
        self.calls
            .chain
            .clone()
            .unwrap_or_else(|| CallChain::root(Arc::clone(&self.object)))
    }

    /// The peers and the callee's address, if this object may reach it.
    fn reach(&self, class: &str, name: &str) -> Result<(Arc<dyn Peers>, ObjectAddr), CallError> {
        let peers = self.calls.peers.clone().ok_or(CallError::NotAllowed)?;
        if name.is_empty() || name.len() > MAX_OBJECT_NAME_BYTES {
            return Err(CallError::Invalid(format!(
                "an object name must be 1 to {MAX_OBJECT_NAME_BYTES} bytes long"
            )));
        }
        if !peers.has_class(class) {
            return Err(CallError::NoSuchClass);
        }
        if !peers.may_call(self.object.class(), class) {
            return Err(CallError::NotAllowed);
        }
        Ok((peers, ObjectAddr::new(class, name)))
    }
}

impl Host for ObjectState {
    async fn call(
        &mut self,
        class: String,
        name: String,
        mut request: Request,
    ) -> Result<Response, CallError> {
        let (peers, callee) = self.reach(&class, &name)?;
        if !request.path_with_query.starts_with('/') {
            return Err(CallError::Invalid(
                "the request's path must start with `/`".into(),
            ));
        }
        if http::Method::from_bytes(request.method.as_bytes()).is_err() {
            return Err(CallError::Invalid(format!(
                "invalid method {:?}",
                request.method
            )));
        }
        let chain = self.chain().then(callee.clone())?;
        // Who sent it is the host's to say: a caller cannot pass itself off
        // as a user or a client.
        request.caller = Some(Caller::Object(object_ref(&self.object)));
        request.client_address = None;
        peers.call(chain, callee, request).await
    }

    async fn delete(&mut self, class: String, name: String) -> Result<bool, CallError> {
        let (peers, callee) = self.reach(&class, &name)?;
        if callee.id() == self.object.id() {
            // Deleting itself cannot wait for itself: it happens once this
            // event's batch commits (a failed event deletes nothing).
            self.calls.delete_self = true;
            return Ok(true);
        }
        let chain = self.chain().then(callee.clone())?;
        peers.delete(chain, callee).await
    }

    async fn list(
        &mut self,
        class: String,
        prefix: String,
        limit: u32,
        cursor: Option<String>,
    ) -> Result<ListPage, CallError> {
        let peers = self.calls.peers.clone().ok_or(CallError::NotAllowed)?;
        if !peers.has_class(&class) {
            return Err(CallError::NoSuchClass);
        }
        if !peers.may_call(self.object.class(), &class) {
            return Err(CallError::NotAllowed);
        }
        let too_long = |key: &str| key.len() > MAX_LIST_KEY_BYTES;
        if too_long(&prefix) || cursor.as_deref().is_some_and(too_long) {
            return Err(CallError::Invalid(format!(
                "a prefix or cursor is at most {MAX_LIST_KEY_BYTES} bytes long"
            )));
        }
        let limit = limit.clamp(1, MAX_LIST_NAMES);
        peers.list(class, prefix, limit, cursor).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(class: &str, name: &str) -> ObjectAddr {
        ObjectAddr::new(class, name)
    }

    #[test]
    fn a_chain_that_comes_back_names_the_loop() {
        let chain = CallChain::root(Arc::new(addr("a", "x")));
        let chain = chain.then(addr("b", "y")).expect("no loop yet");
        let chain = chain.then(addr("c", "z")).expect("no loop yet");
        assert_eq!(chain.depth(), 2);
        assert_eq!(chain.to_string(), "a/x -> b/y -> c/z");
        assert_eq!(chain.caller().map(label).as_deref(), Some("b/y"));
        match chain.then(addr("a", "x")) {
            Err(CallError::Cycle(names)) => assert_eq!(names, "a/x -> b/y -> c/z -> a/x"),
            other => panic!("expected a cycle, got {other:?}"),
        }
        match chain.then(addr("b", "y")) {
            Err(CallError::Cycle(names)) => assert_eq!(names, "b/y -> c/z -> b/y"),
            other => panic!("expected a cycle, got {other:?}"),
        }
    }

    #[test]
    fn calling_itself_is_a_cycle() {
        let chain = CallChain::root(Arc::new(addr("a", "x")));
        assert!(
            matches!(chain.then(addr("a", "x")), Err(CallError::Cycle(names)) if names == "a/x -> a/x")
        );
        assert!(
            chain.then(addr("a", "y")).is_ok(),
            "another object of the class"
        );
    }
}
