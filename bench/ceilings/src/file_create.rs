//! The ceiling of a new object: its database is a new file, durable only
//! once its directory entry is. Create a file, write 4 KiB, `fdatasync`
//! it and `fsync` its directory, from several threads at once, the files
//! spread over directories as podhost spreads objects
//! (`objects/<class>/<id[0..2]>/`).

use std::fs::{self, File, OpenOptions};
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};

use anyhow::Context as _;

use crate::scratch::{Scratch, sync_dir};
use crate::timed::{self, Settings, Summary};

/// A new database's first page.
const BLOCK: usize = 4096;

pub fn measure(dir: &Path, dirs: usize, settings: Settings) -> anyhow::Result<Summary> {
    // The files made are removed with it, after the measurement.
    let scratch = Scratch::create(dir, "file-create")?;
    let dirs = (0..dirs)
        .map(|index| {
            let path = scratch.path().join(format!("{index:03x}"));
            fs::create_dir(&path)
                .and_then(|()| File::open(&path))
                .map(|handle| (path.clone(), handle))
                .with_context(|| format!("cannot create the directory {}", path.display()))
        })
        .collect::<anyhow::Result<Vec<(PathBuf, File)>>>()?;
    sync_dir(scratch.path())?;
    let next = AtomicUsize::new(0);
    let block = [1u8; BLOCK];
    timed::run(settings, |thread, n| {
        let (dir, handle) = &dirs[next.fetch_add(1, Ordering::Relaxed) % dirs.len()];
        let path = dir.join(format!("{thread}-{n}.dat"));
        let mut file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&path)
            .with_context(|| format!("cannot create {}", path.display()))?;
        file.write_all(&block)
            .and_then(|()| file.sync_data())
            .with_context(|| format!("cannot write and fdatasync {}", path.display()))?;
        handle
            .sync_all()
            .with_context(|| format!("cannot fsync the directory {}", dir.display()))
    })
}
