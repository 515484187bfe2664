//! `podhost objects restore` and `podhost restore-all`: objects' databases
//! rebuilt from the replication store into a stopped server's data
//! directory (a running server restores one object through
//! `POST /admin/objects/{class}/{name}/restore`).

use std::path::{Path, PathBuf};

use anyhow::{Context as _, bail};
use clap::Args;
use podhost::Config;
use podhost::config::ReplicationSettings;
use podhost::object::ObjectAddr;
use podhost::replication::restore::{Point, RestoreError, list_objects, object_name, restore};
use podhost::replication::store;
use podhost::storage::{DataDir, DataDirLock};

/// `podhost objects restore`.
#[derive(Args)]
pub struct RestoreArgs {
    /// The config file with `[replication]` (default: podhost.toml).
    #[arg(long, short)]
    config: Option<PathBuf>,
    /// Restore into this data directory instead of the config's.
    #[arg(long)]
    data_dir: Option<PathBuf>,
    #[arg(long)]
    class: String,
    #[arg(long)]
    name: String,
    /// The state as of this time (RFC 3339, UTC: 2026-12-01T20:00:00Z).
    #[arg(long)]
    at: Option<String>,
    /// The state right after this transaction.
    #[arg(long)]
    txid: Option<u64>,
    /// Restore into this object of the same class instead.
    #[arg(long = "as")]
    as_name: Option<String>,
}

/// `podhost restore-all`.
#[derive(Args)]
pub struct RestoreAllArgs {
    /// The store to restore from (file:///path or s3://bucket/prefix);
    /// its other settings (endpoint, region, ...) come from the config.
    #[arg(long)]
    from: String,
    /// A config file for `data_dir` and `[replication]` settings
    /// (default: podhost.toml if it exists).
    #[arg(long, short)]
    config: Option<PathBuf>,
    /// The data directory to rebuild (it must hold no objects).
    #[arg(long)]
    data_dir: Option<PathBuf>,
}

fn load(config: Option<&Path>) -> anyhow::Result<Config> {
    let default = PathBuf::from("podhost.toml");
    match config {
        Some(path) => Config::load(path),
        None if default.exists() => Config::load(&default),
        None => Ok(Config::default()),
    }
}

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")
}

pub fn restore_one(args: RestoreArgs) -> anyhow::Result<()> {
    let config = load(args.config.as_deref())?;
    if !config.replication.enabled() {
        bail!("the config has no [replication] url to restore from");
    }
    let data_dir = args.data_dir.unwrap_or(config.data_dir.clone());
    let point = Point::parse(args.at.as_deref(), args.txid).map_err(anyhow::Error::msg)?;
    let target = args.as_name.unwrap_or_else(|| args.name.clone());
    let lock = DataDirLock::acquire(&data_dir).with_context(|| {
        format!(
            "stop the server first, or restore through it: POST /admin/objects/{}/{}/restore",
            args.class, args.name
        )
    })?;
    let store = store::open(&config.replication)?;
    let source = ObjectAddr::new(&args.class, &args.name);
    let file = scratch(&data_dir)?;
    let restored = runtime()?
        .block_on(restore(
            store.as_ref(),
            &args.class,
            source.id(),
            point,
            &file,
        ))
        .with_context(|| format!("{}/{} was not restored", args.class, args.name))?;
    drop(lock);
    crate::objects_command::import(&data_dir, &args.class, &target, &file)?;
    println!(
        "restored {}/{} at transaction {} (generation {}) into {}/{target}",
        args.class, args.name, restored.txid, restored.generation, args.class
    );
    Ok(())
}

pub fn restore_all(args: RestoreAllArgs) -> anyhow::Result<()> {
    let config = load(args.config.as_deref())?;
    let data_dir = args.data_dir.unwrap_or(config.data_dir.clone());
    let settings = ReplicationSettings {
        url: Some(args.from.clone()),
        ..config.replication.clone()
    };
    settings.validate()?;
    let objects_dir = DataDir::new(&data_dir).root().join("objects");
    if std::fs::read_dir(&objects_dir).is_ok_and(|mut entries| entries.next().is_some()) {
        bail!(
            "{} already holds objects: restore-all rebuilds an empty data directory",
            objects_dir.display()
        );
    }
    if DataDir::new(&data_dir)
        .root()
        .join("catalog.sqlite")
        .exists()
    {
        bail!(
            "{} already has a catalog: restore-all rebuilds an empty data directory",
            data_dir.display()
        );
    }
    let store = store::open(&settings)?;
    let runtime = runtime()?;
    {
        let _lock = DataDirLock::acquire(&data_dir)?;
        if runtime.block_on(podhost::replication::catalog::restore(
            store.as_ref(),
            &data_dir,
        ))? {
            println!("restored the catalog and the deployed components");
        } else {
            println!("the store has no catalog: only objects are restored");
        }
    }
    let objects = runtime.block_on(list_objects(store.as_ref()))?;
    let mut restored = 0;
    for (class, id) in objects {
        let name = match runtime.block_on(object_name(store.as_ref(), &class, &id)) {
            Ok(name) => name,
            // Its first snapshot never reached the store: nothing of it
            // was acknowledged as replicated.
            Err(RestoreError::NoHistory) => {
                println!("skipped object {id} of class {class}: no snapshot in the store");
                continue;
            }
            Err(error) => {
                return Err(error)
                    .with_context(|| format!("cannot restore object {id} of class {class}"));
            }
        };
        if ObjectAddr::new(&class, &name).id() != id {
            bail!("the store names object {id} of class {class} {name:?}, which is not its name");
        }
        let file = {
            let _lock = DataDirLock::acquire(&data_dir)?;
            let file = scratch(&data_dir)?;
            runtime
                .block_on(restore(store.as_ref(), &class, &id, Point::Latest, &file))
                .with_context(|| format!("{class}/{name} was not restored"))?;
            file
        };
        crate::objects_command::import(&data_dir, &class, &name, &file)?;
        restored += 1;
    }
    println!("restored {restored} objects into {}", data_dir.display());
    Ok(())
}

/// A new file in the data directory's scratch space, removed when dropped.
fn scratch(data_dir: &Path) -> anyhow::Result<tempfile::TempPath> {
    let dir = DataDir::new(data_dir).scratch();
    std::fs::create_dir_all(&dir)?;
    Ok(tempfile::Builder::new()
        .prefix("restore-")
        .suffix(".sqlite")
        .tempfile_in(&dir)?
        .into_temp_path())
}
