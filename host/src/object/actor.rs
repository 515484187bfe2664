//! The actor of one object: a task that owns the object's store (instance
//! and database) and runs its events strictly one at a time.
//!
//! Lifecycle, as `State`:
//! - `Dormant`: no instance. The database is open if an earlier instance
//!   used it. The next event activates.
//! - `Live`: an instance runs, its store owning the database.
//!
//! Dormant -> Live on activation (instantiate). Live -> Dormant when an
//! event traps or fails to commit: the instance may hold state that no
//! longer matches the database, so it is dropped; the next event builds a
//! fresh one. After `idle_timeout` without events the actor retires: the
//! instance and the database are dropped; that is hibernation.

use std::path::PathBuf;
use std::sync::Arc;

use wasmtime::Store;

use super::ObjectAddr;
use super::event::{Event, EventError};
use super::registry::Spawn;
use crate::bindings::{Object, Request, Response};
use crate::capabilities::ObjectState;
use crate::engine::Class;
use crate::runtime::Runtime;
use crate::storage::{Database, Durability};

enum State {
    Dormant {
        db: Option<Database>,
    },
    Live {
        store: Store<ObjectState>,
        bindings: Object,
    },
}

pub(crate) struct Actor {
    runtime: Arc<Runtime>,
    object: Arc<ObjectAddr>,
    class: Arc<Class>,
    state: State,
}

impl Actor {
    pub fn spawn(runtime: Arc<Runtime>, object: Arc<ObjectAddr>, class: Arc<Class>, start: Spawn) {
        let actor = Actor {
            runtime,
            object,
            class,
            state: State::Dormant { db: None },
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
            let event = match tokio::time::timeout(idle_timeout, mailbox.recv()).await {
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
            self.handle(event).await;
        }
        // Dropping the state drops the instance and closes the database
        // (checkpointing its WAL) before `alive` tells shutdown we are done.
        drop(self.state);
        drop(alive);
    }

    async fn handle(&mut self, event: Event) {
        match event {
            Event::Fetch { request, reply } => {
                let result = self.fetch(&request).await;
                // The client may have gone; the event is done either way.
                let _ = reply.send(result);
            }
        }
    }

    /// Runs `fetch` in a transaction that commits before the response
    /// leaves (the output gate).
    async fn fetch(&mut self, request: &Request) -> Result<Response, EventError> {
        let runtime = Arc::clone(&self.runtime);
        let metrics = runtime.metrics();
        metrics.events.inc();
        let (mut store, bindings) = self.activate().await?;
        if let Err(error) = store.data_mut().database().begin() {
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
            Ok(Ok(response)) => match db.commit() {
                Ok(()) => {
                    self.state = State::Live { store, bindings };
                    Ok(response)
                }
                Err(error) => {
                    tracing::error!(object = self.object.name(), class = self.object.class(), %error, "commit failed");
                    db.rollback();
                    metrics.failures.inc();
                    self.discard(store);
                    Err(EventError::Commit)
                }
            },
            Ok(Err(response)) => {
                db.rollback();
                self.state = State::Live { store, bindings };
                Ok(response)
            }
            Err(trap) => {
                db.rollback();
                metrics.failures.inc();
                tracing::warn!(
                    object = self.object.name(),
                    class = self.object.class(),
                    "event trapped: {trap:?}"
                );
                self.discard(store);
                Err(EventError::Trapped)
            }
        }
    }

    /// The live instance, instantiating one (and opening the database) if
    /// the object is dormant.
    async fn activate(&mut self) -> Result<(Store<ObjectState>, Object), EventError> {
        let db = match std::mem::replace(&mut self.state, State::Dormant { db: None }) {
            State::Live { store, bindings } => return Ok((store, bindings)),
            State::Dormant { db: Some(db) } => db,
            State::Dormant { db: None } => {
                let path = self
                    .runtime
                    .data_dir()
                    .object_database(self.object.class(), self.object.id());
                open_database(
                    path,
                    self.runtime.config().durability,
                    Arc::clone(&self.object),
                )
                .await?
            }
        };
        let config = self.runtime.config();
        let state = ObjectState::new(Arc::clone(&self.object), db, config.max_memory_bytes);
        let mut store = Store::new(self.runtime.engine(), state);
        store.limiter(|state| state.limits());
        match self.class.instantiate(&mut store).await {
            Ok(bindings) => {
                self.runtime.metrics().activations.inc();
                Ok((store, bindings))
            }
            Err(error) => {
                tracing::error!(
                    object = self.object.name(),
                    class = self.object.class(),
                    "activation failed: {error:?}"
                );
                self.discard(store);
                Err(EventError::Activation)
            }
        }
    }

    /// Drops the instance, keeping the database open for the next one.
    fn discard(&mut self, store: Store<ObjectState>) {
        self.state = State::Dormant {
            db: Some(store.into_data().into_database()),
        };
    }
}

/// Opens the database off the runtime's threads: creating a new file costs
/// a few `fsync`s, and other objects must not wait for them.
async fn open_database(
    path: PathBuf,
    durability: Durability,
    object: Arc<ObjectAddr>,
) -> Result<Database, EventError> {
    match tokio::task::spawn_blocking(move || Database::open(&path, durability)).await {
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
