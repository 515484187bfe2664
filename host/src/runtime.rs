//! The runtime: the engine, the deployed classes, the live objects and the
//! catalog, shared by the gateway and every actor.

mod calls;
mod shared_rows;

pub use shared_rows::SharedRowsFollower;

use crate::replication::Replication;
use crate::replication::catalog::CatalogLog;
use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use futures_util::future::BoxFuture;
use parking_lot::{Mutex, RwLock};
use tokio::sync::{Semaphore, mpsc, oneshot};
use tokio::task::JoinHandle;
use wasmtime::Engine;
use wasmtime::component::Linker;

use crate::alarms::Alarms;
use crate::bindings::podhost::object::types::Message as SocketMessage;
use crate::bindings::{Request, Response};
use crate::capabilities;
use crate::capabilities::events::Backlog;
use crate::capabilities::objects::{CallChain, Peers};
use crate::capabilities::{ObjectState, RoutingTable};
use crate::config::{AuthSettings, Config};
use crate::engine::{self, Class};
use crate::execution::Executor;
use crate::limits::MemoryBudget;
use crate::logs::GuestLogs;
use crate::metrics::Metrics;
use crate::object::{
    Actor, AdminError, AdminRequest, Event, EventError, Inspection, ObjectAddr, Objects,
    SocketEvent, SocketOutcome,
};
use crate::os_limits;
use crate::sockets::{Hub, LoggedEvent};
use crate::storage::catalog::{Catalog, CatalogUpdate, CatalogWriter};
use crate::storage::shared_writes::Writes;
use crate::storage::{DataDir, DataDirLock, Durability, Spares};
use crate::storage::{QueryLimits, QueryResult};
use crate::tenants::Tenants;

/// Names of objects kept outside the objects (API keys and handles, in the
/// gateway's accounts): forgotten when the object is deleted, so an old key
/// cannot bring a deleted object back as a new, empty one.
pub trait ObjectReferences: Send + Sync + 'static {
    fn forget(&self, class: String, name: String) -> BoxFuture<'static, anyhow::Result<()>>;
}

/// Which objects this node may serve, in a cluster (`cluster/`).
pub trait ObjectOwnership: Send + Sync + 'static {
    /// The object's fencing epoch while this node owns it and trusts its
    /// lease; `None` once it does not (nothing more of it may be shipped).
    fn epoch(&self, class: &str, id: &str) -> Option<u64>;
    /// Its actor has closed its database and stopped: the node lets the
    /// object go.
    fn closed(&self, object: &ObjectAddr);
    /// Before an event is delivered to `object`: makes sure this node owns
    /// it (taking it when nobody does) and, with `restore`, that an object
    /// another node served last has been restored from the store. The
    /// answer is held until the event is queued (the object is not let go
    /// meanwhile). An object another node owns is refused.
    fn claim(
        &self,
        object: &ObjectAddr,
        restore: bool,
    ) -> BoxFuture<'static, Result<Box<dyn std::any::Any + Send>, EventError>>;
    /// The object's alarm index entry changed (`None`: removed): mirrors it
    /// where every node sees it. Resolves once written (or failed).
    fn alarm_indexed(&self, object: &ObjectAddr, at_ms: Option<i64>) -> BoxFuture<'static, ()>;
}

/// The catalog's last commits did not reach the store within
/// `[replication] timeout` (or could not be shipped).
#[derive(Debug, Clone, Copy, thiserror::Error)]
#[error("the catalog's change is not durable in the replication store")]
pub struct CatalogNotDurable;

pub struct Runtime {
    config: Config,
    data: DataDir,
    engine: Engine,
    /// Guest threads and the watchdog.
    executor: Executor,
    /// Linear memory all instances together may hold.
    guest_memory: Arc<MemoryBudget>,
    /// Whether shutdown's deadline is running.
    shutdown_started: AtomicBool,
    /// The active version of every class; swapped by deploys (see
    /// `deploy`), read by every delivery.
    classes: RwLock<HashMap<String, Arc<Class>>>,
    /// Each class's share of execution, kept across its versions.
    shares: Mutex<HashMap<String, Arc<Semaphore>>>,
    /// Every import a class may have: WASI's subset and podhost's own.
    linker: Linker<ObjectState>,
    /// The largest `max_memory_bytes` a class may have: the engine's pool
    /// slots were sized for it at start.
    max_class_memory: usize,
    /// Classes with a deploy under way, and the component each is adding
    /// (kept from cleanup until recorded).
    deploying: Mutex<BTreeMap<String, Option<String>>>,
    objects: Objects,
    /// Database files made ahead for new objects.
    spares: Spares,
    metrics: Metrics,
    /// Guests' stdout and stderr on their way to the log.
    guest_logs: GuestLogs,
    catalog: Arc<Catalog>,
    /// What names objects outside them (API keys, handles), told when
    /// one is deleted for good.
    references: OnceLock<Arc<dyn ObjectReferences>>,
    /// Where objects make API keys and handles (`routing`): the gateway's
    /// accounts, installed by the gateway.
    routing: OnceLock<Arc<dyn RoutingTable>>,
    /// The cluster's ownership of objects, if in a cluster.
    ownership: OnceLock<Arc<dyn ObjectOwnership>>,
    /// What follows the shared rows other nodes write, beside the
    /// runtime's own parts (`shared_rows.rs`): the gateway's accounts.
    shared_rows_follower: OnceLock<Arc<dyn SharedRowsFollower>>,
    /// Classes being brought in step with the shared catalog.
    following: crate::deploy::Following,
    /// The accounts' settings, if any class (configured or deployed at
    /// start) needs them or `[auth]` is set; the gateway opens them.
    accounts: Option<AuthSettings>,
    alarms: Alarms,
    /// Tenants, the classes they own and their quotas.
    tenants: Arc<Tenants>,
    /// The WebSockets of every object, open through their hibernation.
    sockets: Arc<Hub>,
    /// Which object waits for which through `objects.call`.
    calls: calls::Waits,
    /// Taken at shutdown, so the writer task can finish.
    catalog_writer: Mutex<Option<(CatalogWriter, JoinHandle<()>)>>,
    /// Shipping commits to object storage, when `[replication]` has a url.
    replication: Option<Arc<Replication>>,
    /// Ships the catalog's commits, when replicating.
    catalog_log: Option<Arc<CatalogLog>>,
    /// Whether a route that wrote the catalog waits for the store (some
    /// class is `replicated`).
    catalog_replicated: bool,
    _lock: DataDirLock,
}

impl Runtime {
    /// Locks the data directory, builds the engine and loads every
    /// configured class. Must run inside the tokio runtime.
    pub fn new(config: Config) -> anyhow::Result<Arc<Self>> {
        Self::with_writes(config, Writes::Direct)
    }

    /// [`Runtime::new`], the catalog's shared tables written with
    /// `writes` (a cluster's: `cluster::SharedCatalog`).
    pub fn with_writes(config: Config, writes: Writes) -> anyhow::Result<Arc<Self>> {
        crate::storage::configure_sqlite();
        let lock = DataDirLock::acquire(&config.data_dir)?;
        let catalog = Arc::new(
            Catalog::open(&config.data_dir, config.catalog_durability())?
                .with_writes(writes.clone()),
        );
        let data = DataDir::new(&config.data_dir);
        // Exports and imports cut short by a crash; no one else uses them
        // while the lock is held.
        match std::fs::remove_dir_all(data.scratch()) {
            Err(error) if error.kind() != std::io::ErrorKind::NotFound => {
                tracing::warn!(%error, "cannot clear the scratch directory");
            }
            _ => {}
        }
        // Deployed classes count as much as configured ones for the
        // engine's sizing and whether accounts are on.
        let deployed = crate::deploy::deployed_classes(&catalog, &data, &config)?;
        let mut effective = config.clone();
        for (name, class) in &deployed {
            effective
                .classes
                .entry(name.clone())
                .or_insert_with(|| class.clone());
        }
        let engine = engine::engine(&effective)?;
        let max_class_memory = engine::largest_memory(&effective);
        let executor = Executor::start(&engine, config.execution.threads)
            .map_err(|error| anyhow::anyhow!("cannot start the watchdog thread: {error}"))?;
        let guest_memory = Arc::new(MemoryBudget::new(config.execution.guest_memory()));
        let linker = capabilities::linker(&engine)?;
        let accounts = effective.accounts();
        let declared = config
            .classes
            .iter()
            .filter_map(|(name, class)| Some((name.clone(), class.tenant.clone()?)))
            .collect();
        let tenants = Arc::new(Tenants::open(
            &config.data_dir,
            config.catalog_durability(),
            config.tenants,
            declared,
            writes,
        )?);
        let writer = CatalogWriter::start(Arc::clone(&catalog));
        let sockets = Arc::new(Hub::new(config.events.clone(), config.sockets.clone()));
        let metrics = Metrics::default();
        let replication = if config.replication.enabled() {
            Some(Replication::open(&config.replication, &metrics)?)
        } else {
            None
        };
        let catalog_log = match &replication {
            Some(replication) => Some(CatalogLog::open(replication, &config.data_dir)?),
            None => None,
        };
        let catalog_replicated = catalog_log.is_some()
            && if effective.classes.is_empty() {
                effective.durability == Durability::Replicated
            } else {
                effective.classes.values().any(|class| {
                    effective.class_settings(class).durability == Durability::Replicated
                })
            };
        let guest_logs = GuestLogs::start(
            config.logs.clone(),
            Arc::clone(&metrics.guest_log_dropped_bytes),
        )?;
        let runtime = Arc::new(Runtime {
            objects: Objects::new(
                config.max_active as usize,
                os_limits::open_databases(config.max_active, config.max_open_databases) as usize,
            ),
            spares: Spares::new(data.spares()),
            config,
            data,
            engine,
            executor,
            guest_memory,
            shutdown_started: AtomicBool::new(false),
            classes: RwLock::new(HashMap::new()),
            shares: Mutex::new(HashMap::new()),
            linker,
            max_class_memory,
            deploying: Mutex::new(BTreeMap::new()),
            metrics,
            guest_logs,
            catalog,
            references: OnceLock::new(),
            routing: OnceLock::new(),
            ownership: OnceLock::new(),
            shared_rows_follower: OnceLock::new(),
            following: crate::deploy::Following::default(),
            accounts,
            alarms: Alarms::default(),
            tenants,
            sockets,
            calls: calls::Waits::default(),
            catalog_writer: Mutex::new(Some(writer)),
            replication,
            catalog_log,
            catalog_replicated,
            _lock: lock,
        });
        crate::deploy::start(&runtime)?;
        Alarms::start(&runtime);
        if let Some(replication) = &runtime.replication {
            crate::replication::retention::start(replication);
        }
        match &runtime.catalog_log {
            Some(log) => crate::replication::catalog::start(log),
            None => crate::storage::catalog::start_checkpoints(
                &runtime.catalog,
                std::time::Duration::from_secs(10),
            ),
        }
        Ok(runtime)
    }

    /// Delivers an HTTP request to object `name` of `class` and waits for
    /// its committed response.
    pub async fn fetch(
        self: &Arc<Self>,
        class: &str,
        name: &str,
        request: Request,
    ) -> Result<Response, EventError> {
        self.deliver(class, name, |reply| Event::Fetch { request, reply })
            .await?
    }

    /// Delivers another object's call (`chain` ends with `callee`) and
    /// waits for its committed response.
    pub(crate) async fn call(
        self: &Arc<Self>,
        callee: ObjectAddr,
        chain: CallChain,
        request: Request,
    ) -> Result<Response, EventError> {
        self.deliver(callee.class(), callee.name(), |reply| Event::Call {
            request,
            chain,
            reply,
        })
        .await?
    }

    /// How an object's instance reaches other objects.
    pub(crate) fn peers(self: &Arc<Self>) -> Arc<dyn Peers> {
        Arc::new(calls::RuntimePeers(Arc::downgrade(self)))
    }

    /// Ships the catalog's commits so far; when the catalog is
    /// `replicated`, waits until they are durable in the store. For the
    /// routes that write it, before they answer.
    pub async fn catalog_durable(&self) -> Result<(), CatalogNotDurable> {
        let Some(log) = &self.catalog_log else {
            return Ok(());
        };
        let shipping = Arc::clone(log);
        let shipped = tokio::task::spawn_blocking(move || shipping.ship()).await;
        let seq = match shipped {
            Ok(Ok(seq)) => seq,
            Ok(Err(error)) => {
                tracing::warn!("cannot ship the catalog: {error:#}");
                if self.catalog_replicated {
                    return Err(CatalogNotDurable);
                }
                return Ok(());
            }
            Err(error) => {
                tracing::warn!(%error, "shipping the catalog panicked");
                return Err(CatalogNotDurable);
            }
        };
        if !self.catalog_replicated || log.wait_durable(seq).await {
            Ok(())
        } else {
            Err(CatalogNotDurable)
        }
    }

    /// Waits until the catalog holds every update sent so far.
    pub async fn catalog_flushed(&self) {
        let flushed = self
            .catalog_writer
            .lock()
            .as_ref()
            .map(|(writer, _)| writer.flushed());
        if let Some(flushed) = flushed {
            flushed.await;
        }
    }

    /// Delivers object `name`'s alarm event (attempt `retries + 1`) and
    /// waits until it is handled, retried later or dropped.
    pub(crate) async fn fire_alarm(
        self: &Arc<Self>,
        class: &str,
        name: &str,
        retries: u32,
    ) -> Result<(), EventError> {
        self.deliver(class, name, |reply| Event::Alarm { retries, reply })
            .await
    }

    /// Delivers an event of socket `socket` of object `name` and waits
    /// until it is handled and committed.
    pub(crate) async fn socket_event(
        self: &Arc<Self>,
        class: &str,
        name: &str,
        socket: u64,
        happened: SocketEvent,
    ) -> Result<SocketOutcome, EventError> {
        self.deliver(class, name, |reply| Event::Socket {
            socket,
            happened,
            reply,
        })
        .await?
    }

    /// Subscribes to object `name`'s event log after event `after` (none:
    /// live only); returns what the subscriber missed.
    pub(crate) async fn subscribe(
        self: &Arc<Self>,
        class: &str,
        name: &str,
        after: Option<u64>,
        subscriber: mpsc::Sender<LoggedEvent>,
    ) -> Result<Backlog, EventError> {
        self.deliver(class, name, |reply| Event::Subscribe {
            after,
            subscriber,
            reply,
        })
        .await?
    }

    /// Delivers a message of socket `socket` to object `name`.
    pub(crate) async fn socket_message(
        self: &Arc<Self>,
        class: &str,
        name: &str,
        socket: u64,
        message: SocketMessage,
    ) -> Result<(), EventError> {
        self.socket_event(class, name, socket, SocketEvent::Message(message))
            .await
            .map(drop)
    }

    /// Tells object `name` its socket `socket` was closed by the client.
    pub(crate) async fn socket_close(
        self: &Arc<Self>,
        class: &str,
        name: &str,
        socket: u64,
        code: u16,
        reason: String,
        attachment: Vec<u8>,
    ) -> Result<(), EventError> {
        let closed = SocketEvent::Close {
            code,
            reason,
            attachment,
        };
        self.socket_event(class, name, socket, closed)
            .await
            .map(drop)
    }

    /// Deletes object `name` of `class` for good: its database files, its
    /// catalog entry and what names it elsewhere (see `refer_objects`).
    /// Returns whether it had a database. A later event to the same name
    /// starts a new, empty object.
    pub async fn delete(self: &Arc<Self>, class: &str, name: &str) -> Result<bool, EventError> {
        let deleted = self
            .deliver(class, name, |reply| Event::Delete { reply })
            .await??;
        self.forget_references(class, name).await?;
        Ok(deleted)
    }

    /// Removes a deleted object's history from the replication store now
    /// rather than after the retention window (after what its stream has
    /// queued). Nothing to do without replication.
    pub fn purge_history(self: &Arc<Self>, class: &str, name: &str) {
        if let Some(replication) = &self.replication {
            let object = ObjectAddr::new(class, name);
            replication
                .stream(class, object.id(), object.name())
                .queue_purge();
        }
    }

    /// Tells whatever names object `name` from outside (API keys, handles)
    /// that it was deleted.
    pub(crate) async fn forget_references(
        &self,
        class: &str,
        name: &str,
    ) -> Result<(), EventError> {
        if let Some(references) = self.references.get() {
            references
                .forget(class.to_string(), name.to_string())
                .await
                .map_err(|error| {
                    tracing::error!(class, name, "{error:#}");
                    EventError::ReferencesRemain
                })?;
        }
        Ok(())
    }

    /// Queues the event `make` builds for the object and waits for its reply.
    async fn deliver<T>(
        self: &Arc<Self>,
        class: &str,
        name: &str,
        make: impl FnOnce(oneshot::Sender<T>) -> Event,
    ) -> Result<T, EventError> {
        self.deliver_claimed(class, name, true, make).await
    }

    /// [`deliver`](Self::deliver); `restore`: in a cluster, an object that
    /// moved here is restored from the store first (not for the import
    /// that restores it). In a cluster an object only ever runs on the
    /// node that owns it: the check is here, where every event (a
    /// client's, another object's call, an alarm, a socket's) activates
    /// objects, not only in the gateway.
    async fn deliver_claimed<T>(
        self: &Arc<Self>,
        class: &str,
        name: &str,
        restore: bool,
        make: impl FnOnce(oneshot::Sender<T>) -> Event,
    ) -> Result<T, EventError> {
        let class = self.class(class)?;
        let object = Arc::new(ObjectAddr::new(class.name(), name));
        let claimed = match self.ownership.get() {
            Some(ownership) => Some(ownership.claim(&object, restore).await?),
            None => None,
        };
        let (reply, answer) = oneshot::channel();
        self.objects.deliver(object.id(), make(reply), |start| {
            Actor::spawn(Arc::clone(self), Arc::clone(&object), class, start);
        })?;
        // Queued: the object is live, so it is not let go before it closes.
        drop(claimed);
        // The actor always replies unless it was dropped mid-event, which
        // only happens when the process is going away.
        answer.await.map_err(|_| EventError::ShuttingDown)
    }

    /// The active version of class `name`.
    pub fn class(&self, name: &str) -> Result<Arc<Class>, EventError> {
        self.classes
            .read()
            .get(name)
            .cloned()
            .ok_or_else(|| EventError::NoSuchClass(name.to_string()))
    }

    /// The active version of every class, by name.
    pub fn classes(&self) -> BTreeMap<String, Arc<Class>> {
        let classes = self.classes.read();
        classes
            .iter()
            .map(|(name, class)| (name.clone(), Arc::clone(class)))
            .collect()
    }

    /// Makes `class` the active version of its class: new events run on
    /// it, and live objects switch to it before their next event.
    pub(crate) fn install(&self, class: Arc<Class>) {
        self.classes.write().insert(class.name().to_string(), class);
    }

    /// Stops serving class `name`.
    pub(crate) fn uninstall(&self, name: &str) -> Option<Arc<Class>> {
        self.classes.write().remove(name)
    }

    /// Class `name`'s share of execution, the same for all its versions.
    pub(crate) fn share(&self, name: &str) -> Arc<Semaphore> {
        let permits = self.config.execution.max_running_per_class;
        Arc::clone(
            self.shares
                .lock()
                .entry(name.to_string())
                .or_insert_with(|| Arc::new(Semaphore::new(permits))),
        )
    }

    /// The linker every class is checked against and instantiated with.
    pub fn linker(&self) -> &Linker<ObjectState> {
        &self.linker
    }

    /// The largest `max_memory_bytes` a class deployed now may have.
    pub fn max_class_memory(&self) -> usize {
        self.max_class_memory
    }

    /// Classes with a deploy under way, and the component hash each adds.
    pub(crate) fn deploying(&self) -> &Mutex<BTreeMap<String, Option<String>>> {
        &self.deploying
    }

    /// Starts shutdown's clock: events still running `shutdown_timeout`
    /// from now (or starting later) are cancelled and rolled back; event
    /// streams and log followers end, so their connections do not hold the
    /// server (their clients resume by id). Called when the server stops
    /// taking connections; a second call does nothing.
    pub fn begin_shutdown(&self) {
        if self.shutdown_started.swap(true, Ordering::AcqRel) {
            return;
        }
        self.guest_logs.rings().close_followers();
        self.sockets.end_streams();
        let watchdog = Arc::clone(self.executor.watchdog());
        let timeout = self.config.shutdown_timeout;
        tokio::spawn(async move {
            tokio::time::sleep(timeout).await;
            if watchdog.running() > 0 {
                tracing::warn!(
                    running = watchdog.running(),
                    "events still running at the shutdown deadline are cancelled"
                );
            }
            watchdog.cancel_all();
        });
    }

    /// Stops taking events, waits for every object to finish and close,
    /// then for the catalog to take their last updates. Events still
    /// running at the deadline [`begin_shutdown`](Self::begin_shutdown)
    /// set are cancelled and rolled back.
    pub async fn shut_down(&self) {
        self.begin_shutdown();
        self.alarms.stop();
        self.sockets.close_all(Duration::from_secs(2)).await;
        self.objects.shut_down().await;
        let writer = self.catalog_writer.lock().take();
        if let Some((writer, task)) = writer {
            drop(writer);
            if let Err(error) = task.await {
                tracing::warn!(%error, "the catalog writer failed");
            }
        }
    }

    /// Sends an update to the catalog's background writer.
    pub(crate) fn record(&self, update: CatalogUpdate) {
        let writer = self.catalog_writer.lock();
        if let Some((writer, _)) = writer.as_ref() {
            writer.send(update);
        }
    }

    pub fn sockets(&self) -> &Arc<Hub> {
        &self.sockets
    }

    pub fn alarms(&self) -> &Alarms {
        &self.alarms
    }

    /// Whether `/auth`, `/me` and `/orgs` are on, and how (see
    /// `Config::accounts`; classes deployed before this start count).
    pub fn accounts_settings(&self) -> Option<&AuthSettings> {
        self.accounts.as_ref()
    }

    /// Sets what is told when an object is deleted for good (once; later
    /// calls are ignored).
    pub fn refer_objects(&self, references: Arc<dyn ObjectReferences>) {
        let _ = self.references.set(references);
    }

    /// Sets where objects make API keys and handles through `routing`
    /// (once; later calls are ignored). Without it, they cannot.
    pub fn route_objects(&self, routing: Arc<dyn RoutingTable>) {
        let _ = self.routing.set(routing);
    }

    /// Sets the cluster's ownership of objects (once; later calls are
    /// ignored).
    pub fn own_objects(&self, ownership: Arc<dyn ObjectOwnership>) {
        let _ = self.ownership.set(ownership);
    }

    /// The cluster's ownership, if in a cluster.
    pub(crate) fn ownership(&self) -> Option<&Arc<dyn ObjectOwnership>> {
        self.ownership.get()
    }

    /// An object's actor has stopped, its database closed.
    pub(crate) fn object_closed(&self, object: &ObjectAddr) {
        if let Some(ownership) = self.ownership.get() {
            ownership.closed(object);
        }
    }

    /// Whether object `id` has an actor (its database may be open).
    pub fn is_live(&self, id: &str) -> bool {
        self.objects.is_live(id)
    }

    /// Asks every live object to hibernate once it has nothing waiting
    /// (a cluster node that lost its lease serves none).
    pub fn hibernate_all(&self) {
        self.objects.hibernate_all();
    }

    /// Where an object's instance makes keys and handles, if anywhere.
    pub(crate) fn routing(&self) -> Option<Arc<dyn RoutingTable>> {
        self.routing.get().cloned()
    }

    /// Who owns which class, and the tenants' quotas.
    pub fn tenants(&self) -> &Arc<Tenants> {
        &self.tenants
    }

    pub fn catalog(&self) -> &Arc<Catalog> {
        &self.catalog
    }

    /// The replication service, if `[replication]` names a store.
    pub fn replication(&self) -> Option<&Arc<Replication>> {
        self.replication.as_ref()
    }

    pub fn config(&self) -> &Config {
        &self.config
    }

    pub fn data_dir(&self) -> &DataDir {
        &self.data
    }

    pub fn spares(&self) -> &Spares {
        &self.spares
    }

    pub fn engine(&self) -> &Engine {
        &self.engine
    }

    pub fn executor(&self) -> &Executor {
        &self.executor
    }

    pub fn guest_memory(&self) -> &Arc<MemoryBudget> {
        &self.guest_memory
    }

    pub fn metrics(&self) -> &Metrics {
        &self.metrics
    }

    pub fn guest_logs(&self) -> &GuestLogs {
        &self.guest_logs
    }

    pub(crate) fn objects(&self) -> &Objects {
        &self.objects
    }

    /// How many objects have a live instance now.
    pub fn active_objects(&self) -> usize {
        self.objects.active()
    }

    /// How many objects have their database open now, with or without an
    /// instance.
    pub fn open_objects(&self) -> usize {
        self.objects.open()
    }
}

/// The operator's requests to an object's data, run by its actor between
/// batches without an instance (see `object::admin`).
impl Runtime {
    /// Whether object `name` of `class` has a database (exists).
    pub fn object_exists(&self, class: &str, name: &str) -> Result<bool, EventError> {
        let class = self.class(class)?;
        let object = ObjectAddr::new(class.name(), name);
        Ok(self
            .data
            .object_database(object.class(), object.id())
            .exists())
    }

    /// Delivers an operator's request to an existing object.
    async fn admin<T>(
        self: &Arc<Self>,
        class: &str,
        name: &str,
        make: impl FnOnce(oneshot::Sender<Result<T, AdminError>>) -> AdminRequest,
    ) -> Result<T, AdminError> {
        if !self.object_exists(class, name)? {
            return Err(AdminError::NotFound {
                class: class.to_string(),
                name: name.to_string(),
            });
        }
        self.deliver(class, name, |reply| Event::Admin(make(reply)))
            .await?
    }

    /// What object `name` holds and whether it is live.
    pub async fn inspect(
        self: &Arc<Self>,
        class: &str,
        name: &str,
        timeout: Duration,
    ) -> Result<Inspection, AdminError> {
        self.admin(class, name, |reply| AdminRequest::Inspect {
            timeout,
            reply,
        })
        .await
    }

    /// Runs one read-only statement on object `name`'s database.
    pub async fn query(
        self: &Arc<Self>,
        class: &str,
        name: &str,
        sql: String,
        params: Vec<rusqlite::types::Value>,
        limits: QueryLimits,
    ) -> Result<QueryResult, AdminError> {
        self.admin(class, name, |reply| AdminRequest::Query {
            sql,
            params,
            limits,
            reply,
        })
        .await
    }

    /// Copies object `name`'s database, as of its last commit, to a new
    /// file at `to`.
    pub async fn export(
        self: &Arc<Self>,
        class: &str,
        name: &str,
        to: PathBuf,
    ) -> Result<(), AdminError> {
        self.admin(class, name, |reply| AdminRequest::Export { to, reply })
            .await
    }

    /// Replaces object `name`'s database (creating the object if it has
    /// none) with the checked file at `from`, which has had `migrations`
    /// of the class's migrations.
    pub async fn import(
        self: &Arc<Self>,
        class: &str,
        name: &str,
        from: PathBuf,
        migrations: i64,
    ) -> Result<(), AdminError> {
        // The import may be the restore of an object that moved here.
        self.deliver_claimed(class, name, false, |reply| {
            Event::Admin(AdminRequest::Import {
                from,
                migrations,
                reply,
            })
        })
        .await?
    }
}
