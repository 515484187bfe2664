//! An exclusive lock on a data directory while a server uses it, so two
//! servers, or an offline `podhost objects delete`, never work on the same
//! files at once.

use std::fs::File;
use std::os::fd::AsRawFd;
use std::path::Path;

use anyhow::{Context as _, bail};

/// Held for as long as the value lives; the OS releases it if the process
/// dies.
pub struct DataDirLock {
    _file: File,
}

impl DataDirLock {
    pub fn acquire(data_dir: &Path) -> anyhow::Result<Self> {
        std::fs::create_dir_all(data_dir)
            .with_context(|| format!("cannot create the data directory {}", data_dir.display()))?;
        let path = data_dir.join("podhost.lock");
        let file = File::options()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .with_context(|| format!("cannot open {}", path.display()))?;
        // SAFETY: flock on a descriptor this function owns.
        if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } != 0 {
            bail!(
                "another podhost process is using the data directory {}",
                data_dir.display()
            );
        }
        Ok(DataDirLock { _file: file })
    }
}
