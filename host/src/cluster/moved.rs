//! An object that moved here from another node (it hibernated there, or
//! that node died and its lease expired): its latest state is restored
//! from the replication store before it runs anything here, so the data
//! directory's older copy (or none) never answers. Whatever activates it
//! comes through here first: a client's request (the gateway), an alarm
//! or another object's call (`Runtime::deliver`).

use std::sync::Arc;

use super::ClusterError;
use super::ownership::{Owners, Route};
use crate::object::ObjectAddr;
use crate::replication::restore::Point;
use crate::runtime::Runtime;

pub(super) async fn restore_moved(
    owners: &Owners,
    runtime: &Arc<Runtime>,
    class: &str,
    name: &str,
) -> Result<(), ClusterError> {
    let id = ObjectAddr::new(class, name).id().to_string();
    let _once = owners.restoring(class, &id).await;
    if owners.route(class, &id, || None).await? != (Route::Local { restore: true }) {
        return Ok(());
    }
    if runtime.replication().is_some() {
        let rebuilt =
            crate::gateway::restore::rebuild(runtime, class, name, name, Point::Latest).await;
        match rebuilt {
            Ok(Some(restored)) => {
                tracing::info!(
                    class,
                    name,
                    txid = restored.txid,
                    "object restored after moving here"
                );
            }
            Ok(None) => tracing::debug!(
                class,
                name,
                "object moved here with no history in the store"
            ),
            Err(error) => {
                return Err(ClusterError::Moving(format!(
                    "it moved here and cannot be restored from the store yet ({error})"
                )));
            }
        }
    } else {
        tracing::warn!(
            class,
            name,
            "object moved here from another node without [replication]: served from this node's copy"
        );
    }
    owners.restored(class, &id);
    Ok(())
}
