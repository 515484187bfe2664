//! `podhost objects list|delete`: the catalog from the command line.

use std::path::{Path, PathBuf};
use std::time::{Duration, UNIX_EPOCH};

use anyhow::Context as _;
use clap::{Args, Subcommand};
use podhost::Config;
use podhost::object::ObjectAddr;
use podhost::storage::catalog::Catalog;
use podhost::storage::{DataDir, DataDirLock, Durability};

#[derive(Subcommand)]
pub enum ObjectsCommand {
    /// List the objects in the catalog (works while a server runs).
    List {
        #[command(flatten)]
        data: DataDirArgs,
        /// Only this class's objects.
        #[arg(long)]
        class: Option<String>,
    },
    /// Delete an object for good: its database and its catalog entry.
    /// The server must be stopped; a running one deletes through
    /// `DELETE /admin/objects/{class}/{name}`.
    Delete {
        #[command(flatten)]
        data: DataDirArgs,
        class: String,
        name: String,
    },
}

/// Which data directory: `--data-dir`, else the config's, else `data`.
#[derive(Args)]
pub struct DataDirArgs {
    /// Read `data_dir` from this config file (default: podhost.toml if it
    /// exists).
    #[arg(long, short)]
    config: Option<PathBuf>,
    #[arg(long)]
    data_dir: Option<PathBuf>,
}

impl DataDirArgs {
    fn resolve(&self) -> anyhow::Result<PathBuf> {
        if let Some(dir) = &self.data_dir {
            return Ok(dir.clone());
        }
        let config = match &self.config {
            Some(path) => Some(path.clone()),
            None => Some(PathBuf::from("podhost.toml")).filter(|p| p.exists()),
        };
        match config {
            Some(path) => Ok(Config::load(&path)?.data_dir),
            None => Ok(PathBuf::from("data")),
        }
    }
}

pub fn run(command: ObjectsCommand) -> anyhow::Result<()> {
    match command {
        ObjectsCommand::List { data, class } => list(&data.resolve()?, class.as_deref()),
        ObjectsCommand::Delete { data, class, name } => delete(&data.resolve()?, &class, &name),
    }
}

fn list(data_dir: &Path, class: Option<&str>) -> anyhow::Result<()> {
    let objects = Catalog::open_read_only(data_dir)?.objects(class)?;
    println!(
        "{:<16} {:<32} {:<14} {:<20} {:<20} {:>12}",
        "CLASS", "NAME", "ID", "CREATED", "LAST ACTIVE", "SIZE"
    );
    for object in &objects {
        println!(
            "{:<16} {:<32} {:<14} {:<20} {:<20} {:>12}",
            object.class,
            object.name,
            &object.id[..12],
            time(object.created_at),
            time(object.last_active_at),
            object.size_bytes
        );
    }
    println!("{} objects", objects.len());
    Ok(())
}

fn delete(data_dir: &Path, class: &str, name: &str) -> anyhow::Result<()> {
    let _lock = DataDirLock::acquire(data_dir).with_context(|| {
        format!("stop the server first, or delete through it: DELETE /admin/objects/{class}/{name}")
    })?;
    let object = ObjectAddr::new(class, name);
    let existed = DataDir::new(data_dir).remove_object_files(class, object.id())?;
    let known = Catalog::open(data_dir, Durability::Full)?.remove(object.id())?;
    podhost::accounts::forget_routes(data_dir, class, name)?;
    if existed || known {
        println!("deleted {class}/{name}");
    } else {
        println!("{class}/{name} has no data; nothing to delete");
    }
    Ok(())
}

fn time(ms: i64) -> String {
    let at = UNIX_EPOCH + Duration::from_millis(ms.unsigned_abs());
    humantime::format_rfc3339_seconds(at).to_string()
}
