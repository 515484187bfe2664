//! A directory of the tool's own inside the one it was given, removed
//! when the measurement ends, so a run leaves nothing behind in the file
//! system it measured.

use std::fs::{self, File};
use std::path::{Path, PathBuf};

use anyhow::{Context as _, bail};

pub struct Scratch {
    path: PathBuf,
}

impl Scratch {
    pub fn create(parent: &Path, what: &str) -> anyhow::Result<Scratch> {
        let metadata = fs::metadata(parent)
            .with_context(|| format!("cannot use --dir {}", parent.display()))?;
        if !metadata.is_dir() {
            bail!("--dir {} is not a directory", parent.display());
        }
        let path = parent.join(format!("ceilings-{what}-{}", std::process::id()));
        fs::create_dir(&path).with_context(|| {
            format!(
                "cannot create a directory in {} (is it writable?)",
                parent.display()
            )
        })?;
        Ok(Scratch { path })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        if let Err(error) = fs::remove_dir_all(&self.path) {
            eprintln!("ceilings: cannot remove {}: {error}", self.path.display());
        }
    }
}

/// Makes the entries written in `dir` so far durable: a new file is only
/// found after a crash once its directory has been synced.
pub fn sync_dir(dir: &Path) -> anyhow::Result<()> {
    File::open(dir)
        .and_then(|dir| dir.sync_all())
        .with_context(|| format!("cannot fsync the directory {}", dir.display()))
}
