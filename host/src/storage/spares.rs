//! Spare database files, made ahead so that a new object's first event
//! does not create and sync files.
//!
//! Making a new object's database costs two new inodes (the database from
//! the template, then its write-ahead log) and an `fsync` of the first
//! before the event can go on. A background thread makes spares in batches
//! instead: it writes a batch of template copies and empty logs, starts
//! their write-back together and then syncs each, so the file system
//! commits its journal about once per batch, not once per file. A new
//! object takes a pair by linking it into place (two links, two unlinks:
//! no data written, nothing synced).
//!
//! Durability is unchanged: the spare's contents were synced before it
//! was handed out, and its names in the object's directory become durable
//! with the object's first durable commit, which syncs that directory
//! because SQLite opened the log able to create it.
//!
//! Spares live in `data/spare/`, on the objects' file system. A crash may
//! leave torn ones there, so the directory is emptied before the first
//! batch of each process.

use std::fs::File;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::Duration;

use anyhow::Context as _;

use super::layout::wal_path;

/// Spares kept ready at most.
const CAPACITY: usize = 128;
/// Below this many ready, the thread makes more.
const LOW: usize = CAPACITY / 2;
/// Spares made and synced together.
const BATCH: usize = 32;
/// How long the thread waits after it failed to make spares (a full
/// disk): new objects make their own files meanwhile.
const BACKOFF: Duration = Duration::from_secs(10);

/// A pool of spare database files in one directory.
pub struct Spares {
    shared: Arc<Shared>,
}

struct Shared {
    dir: PathBuf,
    pool: Mutex<Pool>,
    wake: Condvar,
}

#[derive(Default)]
struct Pool {
    /// Synced spares, each a database path whose log is beside it.
    ready: Vec<PathBuf>,
    /// Whether the thread has been asked for more.
    wanted: bool,
    /// Whether the thread runs (it starts with the first new object).
    started: bool,
    closed: bool,
}

impl Spares {
    /// Spares in `dir`, made once new objects ask for them.
    pub fn new(dir: PathBuf) -> Self {
        Spares {
            shared: Arc::new(Shared {
                dir,
                pool: Mutex::default(),
                wake: Condvar::new(),
            }),
        }
    }

    /// Puts a spare at `database`, which must not exist, with an empty
    /// write-ahead log beside it; returns whether it did. Without one ready
    /// (or if a log is already there, left by a deletion that crashed), the
    /// caller makes the file itself.
    pub fn place(&self, database: &Path) -> bool {
        let Some(spare) = self.take() else {
            return false;
        };
        match place(&spare, database) {
            Ok(placed) => placed,
            Err(error) => {
                tracing::warn!("cannot use a spare database file: {error:#}");
                false
            }
        }
    }

    fn take(&self) -> Option<PathBuf> {
        let mut pool = self.shared.lock();
        let spare = pool.ready.pop();
        if pool.ready.len() < LOW && !pool.wanted && !pool.closed {
            pool.wanted = true;
            if !pool.started {
                pool.started = true;
                let shared = Arc::clone(&self.shared);
                let spawned = std::thread::Builder::new()
                    .name("podhost-spares".into())
                    .spawn(move || shared.run());
                if let Err(error) = spawned {
                    tracing::warn!(%error, "cannot start the thread that makes spare files");
                    pool.closed = true;
                }
            }
            self.shared.wake.notify_one();
        }
        spare
    }

    /// How many spares are ready.
    #[cfg(test)]
    fn ready(&self) -> usize {
        self.shared.lock().ready.len()
    }

    /// Starts the thread (taking one spare, if any) and waits until it has
    /// filled the pool and stopped making more, so the files in the
    /// directory stay as they are.
    #[cfg(test)]
    pub(crate) fn fill_for_test(&self) {
        let _ = self.take();
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        loop {
            let pool = self.shared.lock();
            if pool.ready.len() >= CAPACITY && !pool.wanted {
                return;
            }
            drop(pool);
            assert!(
                std::time::Instant::now() < deadline,
                "the pool was not filled"
            );
            std::thread::sleep(Duration::from_millis(5));
        }
    }
}

impl Drop for Spares {
    fn drop(&mut self) {
        self.shared.lock().closed = true;
        self.shared.wake.notify_one();
    }
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, Pool> {
        self.pool
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn run(&self) {
        if let Err(error) = self.clear() {
            tracing::warn!("no spare database files: {error:#}");
            self.lock().closed = true;
            return;
        }
        let mut made = 0u64;
        let mut pool = self.lock();
        loop {
            while !pool.wanted && !pool.closed {
                pool = self.wake.wait(pool).unwrap_or_else(|e| e.into_inner());
            }
            if pool.closed {
                return;
            }
            if pool.ready.len() >= CAPACITY {
                pool.wanted = false;
                continue;
            }
            drop(pool);
            let batch = self.make_batch(made);
            made += BATCH as u64;
            pool = self.lock();
            match batch {
                Ok(spares) => pool.ready.extend(spares),
                Err(error) => {
                    tracing::warn!("cannot make spare database files: {error:#}");
                    pool.wanted = false;
                    pool = self
                        .wake
                        .wait_timeout_while(pool, BACKOFF, |pool| !pool.closed)
                        .unwrap_or_else(|e| e.into_inner())
                        .0;
                }
            }
        }
    }

    /// Empties the directory: spares of an earlier process may be torn.
    fn clear(&self) -> anyhow::Result<()> {
        match std::fs::remove_dir_all(&self.dir) {
            Err(error) if error.kind() != std::io::ErrorKind::NotFound => {
                return Err(error).with_context(|| format!("cannot clear {}", self.dir.display()));
            }
            _ => {}
        }
        std::fs::create_dir_all(&self.dir)
            .with_context(|| format!("cannot create {}", self.dir.display()))
    }

    /// Writes `BATCH` spares numbered from `first`, then syncs them. On
    /// failure it removes what it made, so that retries on a full disk
    /// leave nothing behind.
    fn make_batch(&self, first: u64) -> anyhow::Result<Vec<PathBuf>> {
        let made = self.write_batch(first);
        if made.is_err() {
            for n in first..first + BATCH as u64 {
                let database = self.spare(n);
                for name in [&wal_path(&database), &database] {
                    if let Err(error) = std::fs::remove_file(name)
                        && error.kind() != std::io::ErrorKind::NotFound
                    {
                        tracing::warn!(%error, file = %name.display(), "cannot remove a spare file");
                    }
                }
            }
        }
        made
    }

    fn spare(&self, n: u64) -> PathBuf {
        self.dir.join(format!("{n}.sqlite"))
    }

    fn write_batch(&self, first: u64) -> anyhow::Result<Vec<PathBuf>> {
        let image = super::template::image()?;
        let mut files = Vec::with_capacity(BATCH);
        for n in first..first + BATCH as u64 {
            let database = self.spare(n);
            let mut file = File::create(&database)
                .with_context(|| format!("cannot create {}", database.display()))?;
            file.write_all(image)
                .with_context(|| format!("cannot write {}", database.display()))?;
            let wal = wal_path(&database);
            File::create(&wal).with_context(|| format!("cannot create {}", wal.display()))?;
            start_write_back(&file);
            files.push((database, file));
        }
        // The first sync commits the journal with every file's blocks; the
        // others find theirs committed and only wait for their data.
        files
            .into_iter()
            .map(|(database, file)| {
                file.sync_data()
                    .with_context(|| format!("cannot sync {}", database.display()))?;
                Ok(database)
            })
            .collect()
    }
}

/// Asks the kernel to start writing `file` out now, so that a batch's
/// blocks are allocated in one journal transaction.
fn start_write_back(file: &File) {
    #[cfg(target_os = "linux")]
    {
        use std::os::fd::AsRawFd as _;
        // SAFETY: a plain system call on an open descriptor; it is only a
        // hint (the sync after it is what counts), so its result is unused.
        unsafe {
            libc::sync_file_range(file.as_raw_fd(), 0, 0, libc::SYNC_FILE_RANGE_WRITE);
        }
    }
    #[cfg(not(target_os = "linux"))]
    let _ = file;
}

/// Links the spare pair into place, then removes its spare names. The log
/// goes first: linking fails rather than replace a log already there (one
/// left without its database, whose frames must not reach the new file),
/// and a crash between the two leaves only an empty log.
fn place(spare: &Path, database: &Path) -> anyhow::Result<bool> {
    let dir = database
        .parent()
        .context("the object's path has no directory")?;
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let (spare_wal, wal) = (wal_path(spare), wal_path(database));
    let placed = match std::fs::hard_link(&spare_wal, &wal) {
        Ok(()) => {
            std::fs::hard_link(spare, database).with_context(|| {
                format!("cannot link {} to {}", spare.display(), database.display())
            })?;
            true
        }
        Err(error) if error.kind() == std::io::ErrorKind::AlreadyExists => false,
        Err(error) => {
            return Err(error).with_context(|| {
                format!("cannot link {} to {}", spare_wal.display(), wal.display())
            });
        }
    };
    for name in [spare, &spare_wal] {
        std::fs::remove_file(name).with_context(|| format!("cannot remove {}", name.display()))?;
    }
    Ok(placed)
}

#[cfg(test)]
mod tests {
    use std::time::Instant;

    use super::*;

    fn wait_for_spares(spares: &Spares) {
        let deadline = Instant::now() + Duration::from_secs(10);
        while spares.ready() == 0 {
            assert!(Instant::now() < deadline, "no spare was made");
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    #[test]
    fn a_placed_spare_is_a_new_database_in_wal_mode_with_its_schema() {
        let dir = tempfile::tempdir().expect("temp dir");
        let spares = Spares::new(dir.path().join("spare"));
        let database = dir.path().join("objects/c/ab/abcd.sqlite");
        assert!(
            !spares.place(&database),
            "none is ready before the first ask"
        );
        wait_for_spares(&spares);
        assert!(spares.place(&database));
        assert_eq!(
            std::fs::metadata(wal_path(&database)).expect("log").len(),
            0
        );
        super::super::template::assert_new_database(&database);
        // Its spare names are gone: no other object gets the same file.
        let nlink =
            std::os::unix::fs::MetadataExt::nlink(&std::fs::metadata(&database).expect("database"));
        assert_eq!(nlink, 1, "the spare's own name was removed");
    }

    #[test]
    fn a_log_already_in_place_is_never_replaced() {
        let dir = tempfile::tempdir().expect("temp dir");
        let spares = Spares::new(dir.path().join("spare"));
        spares.place(&dir.path().join("first.sqlite"));
        wait_for_spares(&spares);
        let database = dir.path().join("orphan.sqlite");
        std::fs::write(wal_path(&database), b"frames of a deleted object").expect("log");
        assert!(!spares.place(&database));
        assert!(!database.exists());
        assert_eq!(
            std::fs::read(wal_path(&database)).expect("log"),
            b"frames of a deleted object"
        );
    }

    #[test]
    fn leftovers_of_an_earlier_process_are_cleared() {
        let dir = tempfile::tempdir().expect("temp dir");
        let spare_dir = dir.path().join("spare");
        std::fs::create_dir_all(&spare_dir).expect("dir");
        let torn = spare_dir.join("100000.sqlite");
        std::fs::write(&torn, b"torn").expect("torn spare");
        let spares = Spares::new(spare_dir);
        spares.place(&dir.path().join("first.sqlite"));
        wait_for_spares(&spares);
        assert!(!torn.exists());
    }
}
