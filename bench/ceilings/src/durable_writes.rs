//! The ceiling of a commit to one of many object databases: overwrite
//! 4 KiB of one of `files` files and wait for `fdatasync`, from several
//! threads at once. Spread writes (a random one of 10,000 objects) can at
//! best reach it; hot writes may pass it, since group commit makes one
//! sync serve several requests.

use std::fs::{File, OpenOptions};
use std::os::unix::fs::FileExt as _;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};

use anyhow::Context as _;

use crate::scratch::{Scratch, sync_dir};
use crate::timed::{self, Settings, Summary};

/// A page's worth: a small commit's WAL frame.
const BLOCK: usize = 4096;

pub fn measure(dir: &Path, files: usize, settings: Settings) -> anyhow::Result<Summary> {
    let scratch = Scratch::create(dir, "durable-writes")?;
    let files = (0..files)
        .map(|index| prepare(&scratch.path().join(format!("{index}.dat")), files))
        .collect::<anyhow::Result<Vec<_>>>()?;
    sync_dir(scratch.path())?;
    // Files taken in turn: at most one thread writes a file at a time
    // while there are more files than threads.
    let next = AtomicUsize::new(0);
    timed::run(settings, |_thread, n| {
        let (path, file) = &files[next.fetch_add(1, Ordering::Relaxed) % files.len()];
        let mut block = [0u8; BLOCK];
        block[..8].copy_from_slice(&n.to_le_bytes());
        file.write_all_at(&block, 0)
            .and_then(|()| file.sync_data())
            .with_context(|| format!("cannot write and fdatasync {}", path.display()))
    })
}

/// A file already holding its block, synced: the writes measured replace
/// a page in place, as a commit to an existing database does.
fn prepare(path: &Path, files: usize) -> anyhow::Result<(PathBuf, File)> {
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .create_new(true)
        .open(path)
        .with_context(|| {
            format!(
                "cannot create {} (all {files} files stay open: lower --files \
                 or raise the limit on open files)",
                path.display()
            )
        })?;
    file.write_all_at(&[0u8; BLOCK], 0)
        .and_then(|()| file.sync_all())
        .with_context(|| format!("cannot write {}", path.display()))?;
    Ok((path.to_path_buf(), file))
}
