//! The actor's side of replication (see `replication`): its database
//! attached to its stream when it opens, each commit queued right after
//! it, and a `replicated` batch's outputs held until everything it may
//! show is durable in the store.

use std::sync::Arc;

use super::Actor;
use super::state::State;
use crate::logs::Level;
use crate::object::ObjectAddr;
use crate::object::event::EventError;
use crate::replication::ship::{self, Overflow};
use crate::replication::{Replication, Stream};
use crate::runtime::ObjectOwnership;
use crate::storage::{Database, Durability};

/// What shipping needs, apart from the database.
pub(super) struct Shipping {
    replication: Arc<Replication>,
    stream: Arc<Stream>,
    path: std::path::PathBuf,
    overflow: Overflow,
    /// In a cluster: the object's fencing epoch comes from here, and
    /// without one nothing is shipped.
    ownership: Option<(Arc<dyn ObjectOwnership>, Arc<ObjectAddr>)>,
}

impl Shipping {
    /// Queues what `db` committed since the last time; the sequence
    /// number to wait for.
    pub fn ship(&self, db: &mut Database) -> anyhow::Result<u64> {
        let epoch = match &self.ownership {
            None => 0,
            Some((ownership, object)) => ownership
                .epoch(object.class(), object.id())
                .ok_or_else(|| {
                    anyhow::anyhow!(
                        "this node no longer owns the object (its cluster lease or ownership ended): its commits are not shipped"
                    )
                })?,
        };
        ship::ship(
            &self.replication,
            &self.stream,
            db,
            &self.path,
            self.overflow,
            epoch,
        )
    }

    /// Ships what `closed` holds, then drops it.
    pub fn ship_and_close(self, mut closed: State) {
        if let Some(db) = closed.database()
            && db.is_replicated()
            && let Err(error) = self.ship(db)
        {
            tracing::error!("cannot ship the last commits before closing: {error:#}");
        }
        drop(closed);
    }
}

impl Actor {
    fn replicated(&self) -> bool {
        self.class.settings().durability == Durability::Replicated
    }

    /// What shipping this object needs, if replication is on.
    pub(super) fn shipping(&self) -> Option<Shipping> {
        let replication = Arc::clone(self.runtime.replication()?);
        let stream = replication.stream(self.object.class(), self.object.id(), self.object.name());
        Some(Shipping {
            replication,
            stream,
            path: self
                .runtime
                .data_dir()
                .object_database(self.object.class(), self.object.id()),
            ownership: self
                .runtime
                .ownership()
                .map(|ownership| (Arc::clone(ownership), Arc::clone(&self.object))),
            overflow: if self.replicated() {
                Overflow::Keep
            } else {
                Overflow::DropAndSnapshot
            },
        })
    }

    /// Turns replication on for the database just opened for events.
    pub(super) fn attach_replica(&self, db: &mut Database) -> Result<(), EventError> {
        let Some(shipping) = self.shipping() else {
            return Ok(());
        };
        ship::attach(&shipping.stream, db).map_err(|error| {
            tracing::error!("cannot start replicating the database: {error:#}");
            EventError::Activation
        })
    }

    /// After a commit: queues it, and for a `replicated` object waits
    /// until it and everything before it are durable. Returns whether the
    /// batch's outputs may leave.
    pub(super) async fn replicate_commit(&mut self) -> bool {
        let Some(shipping) = self.shipping() else {
            return true;
        };
        let Some(db) = self.state.database() else {
            return true;
        };
        if !db.is_replicated() {
            return true;
        }
        let shipped = shipping.ship(db);
        let seq = match shipped {
            Ok(seq) => seq,
            Err(error) => {
                tracing::error!("cannot ship the commit: {error:#}");
                self.host_log(Level::Error, format!("cannot ship the commit: {error:#}"));
                return !self.replicated();
            }
        };
        if !self.replicated() {
            return true;
        }
        let timeout = shipping.replication.settings().timeout;
        if shipping.stream.wait_durable(seq, timeout).await {
            return true;
        }
        tracing::warn!("the replication store did not take the commit in time");
        self.host_log(
            Level::Warn,
            "the replication store did not take the commit in time: its events failed",
        );
        false
    }
}
