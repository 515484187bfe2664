//! `podhost objects list|delete|export|import|restore`: the catalog and objects'
//! databases from the command line. All but `list` work offline, on a
//! stopped server's data directory; a running server does the same over
//! `/admin/objects/{class}/{name}[/export|/import]`.

use std::path::{Path, PathBuf};
use std::time::{Duration, UNIX_EPOCH};

use anyhow::{Context as _, bail};
use clap::{Args, Subcommand};
use podhost::Config;
use podhost::alarms::IndexedAlarm;
use podhost::object::ObjectAddr;
use podhost::storage::catalog::{Catalog, CatalogUpdate, ObjectSeen, now_ms};
use podhost::storage::{
    DataDir, DataDirLock, Database, DatabaseSettings, Durability, check_import,
};

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
    /// Copy an object's database to an SQLite file (the server must be
    /// stopped; a running one exports through
    /// `GET /admin/objects/{class}/{name}/export`).
    Export {
        #[command(flatten)]
        data: DataDirArgs,
        class: String,
        name: String,
        /// The file to write.
        #[arg(long, short)]
        out: PathBuf,
    },
    /// Replace an object's database with an SQLite file, after checking it
    /// (the server must be stopped; a running one imports through
    /// `PUT /admin/objects/{class}/{name}/import`, which also checks the
    /// class's migrations).
    Import {
        #[command(flatten)]
        data: DataDirArgs,
        class: String,
        name: String,
        /// The SQLite file to put in place.
        file: PathBuf,
    },
    /// Rebuild an object's database from the replication store, at its
    /// latest state or at a point in its history (the server must be
    /// stopped; a running one restores through
    /// `POST /admin/objects/{class}/{name}/restore`).
    Restore(crate::restore_command::RestoreArgs),
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
        ObjectsCommand::Export {
            data,
            class,
            name,
            out,
        } => export(&data.resolve()?, &class, &name, &out),
        ObjectsCommand::Import {
            data,
            class,
            name,
            file,
        } => import(&data.resolve()?, &class, &name, &file),
        ObjectsCommand::Restore(args) => crate::restore_command::restore_one(args),
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

/// Opening an object's database offline: the class's limits are not
/// known here, and nothing is written through this connection but a
/// checkpoint.
const OFFLINE: DatabaseSettings = DatabaseSettings {
    durability: Durability::Full,
    max_storage_bytes: 1 << 40,
    max_sql_length: 1_000_000,
    max_sql_parameters: 32_766,
};

fn export(data_dir: &Path, class: &str, name: &str, out: &Path) -> anyhow::Result<()> {
    let _lock = DataDirLock::acquire(data_dir).with_context(|| {
        format!(
            "stop the server first, or export through it: GET /admin/objects/{class}/{name}/export"
        )
    })?;
    let object = ObjectAddr::new(class, name);
    let path = DataDir::new(data_dir).object_database(class, object.id());
    if !path.exists() {
        bail!("{class}/{name} has no database");
    }
    let db = Database::open(&path, &OFFLINE)?;
    let mut partial = out.as_os_str().to_owned();
    partial.push(".partial");
    let partial = PathBuf::from(partial);
    let _ = std::fs::remove_file(&partial);
    db.back_up_to(&partial)
        .with_context(|| format!("cannot write {}", partial.display()))?;
    std::fs::rename(&partial, out)
        .with_context(|| format!("cannot rename {} to {}", partial.display(), out.display()))?;
    println!("exported {class}/{name} to {}", out.display());
    Ok(())
}

pub(crate) fn import(data_dir: &Path, class: &str, name: &str, file: &Path) -> anyhow::Result<()> {
    let _lock = DataDirLock::acquire(data_dir).with_context(|| {
        format!(
            "stop the server first, or import through it: PUT /admin/objects/{class}/{name}/import"
        )
    })?;
    let data = DataDir::new(data_dir);
    let object = ObjectAddr::new(class, name);
    let path = data.object_database(class, object.id());
    // A copy on the objects' file system, checked, then renamed into place.
    std::fs::create_dir_all(data.scratch())?;
    let copy = tempfile::Builder::new()
        .prefix("import-")
        .suffix(".sqlite")
        .tempfile_in(data.scratch())?
        .into_temp_path();
    std::fs::copy(file, &copy).with_context(|| format!("cannot read {}", file.display()))?;
    std::fs::File::open(&copy)?.sync_all()?;
    let check = check_import(&copy).map_err(|reason| anyhow::anyhow!("not imported: {reason}"))?;
    if path.exists() {
        // The class is not loaded here: the object's own database tells how
        // many of its migrations the class has (at least).
        let mut db = Database::open(&path, &OFFLINE)?;
        let had = db.contents(Duration::from_secs(60))?.migrations;
        if check.migrations > had {
            bail!(
                "not imported: its schema is newer than the object's: it has had {} migrations, the object {had}",
                check.migrations
            );
        }
        db.checkpoint()?;
    }
    data.replace_database(class, object.id(), &copy)?;
    let mut db = Database::open(&path, &OFFLINE)?;
    let alarm = db.contents(Duration::from_secs(60))?.alarm;
    let size = db.size()?;
    drop(db);
    let catalog = Catalog::open(data_dir, Durability::Full)?;
    catalog.apply(&[CatalogUpdate::Seen(ObjectSeen {
        id: object.id().to_string(),
        class: class.to_string(),
        name: object.name().to_string(),
        at: now_ms(),
        size_bytes: Some(size),
    })])?;
    if let Some(at_ms) = alarm {
        let entry = IndexedAlarm { at_ms, retries: 0 };
        catalog.index_alarm(object.id(), class, object.name(), entry)?;
    }
    println!("imported {} into {class}/{name}", file.display());
    Ok(())
}

fn time(ms: i64) -> String {
    let at = UNIX_EPOCH + Duration::from_millis(ms.unsigned_abs());
    humantime::format_rfc3339_seconds(at).to_string()
}
