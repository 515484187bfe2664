//! The host side of the `podhost:object` world: one module per WIT
//! interface, all implemented on [`ObjectState`], the data of an object's
//! wasmtime `Store`.

mod alarms;
mod broadcast;
mod context;
pub(crate) mod events;
mod kv;
pub(crate) mod objects;
mod outbound;
pub(crate) mod routing;
mod sql;
mod types;
mod wasi;

use std::sync::Arc;

use wasmtime::Engine;
use wasmtime::component::{HasSelf, Linker, ResourceTable};
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};
use wasmtime_wasi_http::{WasiHttpCtx, WasiHttpCtxView, WasiHttpView};

pub use outbound::{Outbound, OutboundCounters, OutboundLimits};
pub use routing::{RoutingFuture, RoutingTable};

use crate::bindings::{Object, StorageError, StorageErrorCode};
use crate::config::ConfigValues;
use crate::limits::EventLimits;
use crate::logs::GuestLogs;
use crate::object::ObjectAddr;
use crate::sockets::{Hub, Outgoing};
use crate::storage::Database;

/// Everything an object's instance can reach through its imports.
pub struct ObjectState {
    object: Arc<ObjectAddr>,
    db: Database,
    wasi: WasiCtx,
    http: WasiHttpCtx,
    /// The class's outbound HTTP policy (`outbound`).
    outbound: Outbound,
    table: ResourceTable,
    limits: EventLimits,
    sockets: Arc<Hub>,
    /// Messages and closes of the running event, sent if its batch commits.
    outbox: Vec<Outgoing>,
    /// What the outbox weighs (see `broadcast`), capped per event.
    outbox_bytes: usize,
    /// The running event set or cancelled the alarm.
    alarm_changed: bool,
    /// The class's vars and secrets (`context.config`).
    config: Arc<ConfigValues>,
    /// How this object reaches others, and the running event's chain.
    calls: objects::Calls,
    /// Where API keys and handles are kept (`routing`), if anywhere.
    routing: Option<Arc<dyn RoutingTable>>,
}

impl ObjectState {
    pub fn new(
        object: Arc<ObjectAddr>,
        db: Database,
        limits: EventLimits,
        sockets: Arc<Hub>,
        logs: &GuestLogs,
        config: Arc<ConfigValues>,
    ) -> Self {
        ObjectState {
            wasi: wasi::context(&object, logs),
            http: WasiHttpCtx::new(),
            outbound: Outbound::deny_all(object.class()),
            object,
            db,
            table: ResourceTable::new(),
            limits,
            sockets,
            outbox: Vec::new(),
            outbox_bytes: 0,
            alarm_changed: false,
            config,
            calls: objects::Calls::new(None),
            routing: None,
        }
    }

    /// Gives the instance its class's outbound HTTP policy (none is
    /// allowed until then).
    pub fn with_outbound(mut self, outbound: Outbound) -> Self {
        self.outbound = outbound;
        self
    }

    pub fn database(&mut self) -> &mut Database {
        &mut self.db
    }

    /// Gives the database back when the instance is dropped.
    pub fn into_database(self) -> Database {
        self.db
    }

    /// Whether the event that just ran set or cancelled the alarm (and
    /// forgets it, for the next event).
    pub fn take_alarm_change(&mut self) -> bool {
        std::mem::take(&mut self.alarm_changed)
    }

    pub fn limits(&mut self) -> &mut EventLimits {
        &mut self.limits
    }

    /// The database, if the event's transaction is still open: a guest
    /// must not write outside it, or its writes would commit on their own.
    fn transaction(&self) -> Result<&Database, StorageError> {
        if self.db.in_transaction() {
            Ok(&self.db)
        } else {
            Err(StorageError {
                code: StorageErrorCode::Other,
                message: "this event's transaction was aborted by an earlier storage error; the event will be rolled back".into(),
            })
        }
    }
}

impl WasiView for ObjectState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

impl WasiHttpView for ObjectState {
    fn http(&mut self) -> WasiHttpCtxView<'_> {
        WasiHttpCtxView {
            ctx: &mut self.http,
            table: &mut self.table,
            hooks: &mut self.outbound,
        }
    }
}

/// A linker with WASI (which Rust guests import even when unused),
/// `wasi:http` for outbound requests (see `outbound`) and every podhost
/// interface.
pub fn linker(engine: &Engine) -> anyhow::Result<Linker<ObjectState>> {
    let mut linker = Linker::new(engine);
    wasmtime_wasi::p2::add_to_linker_async(&mut linker)?;
    wasmtime_wasi_http::p2::add_only_http_to_linker_async(&mut linker)?;
    Object::add_to_linker::<ObjectState, HasSelf<ObjectState>>(&mut linker, |state| state)?;
    Ok(linker)
}
