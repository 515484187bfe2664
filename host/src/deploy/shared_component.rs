//! Components every node of a cluster can fetch: the deploying node puts
//! a new component in the replication store (`_catalog/classes/
//! <sha256>.wasm`) before it records the version, so a node that learns
//! of the version and lacks the file fetches it there, and checks its
//! hash before using it. The catalog's shipper uploads components too,
//! but in the background: too late for the other nodes.

use std::sync::Arc;

use object_store::{ObjectStoreExt as _, PutPayload};

use super::{DeployError, files, internal};
use crate::replication::catalog::component_path;
use crate::runtime::Runtime;

/// Before a version with component `hash` is recorded: in a cluster with
/// a replication store, makes sure the store holds the component. Nothing
/// to do on one node, or without a store.
pub(super) async fn share(
    runtime: &Runtime,
    hash: &str,
    wasm: &Arc<Vec<u8>>,
) -> Result<(), DeployError> {
    let (Some(_), Some(replication)) = (&runtime.config().cluster, runtime.replication()) else {
        return Ok(());
    };
    let store = replication.store();
    let path = component_path(&format!("{hash}.wasm"));
    let timeout = replication.settings().timeout;
    match tokio::time::timeout(timeout, store.head(&path)).await {
        Ok(Ok(_)) => return Ok(()),
        Ok(Err(object_store::Error::NotFound { .. })) => {}
        Ok(Err(error)) => {
            return Err(internal(format!(
                "cannot look for the component in the replication store: {error}"
            )));
        }
        Err(_) => return Err(internal("the replication store did not answer in time")),
    }
    let payload = PutPayload::from(wasm.as_ref().clone());
    match tokio::time::timeout(timeout, store.put(&path, payload)).await {
        Ok(Ok(_)) => Ok(()),
        Ok(Err(error)) => Err(internal(format!(
            "cannot put the component in the replication store, where the cluster's other nodes fetch it: {error}"
        ))),
        Err(_) => Err(internal(
            "the replication store did not take the component in time",
        )),
    }
}

/// Makes sure the data directory holds component `hash`: fetched from
/// the replication store when it does not, and kept only if its content
/// has that hash.
pub(super) async fn fetch_if_missing(runtime: &Runtime, hash: &str) -> Result<(), DeployError> {
    if !is_hash(hash) {
        return Err(internal(format!("{hash:?} is not a component's SHA-256")));
    }
    let data = runtime.data_dir().clone();
    if data.class_component(hash).exists() {
        return Ok(());
    }
    let Some(replication) = runtime.replication() else {
        return Err(internal(format!(
            "component {hash} is not in this node's data directory, and without a [replication] store it cannot be fetched"
        )));
    };
    let path = component_path(&format!("{hash}.wasm"));
    let fetch = async { replication.store().get(&path).await?.bytes().await };
    let bytes = match tokio::time::timeout(replication.settings().timeout, fetch).await {
        Ok(Ok(bytes)) => bytes,
        Ok(Err(error)) => {
            return Err(internal(format!(
                "cannot fetch component {hash} from the replication store: {error}"
            )));
        }
        Err(_) => {
            return Err(internal(format!(
                "the replication store did not send component {hash} in time"
            )));
        }
    };
    if super::hash(&bytes) != hash {
        return Err(internal(format!(
            "the replication store's copy of component {hash} does not have that hash: refused"
        )));
    }
    let hash = hash.to_string();
    tokio::task::spawn_blocking(move || files::store_component(&data, &hash, &bytes))
        .await
        .map_err(internal)?
        .map_err(|error| internal(format!("cannot store the fetched component: {error:#}")))
}

/// A SHA-256 in lower-case hex: safe as a file name.
fn is_hash(text: &str) -> bool {
    text.len() == 64 && text.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_sha256_names_a_component() {
        assert!(is_hash(&super::super::hash(b"component")));
        for bad in ["", "../../etc/passwd", &"A".repeat(64), &"a".repeat(63)] {
            assert!(!is_hash(bad), "{bad:?}");
        }
    }
}
