//! Activation: opening the object's database, making an instance around
//! it, and running the class's pending migrations, all under the watch of
//! the event that needs the instance.

use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

use wasmtime::PoolConcurrencyLimitError;

use super::Actor;
use super::state::Live;
use crate::capabilities::{ObjectState, Outbound, OutboundCounters, OutboundLimits};
use crate::execution::{EventWatch, Verdict};
use crate::limits::{EventLimits, LimitExceeded};
use crate::logs::Level;
use crate::metrics;
use crate::object::event::EventError;
use crate::storage::catalog::{CatalogUpdate, now_ms};
use crate::storage::{Database, DatabaseSettings, Spares, wal_path};

impl Actor {
    /// A watch for an event about to run, with the class's limits.
    pub(super) fn watch(&self) -> EventWatch {
        let budget = self.class.settings().limits.budget();
        self.runtime.executor().watchdog().watch(budget)
    }

    /// The error for an event the watchdog stopped.
    pub(super) fn stopped(&self, verdict: Verdict) -> EventError {
        match LimitExceeded::from_verdict(verdict) {
            Some(limit) => {
                tracing::warn!("event stopped: {limit}");
                self.host_log(Level::Warn, format!("event stopped: {limit}"));
                EventError::LimitExceeded(limit)
            }
            None => EventError::ShuttingDown,
        }
    }

    /// Makes the object live if it is not: opens its database, makes an
    /// instance and runs the class's pending migrations. The work counts
    /// toward the event `watch` watches.
    pub(super) async fn activate(&mut self, watch: &EventWatch) -> Result<(), EventError> {
        if let Some(verdict) = watch.verdict() {
            return Err(self.stopped(verdict));
        }
        if let Some(live) = self.state.live() {
            watch.watch_sql(live.store.data_mut().database().interrupt_handle());
            return Ok(());
        }
        let started = Instant::now();
        if self.state.database().is_none() {
            let path = self
                .runtime
                .data_dir()
                .object_database(self.object.class(), self.object.id());
            self.last_active = now_ms();
            let settings = self.database_settings(&path)?;
            let mut db = open_database(&path, settings, self.runtime.spares())?;
            self.attach_replica(&mut db)?;
            self.runtime
                .record(CatalogUpdate::Seen(self.sighting(None)));
            self.reconcile_alarm(&db);
            self.state.opened(db);
        }
        let Some(db) = self.state.take_database() else {
            return Err(EventError::Activation);
        };
        watch.watch_sql(db.interrupt_handle());
        let mut live = self.instantiate(db, watch).await?;
        self.runtime.metrics().activations.inc();
        metrics::observe_since(&self.metrics.activation_duration, started);
        self.host_log(
            Level::Info,
            format!(
                "activated (version {}) in {} ms",
                self.class.version(),
                started.elapsed().as_millis()
            ),
        );
        let migrated = live.store.data_mut().database().is_migrated();
        self.state.instantiated(live);
        self.tell_instance();
        if !migrated {
            let failed = match (self.migrate().await, watch.verdict()) {
                (_, Some(verdict)) => Some(self.stopped(verdict)),
                (Err(error), None) => Some(error),
                (Ok(()), None) => None,
            };
            if let Some(error) = failed {
                // Close the database too: the next activation reopens it
                // and tries the migrations again.
                self.state.discard();
                self.close().await;
                return Err(error);
            }
        }
        Ok(())
    }

    /// An instance around `db`; on failure the database stays open,
    /// dormant, for the next try.
    async fn instantiate(&mut self, db: Database, watch: &EventWatch) -> Result<Live, EventError> {
        let limits = EventLimits::new(
            self.class.settings().limits.max_memory_bytes,
            Arc::clone(self.runtime.guest_memory()),
        );
        let state = ObjectState::new(
            Arc::clone(&self.object),
            db,
            limits,
            Arc::clone(self.runtime.sockets()),
            self.runtime.guest_logs(),
            Arc::clone(&self.class.settings().config),
        )
        .with_outbound(Outbound::new(
            self.class.name(),
            self.class.settings().outbound.clone(),
            OutboundLimits::of(&self.class.settings().limits),
            OutboundCounters {
                sent: self.runtime.metrics().outbound_requests.clone(),
                refused: self.runtime.metrics().outbound_refused.clone(),
                duration: Some(self.metrics.outbound_duration.clone()),
            },
        ))
        .with_peers(self.runtime.peers())
        .with_routing(self.runtime.routing());
        let mut store = state.into_store(self.runtime.engine(), watch);
        match self.class.instantiate(&mut store).await {
            Ok(bindings) => Ok(Live { store, bindings }),
            Err(error) => {
                self.state.opened(store.into_data().into_database());
                if let Some(verdict) = watch.verdict() {
                    return Err(self.stopped(verdict));
                }
                if error.is::<PoolConcurrencyLimitError>() {
                    tracing::warn!("no room for another instance: {error}");
                    self.host_log(
                        Level::Warn,
                        format!("no room for another instance: {error}"),
                    );
                    return Err(EventError::TooManyActive);
                }
                if let Some(limit) = error.downcast_ref::<LimitExceeded>() {
                    tracing::warn!("activation stopped: {limit}");
                    self.host_log(Level::Warn, format!("activation stopped: {limit}"));
                    return Err(EventError::LimitExceeded(limit.clone()));
                }
                tracing::error!("activation failed: {error:?}");
                self.host_log(Level::Error, format!("activation failed: {error:?}"));
                Err(EventError::Activation)
            }
        }
    }

    /// The class's database settings, within its tenant's quotas if it has
    /// one: a new object must fit `max_objects` and `max_storage_bytes`,
    /// and a database may grow only into what the tenant's other objects
    /// leave of `max_storage_bytes`.
    pub(super) fn database_settings(&self, path: &Path) -> Result<DatabaseSettings, EventError> {
        let tenants = self.runtime.tenants();
        let class = self.object.class();
        let size = match std::fs::metadata(path) {
            Ok(file) => file.len(),
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => {
                tenants
                    .admit_new_object(class)
                    .map_err(EventError::QuotaExceeded)?;
                0
            }
            // Opening will fail too, and say why.
            Err(_) => 0,
        };
        // The log counts too: the database's pages may still be there.
        // Erring high only lets the object keep what it has.
        let own_bytes = || {
            let log = std::fs::metadata(wal_path(path)).map_or(0, |log| log.len());
            size.saturating_add(log)
        };
        let mut settings = self.class.settings().database();
        if let Some(allowance) = tenants.storage_allowance(class, own_bytes) {
            settings.max_storage_bytes = settings.max_storage_bytes.min(allowance);
        }
        Ok(settings)
    }

    /// Runs the class's pending migrations on the live instance's database.
    async fn migrate(&mut self) -> Result<(), EventError> {
        let class = Arc::clone(&self.class);
        let Some(live) = self.state.live() else {
            return Err(EventError::Activation);
        };
        let migrations = match class.known_migrations() {
            Some(migrations) => migrations,
            None => {
                let declared = live
                    .bindings
                    .podhost_object_handler()
                    .call_migrations(&mut live.store)
                    .await
                    .map_err(|trap| {
                        tracing::error!("listing the migrations trapped: {trap:?}");
                        EventError::Activation
                    })?;
                class.learn_migrations(declared)
            }
        };
        match live.store.data_mut().database().migrate(&migrations) {
            Ok(0) => Ok(()),
            Ok(count) => {
                tracing::info!(count, "migrated");
                self.host_log(Level::Info, format!("migrated: {count} migrations applied"));
                Ok(())
            }
            Err(failure) => {
                tracing::error!("{failure}");
                self.host_log(Level::Error, format!("migration failed: {failure}"));
                Err(EventError::Migration(failure))
            }
        }
    }
}

/// Opens the object's database, a spare file put in place if it is new.
/// This runs on a guest thread: without a spare, creating the file costs
/// an `fsync`, and it holds up no one else.
fn open_database(
    path: &Path,
    settings: DatabaseSettings,
    spares: &Spares,
) -> Result<Database, EventError> {
    Database::open_with_spares(path, &settings, Some(spares)).map_err(|error| {
        tracing::error!("cannot open the database: {error:#}");
        EventError::Activation
    })
}
