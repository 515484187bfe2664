//! In a cluster, each node's copy of the shared tables (`storage::shared`)
//! is written by the watch that applies etcd's rows; once a batch is
//! applied, the runtime is told here, so what the node keeps in memory
//! follows rows any node wrote: loaded classes (`deploy::follow`),
//! tenants and class owners (`Tenants::reload_shared`), and, through
//! [`SharedRowsFollower`], the gateway's accounts (revoked sessions,
//! caches of roles, keys and handles, the grants of open sockets).

use std::collections::BTreeSet;
use std::sync::Arc;

use super::Runtime;
use crate::storage::shared::RowChange;

/// What keeps shared rows in memory outside the runtime: the accounts,
/// which the gateway owns and installs with
/// [`Runtime::follow_shared_rows`].
pub trait SharedRowsFollower: Send + Sync + 'static {
    /// Rows applied to this node's copy; called on the shared catalog's
    /// listener task, so it must be quick and must not wait for the
    /// catalog.
    fn applied(&self, changes: &[RowChange]);
}

impl Runtime {
    /// Sets what follows the accounts' rows (once; later calls are
    /// ignored).
    pub fn follow_shared_rows(&self, follower: Arc<dyn SharedRowsFollower>) {
        let _ = self.shared_rows_follower.set(follower);
    }

    /// A batch of shared rows was applied to this node's copy of the
    /// catalog: on every node, the one that wrote them included (before
    /// its write returns, or just after), so every step is idempotent and
    /// cheap when nothing changed. Runs on the shared catalog's listener
    /// task and never waits there:
    /// what is slow (compiling a class) or must not race a local write's
    /// locks (the tenants') runs in tasks of its own.
    pub fn shared_rows_applied(self: &Arc<Self>, changes: Vec<RowChange>) {
        let mut classes = BTreeSet::new();
        let mut tenants = false;
        for change in &changes {
            match change.table {
                "class_versions" => {
                    if let Some(class) = change.key_text(0) {
                        classes.insert(class.to_string());
                    }
                }
                "tenants" | "class_owners" => tenants = true,
                _ => {}
            }
        }
        if let Some(follower) = self.shared_rows_follower.get() {
            follower.applied(&changes);
        }
        if tenants {
            let held = Arc::clone(&self.tenants);
            tokio::task::spawn_blocking(move || {
                if let Err(error) = held.reload_shared() {
                    tracing::warn!("cannot read the tenants another node changed: {error}");
                }
            });
        }
        if !classes.is_empty() {
            crate::deploy::follow(self, classes);
        }
    }

    /// The classes being brought in step with the catalog.
    pub(crate) fn following(&self) -> &crate::deploy::Following {
        &self.following
    }
}
