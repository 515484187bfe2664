//! The actor of one object: a task that owns the object's store (instance
//! and database) and runs its events strictly one at a time.
//!
//! Lifecycle, as `State`:
//! - `Dormant`: no instance. The database is open if an earlier instance
//!   used it. The next event activates.
//! - `Live`: an instance runs, its store owning the database.
//!
//! Dormant -> Live on activation (instantiate). Live -> Dormant when an
//! event traps or a commit fails: the instance may hold state that no
//! longer matches the database, so it is dropped; the next event builds a
//! fresh one. After `idle_timeout` without events the actor retires: the
//! instance and the database are dropped; that is hibernation.
//!
//! Group commit: the events already waiting in the mailbox run as one
//! batch in one transaction, each in its own savepoint (a failed event
//! rolls back only its own writes). The batch commits once, and only then
//! do its responses leave (the output gate). A lone event never waits for
//! company: a batch only takes what is already queued.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use tokio::sync::{mpsc, oneshot};
use wasmtime::{PoolConcurrencyLimitError, Store};

use super::ObjectAddr;
use super::event::{Event, EventError};
use super::registry::Spawn;
use crate::bindings::{Object, Request, Response};
use crate::capabilities::ObjectState;
use crate::config::ClassSettings;
use crate::engine::Class;
use crate::limits::{EventLimits, LimitExceeded};
use crate::runtime::Runtime;
use crate::storage::Database;
use crate::storage::catalog::{CatalogUpdate, ObjectSeen, now_ms};

enum State {
    Dormant {
        db: Option<Database>,
    },
    Live {
        store: Store<ObjectState>,
        bindings: Object,
    },
}

/// An event that ran, waiting for its batch to commit.
struct Ran {
    reply: oneshot::Sender<Result<Response, EventError>>,
    result: Result<Response, EventError>,
    /// Whether its writes are in the batch (the guest answered `ok`).
    wrote: bool,
}

pub(crate) struct Actor {
    runtime: Arc<Runtime>,
    object: Arc<ObjectAddr>,
    class: Arc<Class>,
    state: State,
    /// When the last batch started, for the catalog (ms since the epoch).
    last_active: i64,
}

impl Actor {
    pub fn spawn(runtime: Arc<Runtime>, object: Arc<ObjectAddr>, class: Arc<Class>, start: Spawn) {
        let actor = Actor {
            runtime,
            object,
            class,
            state: State::Dormant { db: None },
            last_active: now_ms(),
        };
        tokio::spawn(actor.run(start));
    }

    async fn run(mut self, start: Spawn) {
        let Spawn {
            mut mailbox,
            generation,
            alive,
        } = start;
        let idle_timeout = self.runtime.config().idle_timeout;
        loop {
            let first = match tokio::time::timeout(idle_timeout, mailbox.recv()).await {
                Ok(Some(event)) => event,
                // The host is shutting down and the mailbox is drained.
                Ok(None) => break,
                Err(_idle) => {
                    if self
                        .runtime
                        .objects()
                        .retire(self.object.id(), generation, &mailbox)
                    {
                        self.runtime.metrics().hibernations.inc();
                        tracing::debug!(
                            object = self.object.name(),
                            class = self.object.class(),
                            "hibernating"
                        );
                        break;
                    }
                    continue;
                }
            };
            let control = match first {
                Event::Fetch { .. } => self.run_batch(first, &mut mailbox).await,
                control => Some(control),
            };
            match control {
                Some(Event::Hibernate)
                    if self
                        .runtime
                        .objects()
                        .retire(self.object.id(), generation, &mailbox) =>
                {
                    self.runtime.metrics().evictions.inc();
                    tracing::debug!(
                        object = self.object.name(),
                        class = self.object.class(),
                        "hibernating early to make room"
                    );
                    break;
                }
                Some(Event::Delete { reply }) => {
                    let _ = reply.send(self.delete());
                }
                _ => {}
            }
        }
        self.record_close();
        // Dropping the state drops the instance and closes the database
        // (checkpointing its WAL) before `alive` tells shutdown we are done.
        drop(self.state);
        drop(alive);
    }

    /// Closes the object and removes its files and catalog entry.
    fn delete(&mut self) -> Result<bool, EventError> {
        self.state = State::Dormant { db: None };
        let existed = self
            .runtime
            .data_dir()
            .remove_object_files(self.object.class(), self.object.id())
            .map_err(|error| {
                tracing::error!(object = self.object.name(), class = self.object.class(), %error, "cannot delete");
                EventError::DeleteFailed
            })?;
        self.runtime.record(CatalogUpdate::Removed {
            id: self.object.id().to_string(),
        });
        tracing::info!(
            object = self.object.name(),
            class = self.object.class(),
            existed,
            "deleted"
        );
        Ok(existed)
    }

    /// Tells the catalog the object was active, and its size if its
    /// database is open.
    fn record_close(&mut self) {
        let Some(size) = self.database().map(|db| db.size().unwrap_or(0)) else {
            return;
        };
        self.runtime
            .record(CatalogUpdate::Seen(self.sighting(Some(size))));
    }

    fn sighting(&self, size_bytes: Option<u64>) -> ObjectSeen {
        ObjectSeen {
            id: self.object.id().to_string(),
            class: self.object.class().to_string(),
            name: self.object.name().to_string(),
            at: self.last_active,
            size_bytes,
        }
    }

    /// Runs `first` and whatever is already queued behind it, up to the
    /// configured batch size and delay, then commits them together.
    /// Returns the event other than a request that ended the batch, if any.
    async fn run_batch(
        &mut self,
        first: Event,
        mailbox: &mut mpsc::Receiver<Event>,
    ) -> Option<Event> {
        let config = self.runtime.config();
        let (max_events, max_delay) = (
            config.group_commit_max_events,
            config.group_commit_max_delay,
        );
        let started = Instant::now();
        let mut ran = Vec::new();
        self.last_active = now_ms();
        let mut next = Some(first);
        let mut control = None;
        while let Some(event) = next.take() {
            let Event::Fetch { request, reply } = event else {
                control = Some(event);
                break;
            };
            self.runtime.metrics().events.inc();
            let (result, wrote) = match self.fetch(&request).await {
                Ok((response, wrote)) => (Ok(response), wrote),
                Err(error) => (Err(error), false),
            };
            ran.push(Ran {
                reply,
                result,
                wrote,
            });
            if ran.len() < max_events && started.elapsed() < max_delay {
                next = mailbox.try_recv().ok();
            }
        }
        let committed = match self.database() {
            Some(db) => db.commit(),
            None => Ok(()),
        };
        if let Err(error) = committed {
            tracing::error!(object = self.object.name(), class = self.object.class(), %error, "commit failed");
            self.runtime.metrics().failures.inc();
            if let Some(db) = self.database() {
                db.rollback();
            }
            self.discard_live();
            for event in ran.iter_mut().filter(|event| event.wrote) {
                event.result = Err(EventError::Commit);
            }
        } else {
            self.runtime.metrics().commits.inc();
        }
        for event in ran {
            // The client may have gone; the event is done either way.
            let _ = event.reply.send(event.result);
        }
        control
    }

    /// Runs `fetch` in its own savepoint of the batch's transaction.
    /// Returns the response and whether the event's writes were kept.
    async fn fetch(&mut self, request: &Request) -> Result<(Response, bool), EventError> {
        let (mut store, bindings) = self.activate().await?;
        store.data_mut().limits().start_event();
        store.set_epoch_deadline(1);
        if let Err(error) = store.data_mut().database().begin_event() {
            tracing::error!(object = self.object.name(), class = self.object.class(), %error, "cannot begin a transaction");
            self.discard(store);
            return Err(EventError::Commit);
        }
        let outcome = bindings
            .podhost_object_handler()
            .call_fetch(&mut store, request)
            .await;
        let db = store.data_mut().database();
        match outcome {
            Ok(Ok(response)) => match db.end_event() {
                Ok(()) => {
                    self.state = State::Live { store, bindings };
                    Ok((response, true))
                }
                Err(error) => {
                    tracing::error!(object = self.object.name(), class = self.object.class(), %error, "cannot keep the event's writes");
                    db.undo_event();
                    self.discard(store);
                    Err(EventError::Commit)
                }
            },
            Ok(Err(response)) => {
                db.undo_event();
                self.state = State::Live { store, bindings };
                Ok((response, false))
            }
            Err(trap) => {
                db.undo_event();
                self.runtime.metrics().failures.inc();
                self.discard(store);
                match trap.downcast_ref::<LimitExceeded>() {
                    Some(limit) => {
                        tracing::warn!(
                            object = self.object.name(),
                            class = self.object.class(),
                            "event stopped: {limit}"
                        );
                        Err(EventError::LimitExceeded(limit.clone()))
                    }
                    None => {
                        tracing::warn!(
                            object = self.object.name(),
                            class = self.object.class(),
                            "event trapped: {trap:?}"
                        );
                        Err(EventError::Trapped)
                    }
                }
            }
        }
    }

    /// The live instance, instantiating one (and opening the database) if
    /// the object is dormant.
    async fn activate(&mut self) -> Result<(Store<ObjectState>, Object), EventError> {
        let (db, fresh) = match std::mem::replace(&mut self.state, State::Dormant { db: None }) {
            State::Live { store, bindings } => return Ok((store, bindings)),
            State::Dormant { db: Some(db) } => (db, false),
            State::Dormant { db: None } => {
                let path = self
                    .runtime
                    .data_dir()
                    .object_database(self.object.class(), self.object.id());
                self.last_active = now_ms();
                let db = open_database(
                    path,
                    self.class.settings().clone(),
                    Arc::clone(&self.object),
                )
                .await?;
                self.runtime
                    .record(CatalogUpdate::Seen(self.sighting(None)));
                (db, true)
            }
        };
        let limits = &self.class.settings().limits;
        let limits = EventLimits::new(limits.max_memory_bytes, limits.max_cpu_per_event);
        let state = ObjectState::new(Arc::clone(&self.object), db, limits);
        let mut store = Store::new(self.runtime.engine(), state);
        store.limiter(|state| state.limits());
        store.epoch_deadline_callback(|mut store| store.data_mut().limits().tick());
        store.set_epoch_deadline(1);
        match self.class.instantiate(&mut store).await {
            Ok(bindings) => {
                self.runtime.metrics().activations.inc();
                if fresh
                    && let Err(error) = migrate(
                        Arc::clone(&self.class),
                        Arc::clone(&self.object),
                        &mut store,
                        &bindings,
                    )
                    .await
                {
                    // Close the database too: the next activation reopens
                    // it and tries the migrations again.
                    self.state = State::Dormant { db: None };
                    return Err(error);
                }
                Ok((store, bindings))
            }
            Err(error) => {
                self.discard(store);
                if error.is::<PoolConcurrencyLimitError>() {
                    tracing::warn!(
                        class = self.object.class(),
                        "no room for another instance: {error}"
                    );
                    return Err(EventError::TooManyActive);
                }
                tracing::error!(
                    object = self.object.name(),
                    class = self.object.class(),
                    "activation failed: {error:?}"
                );
                Err(EventError::Activation)
            }
        }
    }

    /// The database, wherever it is (in the live store or kept dormant).
    fn database(&mut self) -> Option<&mut Database> {
        match &mut self.state {
            State::Live { store, .. } => Some(store.data_mut().database()),
            State::Dormant { db } => db.as_mut(),
        }
    }

    /// Drops the instance, keeping the database open for the next one.
    fn discard(&mut self, store: Store<ObjectState>) {
        self.state = State::Dormant {
            db: Some(store.into_data().into_database()),
        };
    }

    /// Drops the live instance, if there is one.
    fn discard_live(&mut self) {
        if let State::Live { .. } = self.state
            && let State::Live { store, .. } =
                std::mem::replace(&mut self.state, State::Dormant { db: None })
        {
            self.discard(store);
        }
    }
}

/// Runs the class's pending migrations on a database just opened.
async fn migrate(
    class: Arc<Class>,
    object: Arc<ObjectAddr>,
    store: &mut Store<ObjectState>,
    bindings: &Object,
) -> Result<(), EventError> {
    let migrations = match class.known_migrations() {
        Some(migrations) => migrations,
        None => {
            let declared = bindings
                .podhost_object_handler()
                .call_migrations(&mut *store)
                .await
                .map_err(|trap| {
                    tracing::error!(
                        class = object.class(),
                        "listing the migrations trapped: {trap:?}"
                    );
                    EventError::Activation
                })?;
            class.learn_migrations(declared)
        }
    };
    match store.data_mut().database().migrate(&migrations) {
        Ok(0) => Ok(()),
        Ok(count) => {
            tracing::info!(
                object = object.name(),
                class = object.class(),
                count,
                "migrated"
            );
            Ok(())
        }
        Err(failure) => {
            tracing::error!(object = object.name(), class = object.class(), "{failure}");
            Err(EventError::Migration(failure))
        }
    }
}

/// Opens the database off the runtime's threads: creating a new file costs
/// a few `fsync`s, and other objects must not wait for them.
async fn open_database(
    path: PathBuf,
    settings: ClassSettings,
    object: Arc<ObjectAddr>,
) -> Result<Database, EventError> {
    match tokio::task::spawn_blocking(move || Database::open(&path, &settings)).await {
        Ok(Ok(db)) => Ok(db),
        Ok(Err(error)) => {
            tracing::error!(
                object = object.name(),
                class = object.class(),
                "cannot open the database: {error:#}"
            );
            Err(EventError::Activation)
        }
        Err(join_error) => {
            tracing::error!(object = object.name(), class = object.class(), %join_error, "opening the database panicked");
            Err(EventError::Activation)
        }
    }
}
