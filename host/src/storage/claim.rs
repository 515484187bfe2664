//! At most one open connection per object database in this process.
//!
//! Object databases are opened without SQLite's file locks (the `unix-none`
//! VFS): with thousands open, the unix VFS's per-process list of open
//! files, scanned on every open, was the largest cost of activating an
//! object. Other processes are kept out by the data directory's lock; this
//! claim keeps out a second connection from this one, which the locks used
//! to refuse and which without them could corrupt the file.

use std::collections::HashSet;
use std::path::{Path, PathBuf};

use parking_lot::{Mutex, MutexGuard};

static CLAIMED: Mutex<Option<HashSet<PathBuf>>> = Mutex::new(None);

fn claimed() -> MutexGuard<'static, Option<HashSet<PathBuf>>> {
    // Insert and remove leave the set consistent even after a panic.
    CLAIMED.lock()
}

/// The right to have a database file open; released on drop.
#[derive(Debug)]
pub(crate) struct Claim {
    path: PathBuf,
}

impl Claim {
    /// Claims `path`, or fails if a connection to it is open already.
    pub fn take(path: &Path) -> anyhow::Result<Claim> {
        let path = path.to_path_buf();
        if !claimed().get_or_insert_default().insert(path.clone()) {
            anyhow::bail!(
                "the database {} is open already in this process",
                path.display()
            );
        }
        Ok(Claim { path })
    }
}

impl Drop for Claim {
    fn drop(&mut self) {
        if let Some(set) = claimed().as_mut() {
            set.remove(&self.path);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_path_is_claimed_once_at_a_time() {
        let path = Path::new("/nonexistent/claim-test.sqlite");
        let claim = Claim::take(path).expect("first");
        assert!(Claim::take(path).is_err());
        drop(claim);
        Claim::take(path).expect("free again");
    }
}
