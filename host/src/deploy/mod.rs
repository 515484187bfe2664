//! Deploying classes to a running host: new versions (validated before
//! they go live), rollback, removal, and the classes of the config file
//! and the catalog at start.
//!
//! - [`validate`]: what a component must pass before it goes live (its
//!   migrations on a scratch database, append-only migrations).
//! - [`files`]: components stored by their hash, and the cleanup of those
//!   no version lists.
//! - [`shared_component`]: in a cluster, components put in the
//!   replication store before their version is recorded, and fetched
//!   from there by the nodes that lack them.
//! - [`follow`]: in a cluster, each node serves the version the shared
//!   catalog makes active, whichever node recorded it.
//!
//! Where versions live: the catalog's `class_versions` table (see
//! `storage::versions`) and `data/classes/<sha256>.wasm` (+ `.cwasm`, the
//! compiled form). The runtime holds the active version of each class;
//! installing a new one is a swap, and each live object changes over
//! between two batches (see `object::actor`).

mod files;
mod follow;
mod shared_component;
mod validate;

use std::sync::Arc;

use serde_json::{Map, Value};
use sha2::{Digest, Sha256};

use crate::config::{Access, ClassConfig, Config, validate_class_name};
use crate::engine::{Class, ClassError, ClassSpec};
use crate::runtime::Runtime;
use crate::storage::catalog::Catalog;
use crate::storage::versions::{NewVersion, VersionRecord};
use crate::storage::{DataDir, MigrationFailed};
use crate::tenants::{Principal, TenantError};

pub use files::collect_garbage;
pub(crate) use follow::{Following, follow};

/// The header of `PUT /admin/classes/{class}` holding the class's table
/// as JSON.
pub const CONFIG_HEADER: &str = "podhost-class-config";

/// Who deploys the classes of the config file.
pub const CONFIG_DEPLOYER: &str = "config";

/// Why a deploy, rollback or removal was refused. A refused deploy leaves
/// the running version as it was.
#[derive(Debug, thiserror::Error)]
pub enum DeployError {
    #[error("{0}")]
    BadName(String),
    #[error(
        "the component is larger than the limit of {limit} bytes (`[deploy] max_component_bytes`)"
    )]
    TooLarge { limit: usize },
    #[error("invalid class config: {0}")]
    BadConfig(String),
    #[error(transparent)]
    Component(#[from] ClassError),
    #[error("the deploy is refused: {0}")]
    Migration(MigrationFailed),
    #[error(
        "migration {number} differs from the active version's (migrations are append-only: keep the old ones and add new ones at the end), or deploy with ?force=true"
    )]
    NotAppendOnly { number: usize },
    #[error("class {0} is being deployed by another request; try again when it is done")]
    Busy(String),
    #[error("no class {0} is deployed")]
    NoSuchClass(String),
    #[error("class {class} has no version {version}")]
    NoSuchVersion { class: String, version: u64 },
    #[error("class {0} has no version older than the active one to roll back to")]
    NoPreviousVersion(String),
    #[error(
        "class {class} still has {count} object(s): delete them first, or pass ?objects=delete"
    )]
    ObjectsExist { class: String, count: usize },
    #[error("class {class} has no object {name:?} to check the migrations against")]
    NoSuchObject { class: String, name: String },
    #[error("object {0:?} stayed busy and did not close for the check; try again")]
    ObjectBusy(String),
    /// A tenant may not deploy or manage this class, or is over a quota.
    #[error(transparent)]
    Tenant(#[from] TenantError),
    #[error("internal error: {0}")]
    Internal(String),
}

fn internal(error: impl std::fmt::Display) -> DeployError {
    DeployError::Internal(error.to_string())
}

/// A new version, as given to `PUT /admin/classes/{class}`.
pub struct DeployRequest {
    pub class: String,
    pub wasm: Vec<u8>,
    /// The class's table (`[classes.NAME]` without `path`); none: defaults.
    pub config: Option<Value>,
    /// Recorded with the version ("admin", a tenant's name, ...).
    pub deployed_by: String,
    /// Who deploys: a tenant may deploy only its own classes, or a new one
    /// it then owns (see `Tenants::claim_class`).
    pub principal: Principal,
    /// Accept migrations that are not an extension of the active ones.
    pub force: bool,
    /// Also run the migrations on a copy of this object's database.
    pub check: Option<String>,
}

/// What a deploy did.
pub struct Deployed {
    pub version: VersionRecord,
    /// The component and config were those of the active version already.
    pub unchanged: bool,
}

/// The class config `table` describes, with its component at `path`.
pub fn class_config(table: &Value, path: &std::path::Path) -> Result<ClassConfig, String> {
    let mut table = match table {
        Value::Object(map) => map.clone(),
        Value::Null => Map::new(),
        _ => return Err("the class config must be a table".into()),
    };
    table.insert("path".into(), Value::String(path.display().to_string()));
    serde_json::from_value(Value::Object(table)).map_err(|error| error.to_string())
}

/// The SHA-256 of a component, in hex: its name in the data directory.
pub fn hash(wasm: &[u8]) -> String {
    hex::encode(Sha256::digest(wasm))
}

/// The active version of every class in the catalog, as class configs
/// with their stored components (for sizing the engine at start).
pub fn deployed_classes(
    catalog: &Catalog,
    data: &DataDir,
    config: &Config,
) -> anyhow::Result<std::collections::BTreeMap<String, ClassConfig>> {
    let mut classes = std::collections::BTreeMap::new();
    for version in catalog.active_versions()? {
        if config.classes.contains_key(&version.class) {
            continue;
        }
        let table: Value = serde_json::from_str(&version.config).unwrap_or(Value::Null);
        let class =
            class_config(&table, &data.class_component(&version.hash)).map_err(|error| {
                anyhow::anyhow!(
                    "the stored config of class {} version {} is invalid: {error}",
                    version.class,
                    version.version
                )
            })?;
        classes.insert(version.class, class);
    }
    Ok(classes)
}

/// At start: serves the active version of every deployed class, and
/// deploys the config file's classes. A config class whose component and
/// table are those it last deployed is a no-op: the active version (which
/// a later deploy over the API may have replaced) keeps serving. Config
/// classes' migrations are checked as objects wake, as before.
pub fn start(runtime: &Arc<Runtime>) -> anyhow::Result<()> {
    let catalog = Arc::clone(runtime.catalog());
    let config = runtime.config();
    // The config's components are stored first: in a cluster another
    // node may have recorded the same one already, as the active version.
    let mut configured = Vec::new();
    for (name, class_config) in &config.classes {
        let table = config
            .class_tables
            .get(name)
            .cloned()
            .unwrap_or_else(|| Value::Object(Map::new()));
        let wasm = std::fs::read(&class_config.path).map_err(|error| {
            anyhow::anyhow!(
                "cannot read the component of class {name:?} at {}: {error}",
                class_config.path.display()
            )
        })?;
        let hash = hash(&wasm);
        files::store_component(runtime.data_dir(), &hash, &wasm)?;
        configured.push((name, class_config, table.to_string(), wasm, hash));
    }
    let mut elsewhere = Vec::new();
    for version in catalog.active_versions()? {
        if !install_version(runtime, &version)? {
            elsewhere.push(version.class);
        }
    }
    for (name, class_config, text, wasm, hash) in configured {
        // In a cluster, nodes starting together race to record a config
        // class: the loser sees the winner's version and keeps it.
        for attempt in 1.. {
            let versions = catalog.versions(Some(name))?;
            let unchanged = versions
                .iter()
                .rev()
                .find(|version| version.deployed_by == CONFIG_DEPLOYER)
                .is_some_and(|version| version.hash == hash && version.config == text);
            if unchanged {
                if runtime.class(name).is_err()
                    && let Some(active) = versions.iter().find(|version| version.active)
                    && !install_version(runtime, active)?
                {
                    elsewhere.push(name.clone());
                }
                if runtime.class(name).is_ok() {
                    break;
                }
            }
            let version = versions.last().map_or(1, |last| last.version + 1);
            let class = build(runtime, name, &hash, &wasm, version, class_config.clone())
                .map_err(|error| anyhow::anyhow!("class {name:?}: {error}"))?;
            let added = catalog.add_version(&NewVersion {
                class: name,
                version,
                hash: &hash,
                size_bytes: wasm.len() as u64,
                deployed_by: CONFIG_DEPLOYER,
                config: &text,
                migrations: None,
            });
            match added {
                Ok(_) => {
                    tracing::info!(class = name, version, hash = &hash[..12], "deployed");
                    runtime.install(Arc::new(class));
                    break;
                }
                Err(error) if catalog.writes().is_shared() && attempt < 5 => {
                    tracing::debug!(class = name, %error, "another node recorded the class first");
                }
                Err(error) => return Err(error.into()),
            }
        }
    }
    collect_garbage(runtime)?;
    // Deployed through other nodes: fetched from the store and loaded in
    // the background, as a deploy elsewhere is while the node runs.
    follow(runtime, elsewhere);
    Ok(())
}

/// Loads and serves a recorded version at start; `false` (in a cluster)
/// when this node does not have its component yet.
fn install_version(runtime: &Arc<Runtime>, version: &VersionRecord) -> anyhow::Result<bool> {
    let stored = runtime.data_dir().class_component(&version.hash).exists();
    if !stored && runtime.catalog().writes().is_shared() {
        tracing::info!(
            class = version.class,
            version = version.version,
            "the class's component is not on this node yet: fetching it"
        );
        return Ok(false);
    }
    let class = load_version(runtime, version).map_err(|error| {
        anyhow::anyhow!(
            "cannot load class {} version {}: {error}",
            version.class,
            version.version
        )
    })?;
    runtime.install(Arc::new(class));
    Ok(true)
}

/// Compiles (or loads compiled) and links a class.
fn build(
    runtime: &Runtime,
    name: &str,
    hash: &str,
    wasm: &[u8],
    version: u64,
    config: ClassConfig,
) -> Result<Class, DeployError> {
    let mut settings = runtime.config().class_settings(&config);
    // Secrets come from where the table says, read now: never stored.
    settings.config = Arc::new(
        config
            .config_values(name)
            .map_err(|error| DeployError::BadConfig(format!("{error:#}")))?,
    );
    Class::build(
        runtime.engine(),
        runtime.linker(),
        runtime.data_dir(),
        ClassSpec {
            name,
            hash,
            wasm,
            version,
            config,
            settings,
            share: runtime.share(name),
        },
    )
    .map_err(DeployError::from)
}

/// A recorded version, from its stored component.
fn load_version(runtime: &Runtime, version: &VersionRecord) -> Result<Class, DeployError> {
    let path = runtime.data_dir().class_component(&version.hash);
    let wasm = std::fs::read(&path)
        .map_err(|error| internal(format!("cannot read {}: {error}", path.display())))?;
    let table: Value = serde_json::from_str(&version.config).unwrap_or(Value::Null);
    let config = class_config(&table, &path).map_err(DeployError::BadConfig)?;
    let class = build(
        runtime,
        &version.class,
        &version.hash,
        &wasm,
        version.version,
        config,
    )?;
    if let Some(migrations) = &version.migrations {
        class.learn_migrations(migrations.clone());
    }
    Ok(class)
}

/// The deploy of one class under way; others of the same class get
/// [`DeployError::Busy`] until it is dropped.
struct DeployLock {
    runtime: Arc<Runtime>,
    class: String,
}

impl DeployLock {
    fn take(runtime: &Arc<Runtime>, class: &str) -> Result<Self, DeployError> {
        let mut deploying = runtime.deploying().lock();
        if deploying.contains_key(class) {
            return Err(DeployError::Busy(class.to_string()));
        }
        deploying.insert(class.to_string(), None);
        Ok(DeployLock {
            runtime: Arc::clone(runtime),
            class: class.to_string(),
        })
    }

    /// Keeps `hash`'s files from cleanup until the deploy ends.
    fn adding(&self, hash: &str) {
        self.runtime
            .deploying()
            .lock()
            .insert(self.class.clone(), Some(hash.to_string()));
    }
}

impl Drop for DeployLock {
    fn drop(&mut self) {
        self.runtime.deploying().lock().remove(&self.class);
    }
}

/// Runs catalog work off the runtime's threads.
async fn blocking<T: Send + 'static>(
    work: impl FnOnce() -> rusqlite::Result<T> + Send + 'static,
) -> Result<T, DeployError> {
    tokio::task::spawn_blocking(work)
        .await
        .map_err(internal)?
        .map_err(|error| internal(format!("the catalog: {error}")))
}

/// Deploys a new version of a class: checks it, records it, and makes it
/// the active one. Nothing changes when it is refused.
pub async fn deploy(
    runtime: &Arc<Runtime>,
    request: DeployRequest,
) -> Result<Deployed, DeployError> {
    let name = request.class.clone();
    validate_class_name(&name).map_err(|error| DeployError::BadName(error.to_string()))?;
    let limit = runtime.config().deploy.max_component_bytes;
    if request.wasm.len() > limit {
        return Err(DeployError::TooLarge { limit });
    }
    let lock = DeployLock::take(runtime, &name)?;
    let deployed = runtime.class(&name).is_ok();
    runtime
        .tenants()
        .check_claim(&request.principal, &name, deployed)?;
    let catalog = Arc::clone(runtime.catalog());
    let of_class = name.clone();
    let versions = blocking(move || catalog.versions(Some(&of_class))).await?;
    let active = versions.iter().find(|version| version.active).cloned();
    // Without a config, the class keeps the active version's (its access,
    // limits, secrets' sources...): a redeploy of new code must not make a
    // user's class public. A new class gets the server's defaults.
    let table = match request.config {
        None => active
            .as_ref()
            .and_then(|active| serde_json::from_str(&active.config).ok())
            .unwrap_or_else(|| Value::Object(Map::new())),
        Some(Value::Null) => Value::Object(Map::new()),
        Some(Value::Object(mut map)) => {
            map.remove("path");
            Value::Object(map)
        }
        Some(_) => return Err(DeployError::BadConfig("it must be a table".into())),
    };
    let text = table.to_string();
    let hash = hash(&request.wasm);
    let path = runtime.data_dir().class_component(&hash);
    let config = class_config(&table, &path).map_err(DeployError::BadConfig)?;
    let settings = runtime.config().class_settings(&config);
    settings
        .limits
        .validate(&format!("[classes.{name}.limits]"))
        .map_err(|error| DeployError::BadConfig(error.to_string()))?;
    if settings.limits.max_memory_bytes > runtime.max_class_memory() {
        return Err(DeployError::BadConfig(format!(
            "max_memory_bytes = {} is more than this server's instance slots hold ({}, sized at start from [limits] and the classes); restart with a larger [limits] max_memory_bytes",
            settings.limits.max_memory_bytes,
            runtime.max_class_memory()
        )));
    }
    if matches!(config.access, Access::User | Access::Org) && runtime.accounts_settings().is_none()
    {
        return Err(DeployError::BadConfig(format!(
            "access = {:?} needs accounts, which are off on this server: add an [auth] section to its config and restart it",
            config.access.as_str()
        )));
    }
    if let Some(active) = &active
        && active.hash == hash
        && active.config == text
        && runtime.class(&name).is_ok()
    {
        return Ok(Deployed {
            version: active.clone(),
            unchanged: true,
        });
    }
    let number = versions.last().map_or(1, |last| last.version + 1);
    lock.adding(&hash);
    let wasm = Arc::new(request.wasm);
    let built = {
        let (runtime, name, hash, wasm) = (
            Arc::clone(runtime),
            name.clone(),
            hash.clone(),
            Arc::clone(&wasm),
        );
        tokio::task::spawn_blocking(move || {
            files::store_component(runtime.data_dir(), &hash, &wasm).map_err(internal)?;
            build(&runtime, &name, &hash, &wasm, number, config)
        })
        .await
        .map_err(internal)??
    };
    let class = Arc::new(built);
    let check = match &request.check {
        Some(object) => Some(validate::object_copy(runtime, &name, object).await?),
        None => None,
    };
    let migrations = validate::migrations(runtime, &class, check).await?;
    let previous = active
        .as_ref()
        .and_then(|active| active.migrations.clone())
        .or_else(|| {
            runtime
                .class(&name)
                .ok()
                .and_then(|class| class.known_migrations())
                .map(|known| known.to_vec())
        });
    if !request.force
        && let Some(previous) = previous
        && let Some(number) = validate::first_change(&previous, &migrations)
    {
        return Err(DeployError::NotAppendOnly { number });
    }
    class.learn_migrations(migrations.clone());
    // Before the version is recorded: the other nodes load it as soon as
    // they see the record.
    shared_component::share(runtime, &hash, &wasm).await?;
    let (tenants, principal, of_class) = (
        Arc::clone(runtime.tenants()),
        request.principal.clone(),
        name.clone(),
    );
    tokio::task::spawn_blocking(move || tenants.claim_class(&principal, &of_class, deployed))
        .await
        .map_err(internal)??;
    let catalog = Arc::clone(runtime.catalog());
    let (class_name, hash_text, by) = (name.clone(), hash.clone(), request.deployed_by);
    let size_bytes = wasm.len() as u64;
    let version = blocking(move || {
        catalog.add_version(&NewVersion {
            class: &class_name,
            version: number,
            hash: &hash_text,
            size_bytes,
            deployed_by: &by,
            config: &text,
            migrations: Some(&migrations),
        })
    })
    .await?;
    runtime.install(class);
    drop(lock);
    tracing::info!(
        class = name,
        version = number,
        hash = &hash[..12],
        by = version.deployed_by,
        "deployed"
    );
    clean_up(runtime).await;
    Ok(Deployed {
        version,
        unchanged: false,
    })
}

/// Makes an older version (`version`, or the one before the active one)
/// the active one again.
pub async fn rollback(
    runtime: &Arc<Runtime>,
    name: &str,
    version: Option<u64>,
) -> Result<VersionRecord, DeployError> {
    let _lock = DeployLock::take(runtime, name)?;
    let catalog = Arc::clone(runtime.catalog());
    let of_class = name.to_string();
    let versions = blocking(move || catalog.versions(Some(&of_class))).await?;
    if versions.is_empty() {
        return Err(DeployError::NoSuchClass(name.to_string()));
    }
    let active = versions
        .iter()
        .find(|version| version.active)
        .map_or(u64::MAX, |version| version.version);
    let target = match version {
        Some(number) => versions
            .iter()
            .find(|version| version.version == number)
            .ok_or_else(|| DeployError::NoSuchVersion {
                class: name.to_string(),
                version: number,
            })?,
        None => versions
            .iter()
            .rev()
            .find(|version| version.version < active)
            .ok_or_else(|| DeployError::NoPreviousVersion(name.to_string()))?,
    }
    .clone();
    let loaded = {
        let (runtime, target) = (Arc::clone(runtime), target.clone());
        tokio::task::spawn_blocking(move || load_version(&runtime, &target))
            .await
            .map_err(internal)??
    };
    let catalog = Arc::clone(runtime.catalog());
    let (of_class, number) = (name.to_string(), target.version);
    let record = blocking(move || catalog.activate_version(&of_class, number))
        .await?
        .ok_or_else(|| DeployError::NoSuchVersion {
            class: name.to_string(),
            version: number,
        })?;
    runtime.install(Arc::new(loaded));
    tracing::info!(class = name, version = number, "rolled back");
    Ok(record)
}

/// Removes a class: its versions and, with `delete_objects`, its objects
/// (refused while it has any otherwise). Returns the names of the objects
/// deleted.
pub async fn remove(
    runtime: &Arc<Runtime>,
    name: &str,
    delete_objects: bool,
) -> Result<Vec<String>, DeployError> {
    let _lock = DeployLock::take(runtime, name)?;
    let catalog = Arc::clone(runtime.catalog());
    let of_class = name.to_string();
    let versions = blocking(move || catalog.versions(Some(&of_class))).await?;
    if versions.is_empty() && runtime.class(name).is_err() {
        return Err(DeployError::NoSuchClass(name.to_string()));
    }
    let catalog = Arc::clone(runtime.catalog());
    let of_class = name.to_string();
    let objects = blocking(move || catalog.objects(Some(&of_class))).await?;
    let data = runtime.data_dir().clone();
    let of_class = name.to_string();
    let on_disk = tokio::task::spawn_blocking(move || files::object_databases(&data, &of_class))
        .await
        .map_err(internal)?;
    let count = objects.len().max(on_disk);
    if count > 0 && !delete_objects {
        return Err(DeployError::ObjectsExist {
            class: name.to_string(),
            count,
        });
    }
    let mut deleted = Vec::new();
    for object in objects {
        runtime
            .delete(name, &object.name)
            .await
            .map_err(|error| internal(format!("deleting object {:?}: {error}", object.name)))?;
        deleted.push(object.name);
    }
    runtime.uninstall(name);
    let data = runtime.data_dir().clone();
    let of_class = name.to_string();
    tokio::task::spawn_blocking(move || files::remove_object_databases(&data, &of_class))
        .await
        .map_err(internal)?
        .map_err(|error| internal(format!("cannot remove the class's objects: {error}")))?;
    let catalog = Arc::clone(runtime.catalog());
    let of_class = name.to_string();
    blocking(move || catalog.remove_versions(&of_class)).await?;
    tracing::info!(class = name, objects = deleted.len(), "class removed");
    clean_up(runtime).await;
    Ok(deleted)
}

/// Removes the files no version refers to any more.
async fn clean_up(runtime: &Arc<Runtime>) {
    let runtime = Arc::clone(runtime);
    let cleaned = tokio::task::spawn_blocking(move || collect_garbage(&runtime)).await;
    match cleaned {
        Ok(Ok(())) => {}
        Ok(Err(error)) => tracing::warn!("cannot remove unused class files: {error:#}"),
        Err(error) => tracing::warn!(%error, "removing unused class files panicked"),
    }
}
