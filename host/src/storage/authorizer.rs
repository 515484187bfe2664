//! The SQLite authorizer that keeps guest SQL inside the object's own
//! tables: no `_podhost_*` tables, no ATTACH, no transaction control (the
//! host owns transactions), no PRAGMA that changes durability or files, no
//! extension loading.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use parking_lot::Mutex;
use rusqlite::hooks::{AuthAction, AuthContext, Authorization};

/// Names the host keeps for itself inside an object's database.
pub const RESERVED_PREFIX: &str = "_podhost_";

/// Whether `sql` names anything reserved. Guest SQL that does is refused
/// before it reaches SQLite, which also keeps it away from the host's
/// cached statements (they all name a `_podhost_` table).
/// Runs on every guest statement: finds each `_` and compares what
/// follows, without a lowercased copy of the SQL.
pub fn mentions_reserved_name(sql: &str) -> bool {
    let (sql, prefix) = (sql.as_bytes(), RESERVED_PREFIX.as_bytes());
    memchr::memchr_iter(b'_', sql).any(|at| {
        sql.get(at..at + prefix.len())
            .is_some_and(|word| word.eq_ignore_ascii_case(prefix))
    })
}

/// PRAGMAs a guest may run, with or without an argument: they read the
/// schema or set per-connection behaviour that cannot hurt durability.
const PRAGMAS_WITH_ARGUMENT: &[&str] = &[
    "table_info",
    "table_xinfo",
    "table_list",
    "index_list",
    "index_info",
    "index_xinfo",
    "foreign_key_list",
    "foreign_key_check",
    "foreign_keys",
    "integrity_check",
    "quick_check",
    "user_version",
    "application_id",
    "recursive_triggers",
    "optimize",
];

/// PRAGMAs a guest may only read.
const READ_ONLY_PRAGMAS: &[&str] = &[
    "page_count",
    "page_size",
    "freelist_count",
    "max_page_count",
    "data_version",
    "schema_version",
    "encoding",
    "journal_mode",
    "synchronous",
    "collation_list",
    "function_list",
    "module_list",
    "pragma_list",
    "compile_options",
];

/// Virtual-table modules a guest may create (full-text search, R*Tree).
pub(crate) const VTABLE_MODULES: &[&str] = &["fts5", "fts4", "fts3", "rtree", "rtree_i32"];

/// Shared between the authorizer callback and the connection's owner.
#[derive(Debug, Default, Clone)]
pub struct Guard {
    guest_mode: Arc<AtomicBool>,
    last_denial: Arc<Mutex<Option<String>>>,
}

impl Guard {
    /// While set, statements being prepared come from the guest.
    pub fn set_guest_mode(&self, on: bool) {
        self.guest_mode.store(on, Ordering::Relaxed);
    }

    /// Why the last statement was refused, if it was.
    pub fn take_denial(&self) -> Option<String> {
        self.last_denial.lock().take()
    }

    /// The callback for `Connection::authorizer`.
    pub fn callback(&self) -> impl FnMut(AuthContext<'_>) -> Authorization + Send + 'static {
        let guard = self.clone();
        move |ctx| {
            if !guard.guest_mode.load(Ordering::Relaxed) {
                return Authorization::Allow;
            }
            let verdict = if in_temp_schema(&ctx) {
                Err(TEMP_REFUSED.to_string())
            } else {
                check(&ctx.action)
            };
            match verdict {
                Ok(()) => Authorization::Allow,
                Err(reason) => {
                    *guard.last_denial.lock() = Some(reason);
                    Authorization::Deny
                }
            }
        }
    }
}

/// A TEMP object lives in a file of its own that the storage limit does
/// not see: one event could fill the disk through it.
const TEMP_REFUSED: &str = "TEMP tables, indexes, triggers and views are not allowed: they would escape the object's storage limit; use ordinary tables";

/// Whether the action creates something in the `temp` schema, however
/// it is spelled (`CREATE TEMP TABLE` is refused by [`check`]; this
/// catches `CREATE TABLE temp.t`).
fn in_temp_schema(ctx: &AuthContext<'_>) -> bool {
    use AuthAction::*;
    ctx.database_name
        .is_some_and(|db| db.eq_ignore_ascii_case("temp"))
        && matches!(
            ctx.action,
            CreateTable { .. }
                | CreateIndex { .. }
                | CreateView { .. }
                | CreateTrigger { .. }
                | CreateVtable { .. }
        )
}

fn reserved(name: &str) -> bool {
    name.len() >= RESERVED_PREFIX.len()
        && name[..RESERVED_PREFIX.len()].eq_ignore_ascii_case(RESERVED_PREFIX)
}

/// Decides one action of a guest statement.
fn check(action: &AuthAction<'_>) -> Result<(), String> {
    use AuthAction::*;
    let names: &[&str] = match action {
        Read { table_name, .. }
        | Insert { table_name }
        | Update { table_name, .. }
        | Delete { table_name }
        | CreateTable { table_name }
        | DropTable { table_name }
        | DropTempTable { table_name }
        | AlterTable { table_name, .. }
        | Analyze { table_name } => &[table_name],
        CreateIndex {
            index_name,
            table_name,
        }
        | DropIndex {
            index_name,
            table_name,
        }
        | DropTempIndex {
            index_name,
            table_name,
        } => &[index_name, table_name],
        CreateTrigger {
            trigger_name,
            table_name,
        }
        | DropTrigger {
            trigger_name,
            table_name,
        }
        | DropTempTrigger {
            trigger_name,
            table_name,
        } => &[trigger_name, table_name],
        CreateView { view_name } | DropView { view_name } | DropTempView { view_name } => {
            &[view_name]
        }
        Reindex { index_name } => &[index_name],
        CreateVtable {
            table_name,
            module_name,
        }
        | DropVtable {
            table_name,
            module_name,
        } => {
            if !VTABLE_MODULES.contains(&module_name.to_ascii_lowercase().as_str()) {
                return Err(format!(
                    "virtual tables of module {module_name:?} are not allowed"
                ));
            }
            &[table_name]
        }
        CreateTempTable { .. }
        | CreateTempIndex { .. }
        | CreateTempTrigger { .. }
        | CreateTempView { .. } => return Err(TEMP_REFUSED.into()),
        Attach { .. } | Detach { .. } => {
            return Err("ATTACH and DETACH are not allowed: an object has one database".into());
        }
        Transaction { .. } | Savepoint { .. } => {
            return Err("transaction control is not allowed: every event already runs in a transaction that commits when it succeeds".into());
        }
        Pragma {
            pragma_name,
            pragma_value,
        } => return check_pragma(pragma_name, *pragma_value),
        Function { function_name } if function_name.eq_ignore_ascii_case("load_extension") => {
            return Err("loading extensions is not allowed".into());
        }
        _ => &[],
    };
    match names.iter().find(|name| reserved(name)) {
        Some(name) => Err(format!(
            "{name} is reserved for the host: names starting with {RESERVED_PREFIX} are not accessible"
        )),
        None => Ok(()),
    }
}

fn check_pragma(name: &str, value: Option<&str>) -> Result<(), String> {
    let name = name.to_ascii_lowercase();
    let allowed = PRAGMAS_WITH_ARGUMENT.contains(&name.as_str())
        || (value.is_none() && READ_ONLY_PRAGMAS.contains(&name.as_str()));
    if allowed {
        Ok(())
    } else if READ_ONLY_PRAGMAS.contains(&name.as_str()) {
        Err(format!("PRAGMA {name} may be read but not set"))
    } else {
        Err(format!("PRAGMA {name} is not allowed"))
    }
}

#[cfg(test)]
mod tests {
    use rusqlite::Connection;

    use super::*;

    fn guarded() -> (Connection, Guard) {
        let mut conn = Connection::open_in_memory().expect("in-memory database");
        conn.execute_batch(
            "CREATE TABLE _podhost_kv (key TEXT PRIMARY KEY, value BLOB);
             CREATE TABLE notes (id INTEGER PRIMARY KEY, body TEXT);",
        )
        .expect("schema");
        let guard = Guard::default();
        conn.authorizer(Some(guard.callback())).expect("authorizer");
        guard.set_guest_mode(true);
        (conn, guard)
    }

    fn denied(conn: &Connection, guard: &Guard, sql: &str) -> String {
        let result = conn.execute_batch(sql);
        assert!(result.is_err(), "{sql} should be denied");
        guard
            .take_denial()
            .unwrap_or_else(|| panic!("{sql} denied without a reason: {result:?}"))
    }

    #[test]
    fn guest_cannot_touch_reserved_tables() {
        let (conn, guard) = guarded();
        for sql in [
            "SELECT * FROM _podhost_kv",
            "SELECT * FROM _PODHOST_KV",
            "INSERT INTO _podhost_kv VALUES ('a', 'b')",
            "DELETE FROM _podhost_kv",
            "DROP TABLE _podhost_kv",
            "CREATE TABLE _podhost_mine (x)",
            "CREATE INDEX _podhost_i ON notes (body)",
            "CREATE TRIGGER t AFTER INSERT ON _podhost_kv BEGIN SELECT 1; END",
        ] {
            assert!(denied(&conn, &guard, sql).contains("reserved"), "{sql}");
        }
    }

    #[test]
    fn views_and_triggers_do_not_launder_access() {
        let (conn, guard) = guarded();
        // SQLite authorizes a view's SELECT when the view is used, not when
        // it is created; using it must still be refused.
        conn.execute_batch("CREATE VIEW v AS SELECT * FROM _podhost_kv")
            .expect("creating is allowed");
        assert!(denied(&conn, &guard, "SELECT * FROM v").contains("reserved"));
        conn.execute_batch(
            "CREATE TRIGGER t AFTER INSERT ON notes BEGIN DELETE FROM _podhost_kv; END",
        )
        .expect("creating is allowed");
        assert!(
            denied(&conn, &guard, "INSERT INTO notes (body) VALUES ('x')").contains("reserved")
        );
    }

    #[test]
    fn guest_cannot_attach_control_transactions_or_change_durability() {
        let (conn, guard) = guarded();
        assert!(denied(&conn, &guard, "ATTACH DATABASE ':memory:' AS other").contains("ATTACH"));
        for sql in ["BEGIN", "COMMIT", "ROLLBACK", "SAVEPOINT s", "RELEASE s"] {
            assert!(denied(&conn, &guard, sql).contains("transaction"), "{sql}");
        }
        for sql in [
            "PRAGMA journal_mode = DELETE",
            "PRAGMA synchronous = OFF",
            "PRAGMA writable_schema = ON",
            "PRAGMA max_page_count = 1000000",
            "PRAGMA locking_mode = EXCLUSIVE",
        ] {
            assert!(denied(&conn, &guard, sql).contains("PRAGMA"), "{sql}");
        }
        assert!(denied(&conn, &guard, "SELECT load_extension('x')").contains("extensions"));
    }

    #[test]
    fn guest_cannot_make_temp_objects_outside_the_storage_limit() {
        let (conn, guard) = guarded();
        conn.execute_batch("CREATE TABLE t (x)")
            .expect("an ordinary table");
        for sql in [
            "CREATE TEMP TABLE scratch (x)",
            "CREATE TEMPORARY TABLE scratch AS SELECT 1",
            "CREATE TABLE temp.scratch (x)",
            "CREATE TEMP VIEW v AS SELECT 1",
            "CREATE TEMP TRIGGER tr AFTER INSERT ON t BEGIN SELECT 1; END",
        ] {
            assert!(denied(&conn, &guard, sql).contains("TEMP"), "{sql}");
        }
    }

    #[test]
    fn guest_keeps_ordinary_sql_and_harmless_pragmas() {
        let (conn, _guard) = guarded();
        conn.execute_batch(
            "CREATE TABLE posts (id INTEGER PRIMARY KEY, title TEXT);
             CREATE INDEX posts_title ON posts (title);
             INSERT INTO posts (title) VALUES ('hello');
             CREATE VIRTUAL TABLE search USING fts5(body);
             INSERT INTO search VALUES ('full text');
             PRAGMA foreign_keys = ON;
             PRAGMA user_version = 3;",
        )
        .expect("ordinary SQL is allowed");
        let columns: i64 = conn
            .query_row("SELECT count(*) FROM pragma_table_info('posts')", [], |r| {
                r.get(0)
            })
            .expect("table_info");
        assert_eq!(columns, 2);
        conn.query_row("PRAGMA journal_mode", [], |_| Ok(()))
            .expect("reading journal_mode");
    }

    #[test]
    fn host_mode_is_unrestricted() {
        let (conn, guard) = guarded();
        guard.set_guest_mode(false);
        conn.execute_batch("INSERT INTO _podhost_kv VALUES ('k', 'v'); BEGIN; COMMIT;")
            .expect("the host may use its own tables");
    }

    #[test]
    fn finding_reserved_names_allocates_nothing() {
        // It runs on every guest statement.
        let sql = "SELECT v FROM c WHERE k = ? AND _x = 1".repeat(100);
        let before = crate::test_alloc::allocations();
        assert!(!mentions_reserved_name(&sql));
        assert_eq!(crate::test_alloc::allocations(), before);
    }

    #[test]
    fn reserved_names_are_found_in_any_case() {
        assert!(mentions_reserved_name("select * from _PodHost_kv"));
        assert!(!mentions_reserved_name("select * from podhost_kv"));
        assert!(mentions_reserved_name("_podhost_"));
        assert!(mentions_reserved_name("select __PODHOST_x"));
        assert!(!mentions_reserved_name("select _podhost"));
        assert!(!mentions_reserved_name("select _pod_host_"));
    }
}
