//! The operating system's per-process limits that `max_active` must fit
//! in. Past either one every activation fails, so the host lifts what it
//! can at start and warns about the rest.

/// Memory mappings a live instance and its database hold (pooled memory
/// and stack with their guard splits, malloc'd blocks), measured: ~6.6.
const MAPPINGS_PER_INSTANCE: u64 = 7;
/// The rest of the process: code, heap, thread stacks, pools.
const MAPPINGS_BASE: u64 = 2_000;
/// Files an open object database holds: the database and its
/// write-ahead log (exclusive locking mode needs no `-shm`).
const FILES_PER_INSTANCE: u64 = 2;
/// The rest: the catalogs, compiled classes, listeners, and headroom for
/// client connections and sockets.
const FILES_BASE: u64 = 1_024;

/// Lifts the soft limit on open files to the hard one, which is often far
/// higher.
pub fn raise_file_limit() {
    let Some(mut limit) = file_limit() else {
        return;
    };
    if limit.rlim_cur < limit.rlim_max {
        limit.rlim_cur = limit.rlim_max;
        // SAFETY: setrlimit only reads `limit`.
        if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &limit) } != 0 {
            tracing::warn!("cannot raise the limit on open files");
        }
    }
}

/// Warns at start when `instances` live instances (`max_active` with
/// those still hibernating) would need more memory mappings or open files
/// than the process may have.
pub fn warn_if_too_low(max_active: u32, instances: u32) {
    let instances = u64::from(instances);
    if let Some(limit) = std::fs::read_to_string("/proc/sys/vm/max_map_count")
        .ok()
        .and_then(|text| text.trim().parse::<u64>().ok())
    {
        let needed = instances * MAPPINGS_PER_INSTANCE + MAPPINGS_BASE;
        if needed > limit {
            tracing::warn!(
                "max_active = {max_active} may need {needed} memory mappings, more than \
                 vm.max_map_count = {limit}; activations would then fail with \"Cannot allocate memory\". \
                 Raise it (sysctl -w vm.max_map_count={}) or lower max_active",
                needed.next_multiple_of(65_536)
            );
        }
    }
    if let Some(limit) = file_limit() {
        let needed = instances * FILES_PER_INSTANCE + FILES_BASE;
        if needed > limit.rlim_cur {
            tracing::warn!(
                "max_active = {max_active} may need {needed} open files, more than the process may \
                 have ({}); activations would then fail with \"unable to open database file\". \
                 Raise the limit (ulimit -n, or LimitNOFILE= in a systemd unit) or lower max_active",
                limit.rlim_cur
            );
        }
    }
}

/// Whether the process has as many files open as it may: the likely
/// cause when a database cannot be opened.
pub fn out_of_files() -> bool {
    std::fs::File::open("/dev/null").is_err_and(|error| error.raw_os_error() == Some(libc::EMFILE))
}

fn file_limit() -> Option<libc::rlimit> {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit only writes `limit`.
    (unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) } == 0).then_some(limit)
}
