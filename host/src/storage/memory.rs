//! SQLite's process-wide memory settings, sized for thousands of small
//! databases open at once rather than for one large one.
//!
//! By default every connection allocates, at open, a lookaside buffer of
//! 120 KB (which SQLite touches in full to chain its slots) and a first
//! page-cache block of 20 pages (~85 KB). That was most of the resident
//! memory of an active object. Without them, a connection allocates pages
//! one at a time as it reads them, and small allocations come from a
//! lookaside buffer a tenth the size.

use std::ffi::c_int;
use std::sync::Once;

use rusqlite::ffi;

/// Lookaside slots per connection and their size in bytes.
const LOOKASIDE_SLOT_BYTES: c_int = 256;
const LOOKASIDE_SLOTS: c_int = 48;

/// Bytes SQLite has allocated and not freed, across all connections.
pub fn sqlite_memory_used() -> u64 {
    let (mut current, mut highest) = (0i64, 0i64);
    // SAFETY: sqlite3_status64 only reads SQLite's counters into the two
    // integers it is given.
    let rc = unsafe {
        ffi::sqlite3_status64(
            ffi::SQLITE_STATUS_MEMORY_USED,
            &mut current,
            &mut highest,
            0,
        )
    };
    if rc == ffi::SQLITE_OK {
        current.unsigned_abs()
    } else {
        0
    }
}

/// Applies the settings, once per process. They only take effect before
/// SQLite is first used; later calls, or a process that used SQLite
/// already, keep SQLite's defaults (logged).
pub fn configure_sqlite() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        // SAFETY: sqlite3_config is called before any connection exists in
        // this process (or fails with SQLITE_MISUSE and changes nothing);
        // the variadic arguments have the types each option documents.
        let (page_cache, lookaside) = unsafe {
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
            )
        };
        if page_cache != ffi::SQLITE_OK || lookaside != ffi::SQLITE_OK {
            tracing::debug!(
                page_cache,
                lookaside,
                "SQLite was in use already; its memory settings stay the defaults"
            );
        }
    });
}
