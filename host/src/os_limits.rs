//! The operating system's per-process limits that `max_active` must fit
//! in. Past either one every activation fails, so the host lifts what it
//! can at start and warns about the rest.

/// Memory mappings the engine's pool of async stacks holds from the start,
/// per slot (one per instance the pool allows, live or not): the stack and
/// its guard page.
const MAPPINGS_PER_STACK_SLOT: u64 = 2;
/// Memory mappings a live instance adds (its memory's image, the rest of
/// its memory, its guard, its table; the database adds none), measured
/// over 2,000 live objects: ~4.05.
const MAPPINGS_PER_INSTANCE: u64 = 4;
/// The rest of the process: code, heap, thread stacks, pools.
const MAPPINGS_BASE: u64 = 2_000;
/// Files an open object database holds: the database and its
/// write-ahead log (exclusive locking mode needs no `-shm`).
const FILES_PER_INSTANCE: u64 = 2;
/// The rest: the catalogs, compiled classes, listeners, and headroom for
/// client connections and sockets.
const FILES_BASE: u64 = 1_024;
/// Unless configured, objects may keep their database open past their
/// instance up to this many times `max_active` (each dormant database
/// holds its 2 files and SQLite's connection, ~100 KiB).
const OPEN_DATABASES_PER_INSTANCE: u64 = 4;

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

/// How many objects may keep their database open at once: `configured`,
/// or [`OPEN_DATABASES_PER_INSTANCE`] × `max_active` within half the open
/// files the process may have beyond [`FILES_BASE`] (the other half is
/// for connections and sockets). Never fewer than `max_active`: each live
/// instance holds its database.
pub fn open_databases(max_active: u32, configured: Option<u32>) -> u32 {
    let chosen = configured.map_or_else(
        || {
            let files = file_limit().map_or(u64::MAX, |limit| limit.rlim_cur);
            let fit = files.saturating_sub(FILES_BASE) / 2 / FILES_PER_INSTANCE;
            (u64::from(max_active) * OPEN_DATABASES_PER_INSTANCE).min(fit)
        },
        u64::from,
    );
    u32::try_from(chosen).unwrap_or(u32::MAX).max(max_active)
}

/// Refuses, with what to change, a `max_active` whose pool of async stacks
/// (`instances` slots, `max_active` with those still hibernating) would
/// alone take more memory mappings than the process may have: the engine
/// could not even be made (wasmtime fails to protect a guard page).
pub fn check_stack_pool(max_active: u32, instances: u32) -> anyhow::Result<()> {
    let Some(limit) = max_map_count() else {
        return Ok(());
    };
    let needed = u64::from(instances) * MAPPINGS_PER_STACK_SLOT + MAPPINGS_BASE;
    if needed > limit {
        anyhow::bail!(
            "max_active = {max_active} needs {needed} memory mappings before any object is live \
             (2 for each of its {instances} stack slots), more than vm.max_map_count = {limit}: \
             lower max_active (to at most {}) or raise vm.max_map_count (sysctl -w vm.max_map_count={})",
            largest_max_active(limit),
            needed.next_multiple_of(65_536)
        );
    }
    Ok(())
}

/// The largest `max_active` whose instances, all live, fit in `limit`
/// memory mappings (the engine's headroom over `max_active` included).
fn largest_max_active(limit: u64) -> u64 {
    let per_instance = MAPPINGS_PER_STACK_SLOT + MAPPINGS_PER_INSTANCE;
    let instances = limit.saturating_sub(MAPPINGS_BASE) / per_instance;
    // instances = max_active + max_active / 4 + 16 (engine.rs)
    instances.saturating_sub(16) * 4 / 5
}

fn max_map_count() -> Option<u64> {
    std::fs::read_to_string("/proc/sys/vm/max_map_count")
        .ok()
        .and_then(|text| text.trim().parse::<u64>().ok())
}

/// Warns at start when `instances` live instances (`max_active` with
/// those still hibernating) would need more memory mappings, or
/// `open_databases` open databases more open files, than the process may
/// have.
pub fn warn_if_too_low(max_active: u32, instances: u32, open_databases: u32) {
    let instances = u64::from(instances);
    if let Some(limit) = max_map_count() {
        let needed = instances * (MAPPINGS_PER_STACK_SLOT + MAPPINGS_PER_INSTANCE) + MAPPINGS_BASE;
        if needed > limit {
            tracing::warn!(
                "max_active = {max_active} may need {needed} memory mappings, more than \
                 vm.max_map_count = {limit}; activations would then fail with \"Cannot allocate memory\". \
                 Raise it (sysctl -w vm.max_map_count={}) or lower max_active (to at most {})",
                needed.next_multiple_of(65_536),
                largest_max_active(limit)
            );
        }
    }
    if let Some(limit) = file_limit() {
        let needed = u64::from(open_databases) * FILES_PER_INSTANCE + FILES_BASE;
        if needed > limit.rlim_cur {
            tracing::warn!(
                "{open_databases} open databases (max_active = {max_active}) may need {needed} open \
                 files, more than the process may have ({}); activations would then fail with \
                 \"unable to open database file\". Raise the limit (ulimit -n, or LimitNOFILE= in a \
                 systemd unit) or lower max_active and max_open_databases",
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_largest_max_active_fits_its_mappings_and_one_more_does_not() {
        for limit in [65_530u64, 262_144, 1_048_576] {
            let fits = |max_active: u64| {
                let instances = max_active + max_active / 4 + 16;
                instances * (MAPPINGS_PER_STACK_SLOT + MAPPINGS_PER_INSTANCE) + MAPPINGS_BASE
                    <= limit
            };
            let largest = largest_max_active(limit);
            assert!(fits(largest), "{largest} should fit in {limit}");
            assert!(
                !fits(largest + 8),
                "{} should not fit in {limit}",
                largest + 8
            );
        }
    }

    #[test]
    fn unset_open_databases_fit_half_the_open_files() {
        let files = file_limit().map_or(u64::MAX, |limit| limit.rlim_cur);
        for max_active in [1, 100, 10_000] {
            let open = u64::from(open_databases(max_active, None));
            let max_active = u64::from(max_active);
            assert!(open >= max_active);
            assert!(open <= max_active * OPEN_DATABASES_PER_INSTANCE);
            assert!(
                open == max_active || open * FILES_PER_INSTANCE * 2 + FILES_BASE <= files,
                "{open} databases for {files} files"
            );
        }
    }
}
