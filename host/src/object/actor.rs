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
//! Execution: the actor's task lives on the runtime's threads, but only
//! waits there. For its object's events it takes a turn of its class's
//! share and hands itself and its mailbox to a guest thread (see
//! `execution`), which runs batches while more events wait, up to
//! [`TIME_SLICE`], and hands them back. Every event runs under the
//! watchdog, from activation to its handler's return.
//!
//! Group commit: the events already waiting in the mailbox run as one
//! batch in one transaction, each in its own savepoint (a failed event
//! rolls back only its own writes). The batch commits once, and only then
//! do its responses leave (the output gate), so a response never shows a
//! write that was not kept. A lone event never waits for company.

mod alarm;

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rusqlite::ErrorCode;
use tokio::sync::{mpsc, oneshot};
use wasmtime::{PoolConcurrencyLimitError, Store};

use super::ObjectAddr;
use super::event::{Event, EventError, SocketEvent, SocketOutcome};
use super::registry::Spawn;
use crate::alarms::write_alarm;
use crate::bindings::podhost::object::types::{Message as SocketMessage, SocketAccept};
use crate::bindings::{Object, Request, Response};
use crate::capabilities::ObjectState;
use crate::capabilities::events::{Backlog, read_backlog};
use crate::config::ClassSettings;
use crate::engine::Class;
use crate::execution::{Budget, EventWatch, Verdict, metered};
use crate::limits::{Cancelled, EventLimits, LimitExceeded};
use crate::runtime::Runtime;
use crate::sockets::{LoggedEvent, MAX_TAG_BYTES, MAX_TAGS, Outgoing};
use crate::storage::Database;
use crate::storage::catalog::{CatalogUpdate, ObjectSeen, now_ms};

/// How long a guest thread keeps running one object's waiting events
/// before it gives the thread (and its class's turn) to others.
const TIME_SLICE: Duration = Duration::from_millis(10);

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
    /// An event of the batch that was kept set or cancelled the alarm.
    alarm_changed: bool,
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
            alarm_changed: false,
        };
        tokio::spawn(actor.run(start));
    }

    async fn run(self, start: Spawn) {
        let Spawn {
            mut mailbox,
            generation,
            alive,
        } = start;
        let idle_timeout = self.runtime.config().idle_timeout;
        let mut actor = self;
        let mut next = None;
        loop {
            let event = match next.take() {
                Some(event) => event,
                None => match tokio::time::timeout(idle_timeout, mailbox.recv()).await {
                    Ok(Some(event)) => event,
                    // The host is shutting down and the mailbox is drained.
                    Ok(None) => break,
                    Err(_idle) => {
                        if actor.hibernate(generation, &mailbox, false).await {
                            break;
                        }
                        continue;
                    }
                },
            };
            match event {
                Event::Hibernate => {
                    if actor.hibernate(generation, &mailbox, true).await {
                        break;
                    }
                }
                Event::Delete { reply } => {
                    let _ = reply.send(actor.delete().await);
                }
                guest_event => {
                    let Some(turn) = actor.class.turn().await else {
                        break;
                    };
                    let runtime = Arc::clone(&actor.runtime);
                    let object = Arc::clone(&actor.object);
                    let ran = runtime
                        .executor()
                        .run(move |handle| {
                            let (mut actor, mut mailbox) = (actor, mailbox);
                            let next = handle.block_on(actor.run_guest(guest_event, &mut mailbox));
                            (actor, mailbox, next)
                        })
                        .await;
                    drop(turn);
                    match ran {
                        Ok((back, its_mailbox, control)) => {
                            (actor, mailbox, next) = (back, its_mailbox, control);
                        }
                        Err(lost) => {
                            // The object's instance and database went with
                            // the thread; the next event starts a new actor.
                            tracing::error!(
                                object = object.name(),
                                class = object.class(),
                                "{lost}"
                            );
                            drop(alive);
                            return;
                        }
                    }
                }
            }
        }
        actor.close().await;
        drop(alive);
    }

    /// On a guest thread: runs `first` and the events queued behind it for
    /// up to a time slice. Returns the event to handle next, if it has one
    /// it did not run (hibernate, delete, or the next after the slice).
    async fn run_guest(
        &mut self,
        first: Event,
        mailbox: &mut mpsc::Receiver<Event>,
    ) -> Option<Event> {
        let started = Instant::now();
        let mut event = Some(first);
        while let Some(current) = event.take() {
            let control = match current {
                batch @ (Event::Fetch { .. } | Event::Socket { .. }) => {
                    self.run_batch(batch, mailbox).await
                }
                Event::Subscribe {
                    after,
                    subscriber,
                    reply,
                } => {
                    let _ = reply.send(self.subscribe(after, subscriber).await);
                    None
                }
                Event::Alarm { retries, reply } => {
                    self.last_active = now_ms();
                    self.fire_alarm(retries).await;
                    let _ = reply.send(());
                    None
                }
                control @ (Event::Hibernate | Event::Delete { .. }) => return Some(control),
            };
            event = control.or_else(|| mailbox.try_recv().ok());
            if started.elapsed() >= TIME_SLICE {
                return event;
            }
        }
        None
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

    /// Commits the batch, if one is open. It runs on a guest thread, so a
    /// commit waiting for `fsync` holds up no one else.
    fn commit(&mut self) -> rusqlite::Result<()> {
        let Some(db) = self.database() else {
            return Ok(());
        };
        let committed = db.commit();
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
        let watch = self.watch();
        let (mut store, bindings) = self.activate(&watch).await?;
        drop(watch);
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
        let watch = self.watch();
        let (mut store, bindings) = self.activate(&watch).await?;
        store
            .data_mut()
            .limits()
            .start_event(Arc::clone(watch.stop()), watch.budget());
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
        let call = async {
            match call {
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
            }
        };
        // A guest waiting on a host future (a sleep, say) when the
        // watchdog stops it is dropped there; one running wasm traps at
        // the next epoch tick, one running SQL is interrupted.
        let outcome = tokio::select! {
            biased;
            outcome = metered(watch.stop(), call) => outcome,
            () = watch.stop().stopped() => Err(wasmtime::Error::msg("stopped while waiting")),
        };
        let verdict = watch.verdict();
        drop(watch);
        // Sent only if the event's writes are kept.
        let outbox = store.data_mut().take_outbox();
        let alarm_changed = store.data_mut().take_alarm_change();
        let db = store.data_mut().database();
        if let Some(verdict) = verdict {
            // Whatever the guest returned, it broke a limit (or the host is
            // going away): nothing of the event stands.
            db.undo_event();
            self.runtime.metrics().failures.inc();
            self.discard(store);
            return Err(self.stopped(verdict));
        }
        match outcome {
            Ok(returned) if returned.succeeded() => match db.end_event() {
                Ok(()) => {
                    self.outbox.extend(outbox);
                    self.alarm_changed |= alarm_changed;
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
                if trap.is::<Cancelled>() {
                    return Err(EventError::ShuttingDown);
                }
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

    /// A watch for an event about to run, with the class's limits.
    fn watch(&self) -> EventWatch {
        let limits = &self.class.settings().limits;
        self.runtime.executor().watchdog().watch(Budget {
            cpu: limits.max_cpu_per_event,
            wall: limits.max_wall_time_per_event,
        })
    }

    /// The error for an event the watchdog stopped.
    fn stopped(&self, verdict: Verdict) -> EventError {
        match LimitExceeded::from_verdict(verdict) {
            Some(limit) => {
                tracing::warn!(
                    object = self.object.name(),
                    class = self.object.class(),
                    "event stopped: {limit}"
                );
                EventError::LimitExceeded(limit)
            }
            None => EventError::ShuttingDown,
        }
    }

    /// The live instance, instantiating one (and opening the database and
    /// migrating it) if the object is dormant. The work counts toward the
    /// event `watch` watches.
    async fn activate(
        &mut self,
        watch: &EventWatch,
    ) -> Result<(Store<ObjectState>, Object), EventError> {
        if let Some(verdict) = watch.verdict() {
            return Err(self.stopped(verdict));
        }
        let db = match std::mem::replace(&mut self.state, State::Dormant { db: None }) {
            State::Live {
                mut store,
                bindings,
            } => {
                watch.watch_sql(store.data_mut().database().interrupt_handle());
                return Ok((store, bindings));
            }
            State::Dormant { db: Some(db) } => db,
            State::Dormant { db: None } => {
                let path = self
                    .runtime
                    .data_dir()
                    .object_database(self.object.class(), self.object.id());
                self.last_active = now_ms();
                let db = open_database(&path, self.class.settings(), &self.object)?;
                self.runtime
                    .record(CatalogUpdate::Seen(self.sighting(None)));
                self.reconcile_alarm(&db);
                db
            }
        };
        watch.watch_sql(db.interrupt_handle());
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
        );
        let mut store = Store::new(self.runtime.engine(), state);
        store.limiter(|state| state.limits());
        store.epoch_deadline_callback(|mut store| store.data_mut().limits().tick());
        store
            .data_mut()
            .limits()
            .start_event(Arc::clone(watch.stop()), watch.budget());
        store.set_epoch_deadline(1);
        let bindings = match self.class.instantiate(&mut store).await {
            Ok(bindings) => bindings,
            Err(error) => {
                self.discard(store);
                if let Some(verdict) = watch.verdict() {
                    return Err(self.stopped(verdict));
                }
                if error.is::<PoolConcurrencyLimitError>() {
                    tracing::warn!(
                        class = self.object.class(),
                        "no room for another instance: {error}"
                    );
                    return Err(EventError::TooManyActive);
                }
                if let Some(limit) = error.downcast_ref::<LimitExceeded>() {
                    tracing::warn!(
                        object = self.object.name(),
                        class = self.object.class(),
                        "activation stopped: {limit}"
                    );
                    return Err(EventError::LimitExceeded(limit.clone()));
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
        if !store.data_mut().database().is_migrated() {
            let migrated = migrate(
                Arc::clone(&self.class),
                Arc::clone(&self.object),
                &mut store,
                &bindings,
            )
            .await;
            let failed = match (watch.verdict(), migrated) {
                (Some(verdict), _) => Some(self.stopped(verdict)),
                (None, Err(error)) => Some(error),
                (None, Ok(())) => None,
            };
            if let Some(error) = failed {
                // Close the database too: the next activation reopens it
                // and tries the migrations again.
                self.discard(store);
                self.close().await;
                return Err(error);
            }
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

/// Opens the object's database. This runs on a guest thread: creating a
/// new file costs a few `fsync`s, and they hold up no one else.
fn open_database(
    path: &Path,
    settings: &ClassSettings,
    object: &ObjectAddr,
) -> Result<Database, EventError> {
    Database::open(path, &settings.database()).map_err(|error| {
        tracing::error!(
            object = object.name(),
            class = object.class(),
            "cannot open the database: {error:#}"
        );
        EventError::Activation
    })
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
