//! The wasmtime engine and deployed classes: a pooling allocator sized for
//! the configured number of active objects, and each class compiled once,
//! cached on disk, and pre-linked so activation only instantiates.

use std::path::Path;
use std::sync::{Arc, OnceLock};

use anyhow::Context as _;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use wasmtime::component::{Component, Linker};
use wasmtime::{Engine, InstanceAllocationStrategy, PoolingAllocationConfig, Store};

use crate::bindings::{Object, ObjectPre};
use crate::capabilities::ObjectState;
use crate::config::{ClassConfig, ClassSettings, Config};
use crate::storage::DataDir;

/// Address space podhost lets instance memories reserve: a quarter of the
/// 128 TiB a 64-bit Linux process has.
const ADDRESS_SPACE_BUDGET: u64 = 32 << 40;
const DEFAULT_RESERVATION: u64 = 4 << 30;
const DEFAULT_GUARD: u64 = 32 << 20;
const SMALL_GUARD: u64 = 64 << 10;
const WASM_PAGE: u64 = 64 << 10;
/// When an instance is freed, the pages of its memory and tables it
/// dirtied, up to these sizes, are reset in place (found with Linux's
/// PAGEMAP_SCAN, 6.7 and later) rather than returned to the kernel: no
/// `madvise`, no TLB shootdown across threads, no page faults when the
/// slot is next used. A typical object dirties well under this much; the
/// cost is that freed slots stay resident up to it.
const MEMORY_KEPT_RESIDENT: usize = 128 << 10;
const TABLE_KEPT_RESIDENT: usize = 16 << 10;

/// Builds the engine every class and object shares.
pub fn engine(config: &Config) -> anyhow::Result<Engine> {
    // Headroom above max_active for instances of objects that were asked
    // to hibernate and have not finished yet.
    let active = config.max_active.saturating_add(config.max_active / 4 + 16);
    // A Rust guest component holds several core instances and tables;
    // the pool's defaults are sized for core modules.
    let memories = active.saturating_mul(2);
    let max_memory = largest_memory(config);
    let mut pool = PoolingAllocationConfig::new();
    pool.total_component_instances(active)
        .total_core_instances(active.saturating_mul(8))
        .total_memories(memories)
        .total_tables(active.saturating_mul(4))
        .total_stacks(active)
        .max_memory_size(max_memory)
        .linear_memory_keep_resident(MEMORY_KEPT_RESIDENT)
        .table_keep_resident(TABLE_KEPT_RESIDENT)
        .pagemap_scan(wasmtime::Enabled::Auto);
    let mut wasm = wasmtime::Config::new();
    wasm.wasm_component_model(true).epoch_interruption(true);
    // Each pooled memory reserves its slot of address space up front. The
    // default slot (4 GiB plus a guard) lets compiled code skip bounds
    // checks; when max_active needs more slots than the address space
    // holds, slots shrink to the memory limit and code checks bounds.
    let default_slot = DEFAULT_RESERVATION + DEFAULT_GUARD;
    if u64::from(memories).saturating_mul(default_slot) > ADDRESS_SPACE_BUDGET {
        let reservation = (max_memory as u64).next_multiple_of(WASM_PAGE);
        let needed = u64::from(memories).saturating_mul(reservation + SMALL_GUARD);
        if needed > ADDRESS_SPACE_BUDGET {
            anyhow::bail!(
                "max_active = {} with max_memory_bytes = {max_memory} needs {} GiB of address space for \
                 instance memories, more than the {} GiB podhost allows itself: lower max_active or max_memory_bytes",
                config.max_active,
                needed >> 30,
                ADDRESS_SPACE_BUDGET >> 30
            );
        }
        wasm.memory_reservation(reservation)
            .memory_guard_size(SMALL_GUARD)
            .memory_reservation_for_growth(0);
        tracing::info!(
            max_active = config.max_active,
            "instance memories reserve {} MiB each (with bounds checks) to fit the address space",
            reservation >> 20
        );
    }
    crate::os_limits::check_stack_pool(config.max_active, active)?;
    let open_databases =
        crate::os_limits::open_databases(config.max_active, config.max_open_databases);
    crate::os_limits::warn_if_too_low(config.max_active, active, open_databases);
    wasm.allocation_strategy(InstanceAllocationStrategy::Pooling(pool));
    describe(Engine::new(&wasm), || {
        "cannot create the wasmtime engine".into()
    })
}

/// The memory slot size of the pool: the largest any class may use.
pub fn largest_memory(config: &Config) -> usize {
    config
        .classes
        .values()
        .map(|class| config.class_settings(class).limits.max_memory_bytes)
        .fold(config.limits.max_memory_bytes, usize::max)
}

/// A deployed class, ready to instantiate: one version of it.
pub struct Class {
    name: String,
    hash: String,
    /// The version's number (0 before it is recorded).
    version: u64,
    /// The class's table as deployed (access, limits, ...).
    config: ClassConfig,
    settings: ClassSettings,
    pre: ObjectPre<ObjectState>,
    /// The class's migrations, learnt at validation or from its first
    /// instance.
    migrations: OnceLock<Arc<[String]>>,
    /// Its share of execution: one permit per event running at once,
    /// shared by all versions of the class.
    share: Arc<Semaphore>,
}

/// What a class is made of, before it is compiled.
pub struct ClassSpec<'a> {
    pub name: &'a str,
    pub hash: &'a str,
    pub wasm: &'a [u8],
    pub version: u64,
    pub config: ClassConfig,
    pub settings: ClassSettings,
    pub share: Arc<Semaphore>,
}

/// Why bytes cannot be a class.
#[derive(Debug, Clone, thiserror::Error)]
pub enum ClassError {
    #[error("the bytes are not WebAssembly (no \\0asm header)")]
    NotWasm,
    #[error(
        "this is a core WebAssembly module, not a component: build the class for wasm32-wasip2 (a cdylib)"
    )]
    CoreModule,
    #[error("the component does not compile: {0}")]
    Invalid(String),
    #[error("the component imports something podhost does not provide: {0}")]
    UnknownImport(String),
    #[error("the component does not export the podhost:object world: {0}")]
    NotOurWorld(String),
}

impl Class {
    /// Compiles `spec.wasm` (unless a compiled copy for this exact
    /// component and engine is cached in `data`) and links it against
    /// `linker`: every import must be one the linker provides.
    pub fn build(
        engine: &Engine,
        linker: &Linker<ObjectState>,
        data: &DataDir,
        spec: ClassSpec<'_>,
    ) -> Result<Self, ClassError> {
        check_header(spec.wasm)?;
        let component = compiled(engine, data, spec.name, spec.hash, spec.wasm)?;
        let instance_pre = linker
            .instantiate_pre(&component)
            .map_err(|error| ClassError::UnknownImport(format!("{error:#}")))?;
        let pre = ObjectPre::new(instance_pre)
            .map_err(|error| ClassError::NotOurWorld(format!("{error:#}")))?;
        Ok(Class {
            name: spec.name.to_string(),
            hash: spec.hash.to_string(),
            version: spec.version,
            config: spec.config,
            settings: spec.settings,
            pre,
            migrations: OnceLock::new(),
            share: spec.share,
        })
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// The version's number.
    pub fn version(&self) -> u64 {
        self.version
    }

    /// The class's table as deployed.
    pub fn config(&self) -> &ClassConfig {
        &self.config
    }

    /// Its durability and limits.
    pub fn settings(&self) -> &ClassSettings {
        &self.settings
    }

    /// The migrations, if an instance has told them already.
    pub fn known_migrations(&self) -> Option<Arc<[String]>> {
        self.migrations.get().cloned()
    }

    /// Records the migrations an instance declared.
    pub fn learn_migrations(&self, migrations: Vec<String>) -> Arc<[String]> {
        Arc::clone(self.migrations.get_or_init(|| migrations.into()))
    }

    /// Waits for a turn to run events of this class (see `execution`).
    /// `None` only if the share was closed, which nothing does.
    pub async fn turn(&self) -> Option<OwnedSemaphorePermit> {
        Arc::clone(&self.share).acquire_owned().await.ok()
    }

    /// The SHA-256 of the deployed component.
    pub fn hash(&self) -> &str {
        &self.hash
    }

    pub async fn instantiate(&self, store: &mut Store<ObjectState>) -> wasmtime::Result<Object> {
        self.pre.instantiate_async(store).await
    }
}

/// The preamble of a component (`\0asm`, layer 1) vs a core module's.
fn check_header(wasm: &[u8]) -> Result<(), ClassError> {
    let (Some(magic), Some(layer)) = (wasm.get(..4), wasm.get(6..8)) else {
        return Err(ClassError::NotWasm);
    };
    if magic != b"\0asm" {
        return Err(ClassError::NotWasm);
    }
    if layer == [0, 0] {
        return Err(ClassError::CoreModule);
    }
    Ok(())
}

fn compiled(
    engine: &Engine,
    data: &DataDir,
    name: &str,
    hash: &str,
    wasm: &[u8],
) -> Result<Component, ClassError> {
    let cache = data.compiled_class(hash);
    if cache.exists() {
        // SAFETY: the host wrote this file from `Component::serialize` and
        // keeps it in its own data directory; wasmtime checks that it was
        // built by a compatible engine and refuses it otherwise.
        match unsafe { Component::deserialize_file(engine, &cache) } {
            Ok(component) => return Ok(component),
            Err(error) => tracing::info!(
                class = name,
                "recompiling: the cached compilation is unusable: {error}"
            ),
        }
    }
    let started = std::time::Instant::now();
    let component =
        Component::new(engine, wasm).map_err(|error| ClassError::Invalid(format!("{error:#}")))?;
    tracing::info!(class = name, elapsed = ?started.elapsed(), "compiled");
    match component.serialize() {
        Ok(serialized) => {
            if let Err(error) = write_atomically(&cache, &serialized) {
                tracing::warn!(class = name, "cannot cache the compiled class: {error:#}");
            }
        }
        Err(error) => tracing::warn!(class = name, "cannot serialize the class: {error:#}"),
    }
    Ok(component)
}

/// Writes through a temporary file so a crash never leaves half a file.
pub fn write_atomically(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    let dir = path.parent().context("the path has no parent")?;
    std::fs::create_dir_all(dir)?;
    // Unique, so two writers of one file never share a temporary.
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let unique = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let mut name = path.file_name().unwrap_or_default().to_os_string();
    name.push(format!(".{}-{unique}.tmp", std::process::id()));
    let temporary = path.with_file_name(name);
    std::fs::write(&temporary, bytes)?;
    std::fs::rename(&temporary, path)?;
    Ok(())
}

/// wasmtime has an error type of its own; this brings one into `anyhow`
/// with a message saying what failed.
fn describe<T>(result: wasmtime::Result<T>, what: impl FnOnce() -> String) -> anyhow::Result<T> {
    result.map_err(|error| anyhow::anyhow!("{}: {error:?}", what()))
}
