//! The actor of one object: a task that owns the object's store (instance
//! and database) and runs its events strictly one at a time.
//!
//! Lifecycle, as `State`:
//! - `Dormant`: no instance. The database is open if an earlier instance
//!   used it. The next event activates.
//! - `Live`: an instance runs, its store owning the database.
//!
//! Dormant -> Live on activation (instantiate, then the class's pending
//! migrations if this connection has not run them). Live -> Dormant when an
//! event traps, breaks a limit or loses its writes: the instance may hold
//! state that no longer matches the database, so it is dropped and the
//! next event builds a fresh one. After `idle_timeout` without events (or
//! when asked to make room) the actor closes the database, then leaves the
//! registry; that is hibernation. Closing first means a successor never
//! opens the file while this actor still holds it.
//!
//! Group commit: the events already waiting in the mailbox run as one
//! batch in one transaction, each in its own savepoint (a failed event
//! rolls back only its own writes). The batch commits once, and only then
//! do its responses leave (the output gate), so a response never shows a
//! write that was not kept. A lone event never waits for company.

mod alarm;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use rusqlite::ErrorCode;
use tokio::runtime::{Handle, RuntimeFlavor};
use tokio::sync::{mpsc, oneshot};
use wasmtime::{PoolConcurrencyLimitError, Store};

use super::ObjectAddr;
use super::event::{Event, EventError, SocketEvent, SocketOutcome};
use super::registry::Spawn;
use crate::bindings::podhost::object::types::{Message as SocketMessage, SocketAccept};
use crate::bindings::{Object, Request, Response};
use crate::capabilities::ObjectState;
use crate::capabilities::alarms::write_alarm;
use crate::capabilities::events::{Backlog, read_backlog};
use crate::config::ClassSettings;
use crate::engine::Class;
use crate::limits::{EventLimits, LimitExceeded};
use crate::runtime::Runtime;
use crate::sockets::{LoggedEvent, MAX_TAG_BYTES, MAX_TAGS, Outgoing};
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

/// A handler export to call.
#[derive(Clone, Copy)]
enum Call<'a> {
    Fetch(&'a Request),
    /// With the retry count.
    Alarm(u32),
    SocketOpen(u64, &'a Request),
    SocketMessage(u64, &'a SocketMessage),
    SocketClose(u64, u16, &'a str, &'a [u8]),
}

/// What a handler export returned; `Err` is the guest's own failure.
enum Returned {
    Fetch(Result<Response, Response>),
    Alarm(Result<(), String>),
    SocketOpen(Result<SocketAccept, Response>),
    Socket(Result<(), String>),
}

impl Returned {
    /// Whether the event's writes are kept.
    fn succeeded(&self) -> bool {
        match self {
            Returned::Fetch(result) => result.is_ok(),
            Returned::Alarm(result) | Returned::Socket(result) => result.is_ok(),
            Returned::SocketOpen(result) => result.is_ok(),
        }
    }
}

/// An event that ran, waiting for its batch to commit.
enum Ran {
    Fetch {
        reply: oneshot::Sender<Result<Response, EventError>>,
        result: Result<Response, EventError>,
    },
    Socket {
        reply: oneshot::Sender<Result<SocketOutcome, EventError>>,
        result: Result<SocketOutcome, EventError>,
    },
}

impl Ran {
    /// Its writes were lost with the batch's.
    fn fail(&mut self) {
        match self {
            Ran::Fetch { result, .. } => *result = Err(EventError::Commit),
            Ran::Socket { result, .. } => *result = Err(EventError::Commit),
        }
    }

    fn send(self) {
        // The client may have gone; the event is done either way.
        match self {
            Ran::Fetch { reply, result } => drop(reply.send(result)),
            Ran::Socket { reply, result } => drop(reply.send(result)),
        }
    }
}

pub(crate) struct Actor {
    runtime: Arc<Runtime>,
    object: Arc<ObjectAddr>,
    class: Arc<Class>,
    state: State,
    /// When the last batch started, for the catalog (ms since the epoch).
    last_active: i64,
    /// When the catalog's alarm index says to wake this object, as far as
    /// this actor knows.
    indexed_alarm: Option<i64>,
    /// Socket messages and closes of the batch's successful events, sent
    /// when it commits.
    outbox: Vec<Outgoing>,
}

impl Actor {
    pub fn spawn(runtime: Arc<Runtime>, object: Arc<ObjectAddr>, class: Arc<Class>, start: Spawn) {
        let actor = Actor {
            runtime,
            object,
            class,
            state: State::Dormant { db: None },
            last_active: now_ms(),
            indexed_alarm: None,
            outbox: Vec::new(),
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
            let control = match tokio::time::timeout(idle_timeout, mailbox.recv()).await {
                Ok(Some(first @ (Event::Fetch { .. } | Event::Socket { .. }))) => {
                    self.run_batch(first, &mut mailbox).await
                }
                Ok(Some(control)) => Some(control),
                // The host is shutting down and the mailbox is drained.
                Ok(None) => break,
                Err(_idle) => {
                    if self.hibernate(generation, &mailbox, false).await {
                        break;
                    }
                    continue;
                }
            };
            match control {
                Some(Event::Hibernate) => {
                    if self.hibernate(generation, &mailbox, true).await {
                        break;
                    }
                }
                Some(Event::Delete { reply }) => {
                    let _ = reply.send(self.delete().await);
                }
                Some(Event::Subscribe {
                    after,
                    subscriber,
                    reply,
                }) => {
                    let _ = reply.send(self.subscribe(after, subscriber).await);
                }
                Some(Event::Alarm { retries, reply }) => {
                    self.last_active = now_ms();
                    self.fire_alarm(retries).await;
                    let _ = reply.send(());
                }
                Some(Event::Fetch { .. } | Event::Socket { .. }) | None => {}
            }
        }
        self.close().await;
        drop(alive);
    }

    /// Closes the object, then leaves the registry unless events arrived
    /// meanwhile (the next one reopens). `early` when asked to make room
    /// rather than idle. Returns whether the actor should stop.
    async fn hibernate(
        &mut self,
        generation: u64,
        mailbox: &mpsc::Receiver<Event>,
        early: bool,
    ) -> bool {
        self.close().await;
        if !self
            .runtime
            .objects()
            .retire(self.object.id(), generation, mailbox)
        {
            return false;
        }
        let metrics = self.runtime.metrics();
        if early {
            &metrics.evictions
        } else {
            &metrics.hibernations
        }
        .inc();
        tracing::debug!(
            object = self.object.name(),
            class = self.object.class(),
            early,
            "hibernating"
        );
        true
    }

    /// Drops the instance and closes the database, off the runtime's
    /// threads: closing checkpoints the WAL and syncs the file.
    async fn close(&mut self) {
        self.record_close();
        let state = std::mem::replace(&mut self.state, State::Dormant { db: None });
        if matches!(state, State::Dormant { db: None }) {
            return;
        }
        if let Err(error) = tokio::task::spawn_blocking(move || drop(state)).await {
            tracing::error!(object = self.object.name(), %error, "closing the object panicked");
        }
    }

    /// Closes the object and removes its files and catalog entry.
    async fn delete(&mut self) -> Result<bool, EventError> {
        self.close().await;
        let data = self.runtime.data_dir().clone();
        let (class, id) = (
            self.object.class().to_string(),
            self.object.id().to_string(),
        );
        let removed =
            tokio::task::spawn_blocking(move || data.remove_object_files(&class, &id)).await;
        let existed = match removed {
            Ok(Ok(existed)) => existed,
            Ok(Err(error)) => {
                tracing::error!(object = self.object.name(), class = self.object.class(), %error, "cannot delete");
                return Err(EventError::DeleteFailed);
            }
            Err(error) => {
                tracing::error!(object = self.object.name(), %error, "deleting panicked");
                return Err(EventError::DeleteFailed);
            }
        };
        self.runtime.record(CatalogUpdate::Removed {
            id: self.object.id().to_string(),
        });
        self.runtime.sockets().forget_object(self.object.id());
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
        self.last_active = now_ms();
        let mut ran = Vec::new();
        let mut count = 0;
        let mut next = Some(first);
        let mut control = None;
        while let Some(event) = next.take() {
            match event {
                Event::Fetch { request, reply } => {
                    self.runtime.metrics().events.inc();
                    let result = self.fetch(&request).await;
                    ran.push(Ran::Fetch { reply, result });
                }
                Event::Socket {
                    socket,
                    happened,
                    reply,
                } => {
                    self.runtime.metrics().events.inc();
                    let result = self.socket_event(socket, happened).await;
                    ran.push(Ran::Socket { reply, result });
                }
                control_event => {
                    control = Some(control_event);
                    break;
                }
            }
            count += 1;
            if self.database().is_some_and(|db| db.batch_lost()) {
                // An event's statement (ON CONFLICT ROLLBACK, RAISE(ROLLBACK))
                // or SQLite itself ended the whole transaction: the writes of
                // every event so far are gone, and so is what their
                // responses may show. Fail them; the batch goes on afresh.
                tracing::warn!(
                    object = self.object.name(),
                    class = self.object.class(),
                    "an event rolled back its whole batch"
                );
                self.runtime.metrics().failures.inc();
                if let Some(db) = self.database() {
                    db.forget_lost_batch();
                }
                self.discard_live();
                self.outbox.clear();
                for mut event in ran.drain(..) {
                    event.fail();
                    event.send();
                }
            }
            if count < max_events && started.elapsed() < max_delay {
                next = mailbox.try_recv().ok();
            }
        }
        let alarm = self.alarm_before_commit();
        if let Err(error) = self.commit() {
            tracing::error!(object = self.object.name(), class = self.object.class(), %error, "commit failed");
            self.runtime.metrics().failures.inc();
            if let Some(db) = self.database() {
                db.rollback();
            }
            self.discard_live();
            self.outbox.clear();
            ran.iter_mut().for_each(Ran::fail);
        } else {
            self.alarm_after_commit(alarm);
            self.send_outbox();
        }
        ran.into_iter().for_each(Ran::send);
        control
    }

    /// Commits the batch, if one is open. A commit that waits for fsync,
    /// on a multi-threaded runtime, hands this thread's other tasks to
    /// another thread meanwhile, so other objects keep running and their
    /// commits' fsyncs overlap. Other commits are too short to be worth
    /// the hand-off.
    fn commit(&mut self) -> rusqlite::Result<()> {
        let Some(db) = self.database() else {
            return Ok(());
        };
        let committed = if db.commit_syncs()
            && Handle::current().runtime_flavor() == RuntimeFlavor::MultiThread
        {
            tokio::task::block_in_place(|| db.commit())
        } else {
            db.commit()
        };
        if committed.is_ok() {
            self.runtime.metrics().commits.inc();
        }
        committed
    }

    /// Reads what an SSE client missed and registers it for what comes
    /// next, in one step between batches: no committed event is missed or
    /// sent twice.
    async fn subscribe(
        &mut self,
        after: Option<u64>,
        subscriber: mpsc::Sender<LoggedEvent>,
    ) -> Result<Backlog, EventError> {
        let (mut store, bindings) = self.activate().await?;
        let backlog = match after {
            Some(after) => read_backlog(store.data_mut().database().host(), after),
            None => Ok(Backlog::default()),
        };
        self.state = State::Live { store, bindings };
        let backlog = backlog.map_err(|error| {
            tracing::error!(object = self.object.name(), class = self.object.class(), %error, "cannot read the event log");
            EventError::EventLog
        })?;
        self.runtime
            .sockets()
            .subscribe(self.object.id(), subscriber);
        Ok(backlog)
    }

    /// Hands the committed batch's socket messages to the hub.
    fn send_outbox(&mut self) {
        if !self.outbox.is_empty() {
            let outbox = std::mem::take(&mut self.outbox);
            self.runtime.sockets().deliver(self.object.id(), outbox);
        }
    }

    /// Runs `fetch` in its own savepoint of the batch's transaction.
    async fn fetch(&mut self, request: &Request) -> Result<Response, EventError> {
        match self.run_event(Call::Fetch(request)).await? {
            Returned::Fetch(Ok(response) | Err(response)) => Ok(response),
            _ => unreachable!("fetch returns a response"),
        }
    }

    /// Runs a socket event in its own savepoint of the batch's transaction.
    async fn socket_event(
        &mut self,
        socket: u64,
        happened: SocketEvent,
    ) -> Result<SocketOutcome, EventError> {
        let call = match &happened {
            SocketEvent::Open(request) => Call::SocketOpen(socket, request),
            SocketEvent::Message(message) => Call::SocketMessage(socket, message),
            SocketEvent::Close {
                code,
                reason,
                attachment,
            } => Call::SocketClose(socket, *code, reason, attachment),
        };
        match self.run_event(call).await? {
            Returned::SocketOpen(Ok(accept)) => {
                self.runtime
                    .sockets()
                    .set_tags(self.object.id(), socket, accept.tags);
                Ok(SocketOutcome::Accepted)
            }
            Returned::SocketOpen(Err(response)) => Ok(SocketOutcome::Refused(response)),
            Returned::Socket(Err(message)) => {
                tracing::debug!(
                    object = self.object.name(),
                    class = self.object.class(),
                    socket,
                    "socket event failed: {message}"
                );
                Ok(SocketOutcome::Handled)
            }
            _ => Ok(SocketOutcome::Handled),
        }
    }

    /// Runs one handler export in its own savepoint of the batch's
    /// transaction: keeps its writes if it succeeded, undoes them if it
    /// returned an error, and drops the instance if it trapped.
    async fn run_event(&mut self, call: Call<'_>) -> Result<Returned, EventError> {
        let fresh = !matches!(self.state, State::Live { .. });
        let (mut store, bindings) = self.activate().await?;
        store.data_mut().limits().start_event();
        store.set_epoch_deadline(1);
        let db = store.data_mut().database();
        let begun = db.begin_event().and_then(|()| match call {
            // The alarm is cleared as its handler starts, in its
            // transaction: the handler may set the next one.
            Call::Alarm(_) => db.host_write(|conn| write_alarm(conn, None)),
            _ => Ok(()),
        });
        if let Err(error) = begun {
            tracing::error!(object = self.object.name(), class = self.object.class(), %error, "cannot begin a transaction");
            db.undo_event();
            self.discard(store);
            return Err(EventError::Commit);
        }
        let handler = bindings.podhost_object_handler();
        let outcome = match call {
            Call::Fetch(request) => handler
                .call_fetch(&mut store, request)
                .await
                .map(Returned::Fetch),
            Call::Alarm(retry_count) => handler
                .call_alarm(&mut store, retry_count)
                .await
                .map(Returned::Alarm),
            Call::SocketOpen(socket, request) => handler
                .call_socket_open(&mut store, socket, request)
                .await
                .map(|result| Returned::SocketOpen(result.and_then(checked_accept))),
            Call::SocketMessage(socket, message) => handler
                .call_socket_message(&mut store, socket, message)
                .await
                .map(Returned::Socket),
            Call::SocketClose(socket, code, reason, attachment) => handler
                .call_socket_close(&mut store, socket, code, reason, attachment)
                .await
                .map(Returned::Socket),
        };
        // Sent only if the event's writes are kept.
        let outbox = store.data_mut().take_outbox();
        let db = store.data_mut().database();
        if db.take_deadline_hit() {
            // The guest's SQL was stopped at the event's time limit.
            let limit = db.event_budget();
            db.undo_event();
            self.runtime.metrics().failures.inc();
            self.discard(store);
            tracing::warn!(
                object = self.object.name(),
                class = self.object.class(),
                "event's SQL stopped at {limit:?}"
            );
            return Err(EventError::LimitExceeded(LimitExceeded::Cpu(limit)));
        }
        match outcome {
            Ok(returned) if returned.succeeded() => match db.end_event() {
                Ok(()) => {
                    self.outbox.extend(outbox);
                    self.state = State::Live { store, bindings };
                    Ok(returned)
                }
                Err(error) if error.sqlite_error_code() == Some(ErrorCode::ConstraintViolation) => {
                    db.undo_event();
                    self.state = State::Live { store, bindings };
                    Err(EventError::DeferredConstraint)
                }
                Err(error) => {
                    tracing::error!(object = self.object.name(), class = self.object.class(), %error, "cannot keep the event's writes");
                    db.undo_event();
                    self.discard(store);
                    Err(EventError::Commit)
                }
            },
            Ok(returned) => {
                db.undo_event();
                if fresh {
                    // The instance was built in this event (the guest's
                    // activation, say, created its tables), and that was
                    // undone with it: the next event builds a new one.
                    self.discard(store);
                } else {
                    self.state = State::Live { store, bindings };
                }
                Ok(returned)
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

    /// The live instance, instantiating one (and opening the database and
    /// migrating it) if the object is dormant.
    async fn activate(&mut self) -> Result<(Store<ObjectState>, Object), EventError> {
        let db = match std::mem::replace(&mut self.state, State::Dormant { db: None }) {
            State::Live { store, bindings } => return Ok((store, bindings)),
            State::Dormant { db: Some(db) } => db,
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
                self.reconcile_alarm(&db);
                db
            }
        };
        let limits = &self.class.settings().limits;
        let limits = EventLimits::new(limits.max_memory_bytes, limits.max_cpu_per_event);
        let state = ObjectState::new(
            Arc::clone(&self.object),
            db,
            limits,
            Arc::clone(self.runtime.sockets()),
            self.runtime.guest_logs(),
        );
        let mut store = Store::new(self.runtime.engine(), state);
        store.limiter(|state| state.limits());
        store.epoch_deadline_callback(|mut store| store.data_mut().limits().tick());
        store.set_epoch_deadline(1);
        let bindings = match self.class.instantiate(&mut store).await {
            Ok(bindings) => bindings,
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
                return Err(EventError::Activation);
            }
        };
        self.runtime.metrics().activations.inc();
        if !store.data_mut().database().is_migrated()
            && let Err(error) = migrate(
                Arc::clone(&self.class),
                Arc::clone(&self.object),
                &mut store,
                &bindings,
            )
            .await
        {
            // Close the database too: the next activation reopens it and
            // tries the migrations again.
            self.discard(store);
            self.close().await;
            return Err(error);
        }
        Ok((store, bindings))
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

/// The accept a guest returned, if its tags are within the limits; a 500
/// refusal naming the problem otherwise.
fn checked_accept(accept: SocketAccept) -> Result<SocketAccept, Response> {
    let problem = if accept.tags.len() > MAX_TAGS {
        Some(format!("a socket has at most {MAX_TAGS} tags"))
    } else if accept
        .tags
        .iter()
        .any(|tag| tag.is_empty() || tag.len() > MAX_TAG_BYTES)
    {
        Some(format!("a socket tag has 1 to {MAX_TAG_BYTES} bytes"))
    } else {
        None
    };
    match problem {
        None => Ok(accept),
        Some(problem) => Err(Response {
            status: 500,
            headers: vec![("content-type".into(), b"application/json".to_vec())],
            body: serde_json::json!({ "error": { "code": "invalid_socket_accept", "message": problem } })
                .to_string()
                .into_bytes(),
        }),
    }
}
