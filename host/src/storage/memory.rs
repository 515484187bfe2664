//! SQLite's process-wide memory settings, sized for thousands of small
//! databases open at once rather than for one large one.
//!
//! By default every connection allocates, at open, a lookaside buffer of
//! 120 KB (which SQLite touches in full to chain its slots) and a first
//! page-cache block of 20 pages (~85 KB). That was most of the resident
//! memory of an active object. Without them, a connection allocates pages
//! one at a time as it reads them, and small allocations come from a
//! lookaside buffer a tenth the size.
//!
//! SQLite also counts every allocation by default, under one mutex for the
//! whole process; with many databases busy at once on different threads,
//! waiting on and waking through that mutex cost more CPU than the
//! counting was worth, so it is off.

use std::ffi::c_int;
use std::sync::Once;

use rusqlite::ffi;

/// Lookaside slots per connection and their size in bytes.
const LOOKASIDE_SLOT_BYTES: c_int = 256;
const LOOKASIDE_SLOTS: c_int = 48;

/// Applies the settings, once per process. They only take effect before
/// SQLite is first used; later calls, or a process that used SQLite
/// already, keep SQLite's defaults (logged).
pub fn configure_sqlite() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        // SAFETY: sqlite3_config is called before any connection exists in
        // this process (or fails with SQLITE_MISUSE and changes nothing);
        // the variadic arguments have the types each option documents.
        let (page_cache, lookaside, statistics) = unsafe {
            (
                ffi::sqlite3_config(
                    ffi::SQLITE_CONFIG_PAGECACHE,
                    std::ptr::null_mut::<std::ffi::c_void>(),
                    0 as c_int,
                    0 as c_int,
                ),
                ffi::sqlite3_config(
                    ffi::SQLITE_CONFIG_LOOKASIDE,
                    LOOKASIDE_SLOT_BYTES,
                    LOOKASIDE_SLOTS,
                ),
                ffi::sqlite3_config(ffi::SQLITE_CONFIG_MEMSTATUS, 0 as c_int),
            )
        };
        if [page_cache, lookaside, statistics]
            .iter()
            .any(|&rc| rc != ffi::SQLITE_OK)
        {
            tracing::debug!(
                page_cache,
                lookaside,
                statistics,
                "SQLite was in use already; its memory settings stay the defaults"
            );
        }
    });
}
