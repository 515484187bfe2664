//! The actor of one object: a task that owns the object's store (instance
//! and database) and runs its events strictly one at a time.
//!
//! - [`state`]: the lifecycle (`Closed`, `Dormant`, `Live`) and its
//!   transitions; asked to make room for another instance, the actor drops
//!   its instance and keeps its database open; hibernation (after
//!   `idle_timeout`, or when asked to make room for another database)
//!   closes the database, then leaves the registry, so a successor never
//!   opens the file while this actor holds it. The actor tells the
//!   registry whenever it gains or loses an instance (`max_active` counts
//!   instances).
//! - [`activation`]: opening, instantiating, migrating.
//! - [`dispatch`]: the handler exports, typed end to end.
//! - [`batch`]: the output gate.
//! - `alarm`: firing the alarm, retries, the catalog's index.
//! - `admin`: the operator's inspect, query, export and import, between
//!   batches and without an instance.
//!
//! Execution: the actor's task lives on the runtime's threads, but only
//! waits there. For its object's events it takes a turn of its class's
//! share and hands itself and its mailbox to a guest thread (see
//! `execution`), which runs batches while more events wait, up to
//! [`TIME_SLICE`], and hands them back. Every event runs under the
//! watchdog, from activation to its handler's return, in a span naming the
//! object and the event's kind.
//!
//! Group commit: the events already waiting in the mailbox run as one
//! batch in one transaction, each in its own savepoint (a failed event
//! rolls back only its own writes). The batch commits once, and only then
//! do its responses leave (the output gate), so a response never shows a
//! write that was not kept. A lone event never waits for company.

mod activation;
mod admin;
mod alarm;
mod batch;
mod dispatch;
mod replica;
mod state;

use std::sync::Arc;
use std::time::{Duration, Instant};

use rusqlite::ErrorCode;
use tokio::sync::mpsc;
use tracing::Instrument as _;

use self::batch::{Batch, Held};
use self::dispatch::{Handler, Outcome as _};
use self::state::{Live, State};
use super::ObjectAddr;
use super::event::{Event, EventError, SocketEvent, SocketOutcome};
use super::registry::Spawn;
use crate::alarms::write_alarm;
use crate::bindings::{Request, Response};
use crate::capabilities::events::{Backlog, read_backlog};
use crate::capabilities::objects::CallChain;
use crate::engine::Class;
use crate::execution::metered;
use crate::limits::{Cancelled, LimitExceeded};
use crate::logs::Level;
use crate::metrics;
use crate::runtime::Runtime;
use crate::sockets::LoggedEvent;
use crate::storage::Database;
use crate::storage::catalog::{CatalogUpdate, ObjectSeen, now_ms};

/// How long a guest thread keeps running one object's waiting events
/// before it gives the thread (and its class's turn) to others.
const TIME_SLICE: Duration = Duration::from_millis(10);

pub(crate) struct Actor {
    runtime: Arc<Runtime>,
    object: Arc<ObjectAddr>,
    class: Arc<Class>,
    state: State,
    /// What the open batch holds back until it commits.
    batch: Batch,
    /// When the last batch started, for the catalog (ms since the epoch).
    last_active: i64,
    /// When the catalog's alarm index says to wake this object, as far as
    /// this actor knows.
    indexed_alarm: Option<i64>,
    /// In a cluster, the last write of the alarm index entry to etcd
    /// (`cluster/alarm_index.rs`), awaited before a commit it must precede.
    alarm_mirrored: Option<futures_util::future::BoxFuture<'static, ()>>,
    /// The chain of calls of the event about to run, if another object
    /// sent it (`objects.call`).
    call_chain: Option<CallChain>,
    /// An event of the open batch deleted its own object: done once the
    /// batch commits.
    delete_after_batch: bool,
    /// Names the object in every log line of its events.
    span: tracing::Span,
    /// Its class's metric handles, looked up once.
    metrics: Arc<metrics::ClassMetrics>,
    /// Which of the object's actors this is, for the registry.
    generation: u64,
    /// Whether the registry was last told this actor holds an instance.
    told_instance: bool,
}

impl Actor {
    pub fn spawn(runtime: Arc<Runtime>, object: Arc<ObjectAddr>, class: Arc<Class>, start: Spawn) {
        let span = tracing::info_span!("object", class = class.name(), name = object.name());
        let metrics = runtime.metrics().class(class.name());
        let actor = Actor {
            runtime,
            object,
            class,
            state: State::default(),
            batch: Batch::default(),
            last_active: now_ms(),
            indexed_alarm: None,
            alarm_mirrored: None,
            call_chain: None,
            delete_after_batch: false,
            span: span.clone(),
            metrics,
            generation: start.generation,
            told_instance: false,
        };
        tokio::spawn(actor.run(start).instrument(span));
    }

    async fn run(self, start: Spawn) {
        let Spawn {
            mut mailbox, alive, ..
        } = start;
        let idle_timeout = self.runtime.config().idle_timeout;
        let generation = self.generation;
        let mut actor = self;
        let mut next = None;
        loop {
            // An instance lost in the last event (a trap, an upgrade) stops
            // counting toward `max_active`; one made is told as it is made.
            actor.tell_instance();
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
                Event::DropInstance => actor.drop_instance(),
                Event::Delete { reply } => {
                    let _ = reply.send(actor.delete().await);
                }
                guest_event => {
                    // A call runs on its caller's turn (see `Event::Call`).
                    let turn = if matches!(guest_event, Event::Call { .. }) {
                        None
                    } else {
                        let Some(turn) = actor.class.turn().await else {
                            break;
                        };
                        Some(turn)
                    };
                    let runtime = Arc::clone(&actor.runtime);
                    let object = Arc::clone(&actor.object);
                    let span = actor.span.clone();
                    let ran = runtime
                        .executor()
                        .run(move |handle| {
                            let (mut actor, mut mailbox) = (actor, mailbox);
                            let span = actor.span.clone();
                            let next = handle.block_on(
                                actor.run_guest(guest_event, &mut mailbox).instrument(span),
                            );
                            (actor, mailbox, next)
                        })
                        .await;
                    drop(turn);
                    match ran {
                        Ok((back, its_mailbox, control)) => {
                            (actor, mailbox, next) = (back, its_mailbox, control);
                            // Nothing open (the operator looked at a
                            // hibernated object, say): leave the registry
                            // now rather than idle until the timeout.
                            if next.is_none()
                                && matches!(actor.state, State::Closed)
                                && actor.runtime.objects().retire(
                                    actor.object.id(),
                                    generation,
                                    &mailbox,
                                )
                            {
                                break;
                            }
                        }
                        Err(lost) => {
                            // The object's instance and database went with
                            // the thread; the next event starts a new actor.
                            span.in_scope(|| tracing::error!("{lost}"));
                            runtime.objects().lost(object.id(), generation);
                            runtime.object_closed(&object);
                            drop(alive);
                            return;
                        }
                    }
                }
            }
        }
        actor.close().await;
        // Its last alarm entry is in etcd before the object is let go (a
        // write after that is no longer this node's to make).
        actor.alarm_mirrored().await;
        actor.runtime.object_closed(&actor.object);
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
            self.follow_upgrade();
            let control = match current {
                batch @ (Event::Fetch { .. } | Event::Socket { .. } | Event::Call { .. }) => {
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
                Event::Admin(request) => {
                    self.admin(request).await;
                    None
                }
                control @ (Event::Hibernate | Event::DropInstance | Event::Delete { .. }) => {
                    return Some(control);
                }
            };
            event = control.or_else(|| mailbox.try_recv().ok());
            if started.elapsed() >= TIME_SLICE {
                return event;
            }
        }
        None
    }

    /// Between batches: if a deploy or rollback made another version of
    /// the class active, drops the instance (the batch it ran is
    /// committed) so the next event activates the new version, running its
    /// new migrations first. The database stays open; sockets and event
    /// subscribers are the hub's and stay connected.
    fn follow_upgrade(&mut self) {
        let Ok(active) = self.runtime.class(self.object.class()) else {
            // Removed: the objects went first; finish on what we have.
            return;
        };
        if Arc::ptr_eq(&active, &self.class) {
            return;
        }
        tracing::info!(
            from = self.class.version(),
            to = active.version(),
            "changing to the active version"
        );
        self.host_log(
            Level::Info,
            format!(
                "changing from version {} to the active version {}",
                self.class.version(),
                active.version()
            ),
        );
        self.state.discard();
        if let Some(db) = self.state.database() {
            db.forget_migrated();
        }
        self.class = active;
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
        tracing::debug!(early, "hibernating");
        self.host_log(Level::Info, "hibernated");
        true
    }

    /// Drops the instance to make room for another (`max_active`), keeping
    /// the database open: the next event makes a new instance around it.
    /// Always answers the registry, which waits for it.
    fn drop_instance(&mut self) {
        if self.state.is_live() {
            self.state.discard();
            if let Some(db) = self.state.database() {
                db.release_memory();
            }
            self.runtime.metrics().evictions.inc();
            tracing::debug!("instance dropped to make room");
        }
        self.told_instance = false;
        self.runtime
            .objects()
            .holds_instance(self.object.id(), self.generation, false);
    }

    /// Tells the registry if the actor gained or lost an instance since it
    /// last did. Gaining is told as the instance is made (it counts toward
    /// `max_active` while its event runs); losing, between events.
    fn tell_instance(&mut self) {
        let holds = self.state.is_live();
        if holds != self.told_instance {
            self.told_instance = holds;
            self.runtime
                .objects()
                .holds_instance(self.object.id(), self.generation, holds);
        }
    }

    /// Drops the instance and closes the database, off the runtime's
    /// threads: closing checkpoints the WAL and syncs the file.
    async fn close(&mut self) {
        self.record_close();
        let closed = self.state.close();
        if matches!(closed, State::Closed) {
            return;
        }
        // Commits made outside a batch (a cleared alarm, migrations) are
        // shipped before the log may be checkpointed at close.
        let shipping = self.shipping();
        let close = move || match shipping {
            Some(shipping) => shipping.ship_and_close(closed),
            None => drop(closed),
        };
        if let Err(error) = tokio::task::spawn_blocking(close).await {
            tracing::error!(%error, "closing the object panicked");
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
                tracing::error!(%error, "cannot delete");
                return Err(EventError::DeleteFailed);
            }
            Err(error) => {
                tracing::error!(%error, "deleting panicked");
                return Err(EventError::DeleteFailed);
            }
        };
        self.runtime.record(CatalogUpdate::Removed {
            id: self.object.id().to_string(),
        });
        self.mirror_alarm(None);
        if let Some(replication) = self.runtime.replication() {
            replication.forget(self.object.id());
            if existed {
                replication
                    .stream(self.object.class(), self.object.id(), self.object.name())
                    .queue_tombstone(replication);
            }
        }
        if existed {
            self.runtime.tenants().object_removed(self.object.class());
        }
        self.runtime.sockets().forget_object(self.object.id());
        self.runtime.guest_logs().rings().forget(self.object.id());
        tracing::info!(existed, "deleted");
        Ok(existed)
    }

    /// Records a host event in the object's own log (see `logs::ring`).
    fn host_log(&self, level: Level, message: impl Into<String>) {
        self.runtime
            .guest_logs()
            .rings()
            .host(self.object.id(), level, message);
    }

    /// Tells the catalog the object was active, and its size if its
    /// database is open.
    fn record_close(&mut self) {
        let Some(size) = self.state.database().map(|db| db.size().unwrap_or(0)) else {
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
        let mut count = 0;
        let mut next = Some(first);
        let mut control = None;
        while let Some(event) = next.take() {
            match event {
                Event::Fetch { request, reply } => {
                    self.runtime.metrics().events.inc();
                    let result = self.fetch(&request).await;
                    self.batch.hold(Held::Fetch { reply, result });
                }
                Event::Call {
                    request,
                    chain,
                    reply,
                } => {
                    self.runtime.metrics().events.inc();
                    self.call_chain = Some(chain);
                    let result = self.fetch(&request).await;
                    self.batch.hold(Held::Fetch { reply, result });
                }
                Event::Socket {
                    socket,
                    happened,
                    reply,
                } => {
                    self.runtime.metrics().events.inc();
                    let result = self.socket_event(socket, happened).await;
                    self.batch.hold(Held::Socket { reply, result });
                }
                control_event => {
                    control = Some(control_event);
                    break;
                }
            }
            count += 1;
            if self.state.database().is_some_and(|db| db.batch_lost()) {
                // An event's statement (ON CONFLICT ROLLBACK, RAISE(ROLLBACK))
                // or SQLite itself ended the whole transaction: the writes of
                // every event so far are gone, and so is what their
                // responses may show. Fail them; the batch goes on afresh.
                tracing::warn!("an event rolled back its whole batch");
                self.host_log(Level::Warn, "an event rolled back its whole batch");
                self.runtime.metrics().failures.inc();
                if let Some(db) = self.state.database() {
                    db.forget_lost_batch();
                }
                self.state.discard();
                self.batch.lose();
                self.delete_after_batch = false;
            }
            if count < max_events && started.elapsed() < max_delay {
                next = mailbox.try_recv().ok();
            }
        }
        if count > 0 {
            self.metrics.commit_batch.observe(count as f64);
        }
        self.end_batch().await;
        control
    }

    /// Commits the open batch and lets its outputs go, or, if the commit
    /// fails, rolls it back and answers every event that its writes were
    /// lost. An object that deleted itself in the batch is deleted between
    /// its messages and its replies: a client told so finds it gone, and
    /// what is queued behind finds a new, empty object.
    async fn end_batch(&mut self) {
        let alarm = self.alarm_before_commit();
        self.alarm_mirrored().await;
        if let Err(error) = self.commit() {
            tracing::error!(%error, "commit failed");
            self.host_log(Level::Error, format!("commit failed: {error}"));
            self.runtime.metrics().failures.inc();
            if let Some(db) = self.state.database() {
                db.rollback();
            }
            self.state.discard();
            self.batch.lose();
            self.delete_after_batch = false;
        } else if !self.replicate_commit().await {
            // Committed here but not durable in the store: nothing of
            // the batch is acknowledged (see `EventError::ReplicationUnavailable`).
            self.alarm_after_commit(alarm);
            self.batch.refuse(|| EventError::ReplicationUnavailable);
            self.delete_after_batch = false;
        } else if std::mem::take(&mut self.delete_after_batch) {
            self.alarm_after_commit(alarm);
            self.batch
                .release_messages(self.runtime.sockets(), self.object.id());
            let deleted = match self.delete().await {
                Ok(_) => {
                    let (class, name) = (self.object.class(), self.object.name());
                    self.runtime.forget_references(class, name).await
                }
                Err(error) => Err(error),
            };
            if let Err(error) = deleted {
                tracing::error!(%error, "the object could not delete itself");
            }
            self.batch.release_replies();
        } else {
            self.alarm_after_commit(alarm);
            self.batch.release(self.runtime.sockets(), self.object.id());
        }
    }

    /// Commits the batch, if one is open. It runs on a guest thread, so a
    /// commit waiting for `fsync` holds up no one else.
    fn commit(&mut self) -> rusqlite::Result<()> {
        let Some(db) = self.state.database() else {
            return Ok(());
        };
        let started = Instant::now();
        let committed = db.commit();
        metrics::observe_since(&self.metrics.commit_duration, started);
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
        self.activate(&watch).await?;
        drop(watch);
        let backlog = match (after, self.state.database()) {
            (Some(after), Some(db)) => read_backlog(db.host(), after),
            _ => Ok(Backlog::default()),
        };
        let backlog = backlog.map_err(|error| {
            tracing::error!(%error, "cannot read the event log");
            EventError::EventLog
        })?;
        self.runtime
            .sockets()
            .subscribe(self.object.id(), subscriber);
        Ok(backlog)
    }

    /// Runs `fetch` in its own savepoint of the batch's transaction.
    async fn fetch(&mut self, request: &Request) -> Result<Response, EventError> {
        let (Ok(response) | Err(response)) = self.run_event(dispatch::Fetch(request)).await?;
        self.metrics.response(response.status);
        Ok(response)
    }

    /// Runs a socket event in its own savepoint of the batch's transaction.
    async fn socket_event(
        &mut self,
        socket: u64,
        happened: SocketEvent,
    ) -> Result<SocketOutcome, EventError> {
        let handled = match &happened {
            SocketEvent::Open(request) => {
                let open = dispatch::SocketOpen { socket, request };
                return Ok(match self.run_event(open).await? {
                    Ok(accept) => {
                        self.runtime
                            .sockets()
                            .set_tags(self.object.id(), socket, accept.tags);
                        SocketOutcome::Accepted
                    }
                    Err(response) => SocketOutcome::Refused(response),
                });
            }
            SocketEvent::Message(message) => {
                self.run_event(dispatch::SocketMessageEvent { socket, message })
                    .await?
            }
            SocketEvent::Close {
                code,
                reason,
                attachment,
            } => {
                self.run_event(dispatch::SocketClose {
                    socket,
                    code: *code,
                    reason,
                    attachment,
                })
                .await?
            }
        };
        if let Err(message) = handled {
            tracing::debug!(socket, "socket event failed: {message}");
        }
        Ok(SocketOutcome::Handled)
    }

    /// Runs one handler export in its own savepoint of the batch's
    /// transaction: keeps its writes if it succeeded, undoes them if it
    /// returned an error, and drops the instance if it trapped.
    async fn run_event<H: Handler>(&mut self, call: H) -> Result<H::Returned, EventError> {
        let span = tracing::debug_span!("event", kind = H::KIND);
        let started = Instant::now();
        let result = self.run_event_in_span(call).instrument(span).await;
        metrics::observe_since(&self.metrics.event_duration, started);
        result
    }

    async fn run_event_in_span<H: Handler>(&mut self, call: H) -> Result<H::Returned, EventError> {
        let fresh = !self.state.is_live();
        let chain = self.call_chain.take();
        let watch = self.watch();
        self.activate(&watch).await?;
        let Some(Live { store, bindings }) = self.state.live() else {
            return Err(EventError::Activation);
        };
        store.data_mut().begin_calls(chain);
        store
            .data_mut()
            .limits()
            .start_event(Arc::clone(watch.stop()), watch.budget());
        store.set_epoch_deadline(1);
        let db = store.data_mut().database();
        let begun = db.begin_event().and_then(|()| {
            if H::CLEARS_ALARM {
                db.host_write(|conn| write_alarm(conn, None))
            } else {
                Ok(())
            }
        });
        if let Err(error) = begun {
            tracing::error!(%error, "cannot begin a transaction");
            db.undo_event();
            self.state.discard();
            return Err(EventError::Commit);
        }
        let guest = bindings.podhost_object_handler();
        // A guest waiting on a host future (a sleep, say) when the
        // watchdog stops it is dropped there; one running wasm traps at
        // the next epoch tick, one running SQL is interrupted.
        let outcome = tokio::select! {
            biased;
            outcome = metered(watch.stop(), call.invoke(guest, store)) => outcome,
            () = watch.stop().stopped() => Err(wasmtime::Error::msg("stopped while waiting")),
        };
        let verdict = watch.verdict();
        drop(watch);
        // Sent only if the event's writes are kept.
        let outbox = store.data_mut().take_outbox();
        let alarm_changed = store.data_mut().take_alarm_change();
        let delete_self = store.data_mut().take_delete_self();
        let db = store.data_mut().database();
        if let Some(verdict) = verdict {
            // Whatever the guest returned, it broke a limit (or the host is
            // going away): nothing of the event stands.
            db.undo_event();
            self.runtime.metrics().failures.inc();
            self.state.discard();
            return Err(self.stopped(verdict));
        }
        match outcome {
            Ok(returned) if returned.kept() => match db.end_event() {
                Ok(()) => {
                    self.batch.keep(outbox, alarm_changed);
                    self.delete_after_batch |= delete_self;
                    Ok(returned)
                }
                Err(error) if error.sqlite_error_code() == Some(ErrorCode::ConstraintViolation) => {
                    db.undo_event();
                    Err(EventError::DeferredConstraint)
                }
                Err(error) => {
                    tracing::error!(%error, "cannot keep the event's writes");
                    db.undo_event();
                    self.state.discard();
                    Err(EventError::Commit)
                }
            },
            Ok(returned) => {
                db.undo_event();
                if fresh {
                    // The instance was built in this event (the guest's
                    // activation, say, created its tables), and that was
                    // undone with it: the next event builds a new one.
                    self.state.discard();
                }
                Ok(returned)
            }
            Err(trap) => {
                db.undo_event();
                self.runtime.metrics().failures.inc();
                self.state.discard();
                if trap.is::<Cancelled>() {
                    return Err(EventError::ShuttingDown);
                }
                match trap.downcast_ref::<LimitExceeded>() {
                    Some(limit) => {
                        tracing::warn!("event stopped: {limit}");
                        self.host_log(Level::Warn, format!("event stopped: {limit}"));
                        Err(EventError::LimitExceeded(limit.clone()))
                    }
                    None => {
                        tracing::warn!("event trapped: {trap:?}");
                        self.host_log(Level::Error, format!("event trapped: {trap:?}"));
                        Err(EventError::Trapped)
                    }
                }
            }
        }
    }

    /// The database, wherever it is (in the live store or kept dormant).
    fn database(&mut self) -> Option<&mut Database> {
        self.state.database()
    }
}
