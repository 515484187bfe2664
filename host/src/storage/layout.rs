//! The data directory's layout:
//!
//! ```text
//! data/
//!   classes/<hash>.wasm                       deployed components, by SHA-256
//!   classes/<hash>.cwasm                      their compiled form
//!   objects/<class>/<id[0..2]>/<id>.sqlite    one database per object
//!   tmp/                                       exports and imports in transit
//!   spare/<n>.sqlite, <n>.sqlite-wal            new objects' files, made ahead
//! ```

use std::path::{Path, PathBuf};

/// The root of everything the host stores.
#[derive(Debug, Clone)]
pub struct DataDir {
    root: PathBuf,
}

impl DataDir {
    pub fn new(root: impl Into<PathBuf>) -> Self {
        DataDir { root: root.into() }
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The database file of object `id` of `class`.
    pub fn object_database(&self, class: &str, id: &str) -> PathBuf {
        let shard = id.get(..2).unwrap_or(id);
        self.root
            .join("objects")
            .join(class)
            .join(shard)
            .join(format!("{id}.sqlite"))
    }

    /// Removes the database files of object `id` of `class`; returns
    /// whether its database existed.
    pub fn remove_object_files(&self, class: &str, id: &str) -> std::io::Result<bool> {
        let database = self.object_database(class, id);
        let mut existed = false;
        for suffix in ["", WAL_SUFFIX, "-shm", PARTIAL_SUFFIX] {
            match std::fs::remove_file(with_suffix(&database, suffix)) {
                Ok(()) => existed |= suffix.is_empty(),
                Err(error) if error.kind() == std::io::ErrorKind::NotFound => {}
                Err(error) => return Err(error),
            }
        }
        Ok(existed)
    }

    /// Puts the database file at `from` (on this file system) in place of
    /// object `id`'s, whose connection must be closed and its write-ahead
    /// log emptied by a checkpoint: the log is removed first, so no crash
    /// leaves it beside the new file; then the rename, then the directory
    /// is synced. A crash leaves the old database or the new one, whole.
    pub fn replace_database(&self, class: &str, id: &str, from: &Path) -> anyhow::Result<()> {
        use anyhow::Context as _;
        let to = self.object_database(class, id);
        let dir = to.parent().context("the object's path has no directory")?;
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
        match std::fs::remove_file(wal_path(&to)) {
            Ok(()) => {}
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => {}
            Err(error) => return Err(error).context("cannot remove the old write-ahead log"),
        }
        std::fs::rename(from, &to)
            .with_context(|| format!("cannot rename {} to {}", from.display(), to.display()))?;
        std::fs::File::open(dir)
            .and_then(|dir| dir.sync_all())
            .with_context(|| format!("cannot sync {}", dir.display()))
    }

    /// Scratch files (exports on their way out, imports on their way in):
    /// on the objects' file system, so an import is renamed into place.
    pub fn scratch(&self) -> PathBuf {
        self.root.join("tmp")
    }

    /// Spare database files for new objects (`storage::Spares`): on the
    /// objects' file system, so a spare is linked into place.
    pub fn spares(&self) -> PathBuf {
        self.root.join("spare")
    }

    /// The directory holding every object database of `class`.
    pub fn class_objects(&self, class: &str) -> PathBuf {
        self.root.join("objects").join(class)
    }

    /// The directory of deployed components and their compiled forms.
    pub fn classes(&self) -> PathBuf {
        self.root.join("classes")
    }

    /// A deployed component, named by its SHA-256 (hex).
    pub fn class_component(&self, hash: &str) -> PathBuf {
        self.classes().join(format!("{hash}.wasm"))
    }

    /// Where the compiled form of a component is cached.
    pub fn compiled_class(&self, hash: &str) -> PathBuf {
        self.classes().join(format!("{hash}.cwasm"))
    }
}

const WAL_SUFFIX: &str = "-wal";
const PARTIAL_SUFFIX: &str = ".new";

/// The write-ahead log of the database at `database`.
pub fn wal_path(database: &Path) -> PathBuf {
    with_suffix(database, WAL_SUFFIX)
}

/// Where a new database is written before it gets its name.
pub fn partial_path(database: &Path) -> PathBuf {
    with_suffix(database, PARTIAL_SUFFIX)
}

fn with_suffix(path: &Path, suffix: &str) -> PathBuf {
    let mut path = path.as_os_str().to_owned();
    path.push(suffix);
    path.into()
}
