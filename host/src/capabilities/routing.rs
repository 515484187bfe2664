//! `podhost:object/routing`: an object makes and revokes API keys and sets
//! handles for objects of the classes it may call.
//!
//! Keys and handles live in the accounts, which only the gateway knows, so
//! this module checks the arguments and the access rule (the one of
//! `objects`: [`Peers::may_call`], the same tenant) and hands the change
//! to [`RoutingTable`], which the gateway implements over its accounts and
//! installs with `Runtime::route_objects`.
//!
//! A change is made when the guest asks, not when its event commits: like
//! outbound HTTP it is a side effect before commit (an event that fails
//! afterwards keeps the key or handle it made). Holding it back until the
//! commit would let two objects both be promised the same handle; made at
//! once, `set-handle` without `replace` is an atomic claim.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use crate::bindings::podhost::object::routing::{Host, NewKey, RoutingError};
use crate::capabilities::ObjectState;
use crate::config::MAX_OBJECT_NAME_BYTES;

pub type RoutingFuture<T> = Pin<Box<dyn Future<Output = Result<T, RoutingError>> + Send>>;

/// Where keys and handles are kept: implemented by the gateway over its
/// accounts, so that neither the runtime nor this capability knows them.
/// Arguments are checked (class deployed, access allowed, name length)
/// before they get here.
pub trait RoutingTable: Send + Sync {
    fn create_key(&self, class: String, name: String, label: String) -> RoutingFuture<NewKey>;

    /// Revokes key `id` only if it belongs to object `name` of `class`.
    fn revoke_key(&self, class: String, name: String, id: String) -> RoutingFuture<bool>;

    /// Points `handle` at `name`; without `replace`, a handle that stands
    /// for another object is `taken`, checked and written in one step.
    fn set_handle(
        &self,
        class: String,
        handle: String,
        name: String,
        replace: bool,
    ) -> RoutingFuture<String>;

    fn remove_handle(&self, class: String, handle: String) -> RoutingFuture<bool>;
}

impl ObjectState {
    /// Gives the object keys and handles to manage (instances without it
    /// answer every routing change `not-allowed`).
    pub fn with_routing(mut self, routing: Option<Arc<dyn RoutingTable>>) -> Self {
        self.routing = routing;
        self
    }

    /// The table, if this object may act on `class`'s keys and handles.
    fn routes_of(&self, class: &str) -> Result<Arc<dyn RoutingTable>, RoutingError> {
        let table = self.routing.clone().ok_or(RoutingError::NotAllowed)?;
        let peers = self.peers().ok_or(RoutingError::NotAllowed)?;
        if !peers.has_class(class) {
            return Err(RoutingError::NoSuchClass);
        }
        if !peers.may_call(self.object.class(), class) {
            return Err(RoutingError::NotAllowed);
        }
        Ok(table)
    }
}

fn check_name(name: &str) -> Result<(), RoutingError> {
    if name.is_empty() || name.len() > MAX_OBJECT_NAME_BYTES {
        return Err(RoutingError::Invalid(format!(
            "an object name must be 1 to {MAX_OBJECT_NAME_BYTES} bytes long"
        )));
    }
    Ok(())
}

impl Host for ObjectState {
    async fn create_key(
        &mut self,
        class: String,
        name: String,
        label: String,
    ) -> Result<NewKey, RoutingError> {
        let table = self.routes_of(&class)?;
        check_name(&name)?;
        table.create_key(class, name, label).await
    }

    async fn revoke_key(
        &mut self,
        class: String,
        name: String,
        id: String,
    ) -> Result<bool, RoutingError> {
        let table = self.routes_of(&class)?;
        check_name(&name)?;
        table.revoke_key(class, name, id).await
    }

    async fn set_handle(
        &mut self,
        class: String,
        handle: String,
        name: String,
        replace: bool,
    ) -> Result<String, RoutingError> {
        let table = self.routes_of(&class)?;
        check_name(&name)?;
        table.set_handle(class, handle, name, replace).await
    }

    async fn remove_handle(&mut self, class: String, handle: String) -> Result<bool, RoutingError> {
        let table = self.routes_of(&class)?;
        table.remove_handle(class, handle).await
    }
}
