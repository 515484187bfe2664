//! The lifecycle of one object's instance and database, as the actor sees
//! it between and during events:
//!
//! - `Closed`: no database open, no instance. The next event opens and
//!   activates; hibernation and deletion end here.
//! - `Dormant`: the database is open (an earlier instance used it, or one
//!   was just dropped), no instance. The next event activates.
//! - `Live`: an instance runs; its store owns the database.
//!
//! The transitions, all here: `Closed -> Dormant` when the database opens
//! ([`State::opened`]); `Dormant -> Live` when an instance is made around
//! the database ([`State::take_database`], then [`State::instantiated`]);
//! `Live -> Dormant` when an event traps, breaks a limit or loses its
//! writes ([`State::discard`]: the instance may hold state that no longer
//! matches the database), when a deploy changes the class's version, or
//! when the registry needs the instance's room (`max_active`); any `-> Closed` when the object hibernates or is
//! deleted ([`State::close`]). Activating, evicting, retiring and deleting
//! are steps the actor takes between these states within one call, never
//! states it rests in.

use wasmtime::Store;

use crate::bindings::Object;
use crate::capabilities::ObjectState;
use crate::storage::Database;

#[derive(Default)]
pub(super) enum State {
    #[default]
    Closed,
    Dormant(Database),
    Live(Live),
}

/// A running instance: its store (which owns the database) and its exports.
pub(super) struct Live {
    pub store: Store<ObjectState>,
    pub bindings: Object,
}

impl State {
    /// The database, wherever it is.
    pub fn database(&mut self) -> Option<&mut Database> {
        match self {
            State::Closed => None,
            State::Dormant(db) => Some(db),
            State::Live(live) => Some(live.store.data_mut().database()),
        }
    }

    /// The running instance, if there is one.
    pub fn live(&mut self) -> Option<&mut Live> {
        match self {
            State::Live(live) => Some(live),
            _ => None,
        }
    }

    pub fn is_live(&self) -> bool {
        matches!(self, State::Live(_))
    }

    /// `Closed -> Dormant`: the database just opened.
    pub fn opened(&mut self, db: Database) {
        *self = State::Dormant(db);
    }

    /// `Dormant -> Closed` for as long as an instance is being made around
    /// the database; then [`instantiated`](Self::instantiated), or
    /// [`opened`](Self::opened) with the database given back.
    pub fn take_database(&mut self) -> Option<Database> {
        match std::mem::take(self) {
            State::Dormant(db) => Some(db),
            other => {
                *self = other;
                None
            }
        }
    }

    /// `-> Live`: the instance made around the database.
    pub fn instantiated(&mut self, live: Live) {
        *self = State::Live(live);
    }

    /// `Live -> Dormant`: drops the instance, keeping the database open for
    /// the next one. Does nothing in another state.
    pub fn discard(&mut self) {
        if self.is_live()
            && let State::Live(live) = std::mem::take(self)
        {
            *self = State::Dormant(live.store.into_data().into_database());
        }
    }

    /// `-> Closed`: what was open, for the caller to drop off the runtime's
    /// threads (closing may checkpoint and sync).
    pub fn close(&mut self) -> State {
        std::mem::take(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::{DatabaseSettings, Durability};

    fn database(dir: &tempfile::TempDir) -> Database {
        let settings = DatabaseSettings {
            durability: Durability::Normal,
            max_storage_bytes: 1 << 30,
            max_sql_length: 100_000,
            max_sql_parameters: 999,
        };
        Database::open(&dir.path().join("state.sqlite"), &settings).expect("open")
    }

    #[test]
    fn the_database_moves_through_the_states_and_closing_gives_it_up() {
        let dir = tempfile::tempdir().expect("temp dir");
        let mut state = State::default();
        assert!(state.database().is_none());
        assert!(
            state.take_database().is_none(),
            "nothing to take when closed"
        );
        state.opened(database(&dir));
        assert!(state.database().is_some());
        assert!(!state.is_live());
        state.discard();
        assert!(
            state.database().is_some(),
            "discarding without an instance keeps the database"
        );
        let db = state.take_database().expect("dormant");
        assert!(matches!(state, State::Closed));
        state.opened(db);
        let closed = state.close();
        assert!(matches!(closed, State::Dormant(_)));
        assert!(matches!(state, State::Closed));
        assert!(state.live().is_none());
    }
}
