//! The cluster's live nodes and their addresses (`<prefix>/nodes/`), kept
//! by a watch, for placing objects nobody serves yet. A node's key lives
//! under its lease, so a dead node leaves this list when its lease ends.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use etcd_client::{Client, EventType, GetOptions, WatchOptions};
use parking_lot::Mutex;

use super::ClusterError;
use super::keys::Keys;

pub(super) struct Members {
    keys: Keys,
    /// Node name → advertised address.
    live: Mutex<BTreeMap<String, String>>,
}

impl Members {
    /// Starts following the list: a read of it, then a watch from there;
    /// read again whenever the watch breaks.
    pub fn start(client: Client, keys: Keys) -> Arc<Members> {
        let members = Arc::new(Members {
            keys,
            live: Mutex::new(BTreeMap::new()),
        });
        let follower = Arc::clone(&members);
        tokio::spawn(async move {
            loop {
                if let Err(error) = follower.follow(client.clone()).await {
                    tracing::warn!("the watch of cluster nodes ended: {error}");
                }
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        });
        members
    }

    /// The live nodes now: (name, address).
    pub fn live(&self) -> Vec<(String, String)> {
        self.live
            .lock()
            .iter()
            .map(|(node, address)| (node.clone(), address.clone()))
            .collect()
    }

    async fn follow(&self, mut client: Client) -> Result<(), ClusterError> {
        let prefix = self.keys.nodes();
        let listing = client
            .get(prefix.as_str(), Some(GetOptions::new().with_prefix()))
            .await?;
        let read_at = listing.header().map_or(0, |header| header.revision());
        *self.live.lock() = listing
            .kvs()
            .iter()
            .filter_map(|kv| {
                Some((
                    self.node_of(kv.key_str().ok()?)?,
                    kv.value_str().ok()?.to_string(),
                ))
            })
            .collect();
        let mut stream = client
            .watch(
                prefix.as_str(),
                Some(
                    WatchOptions::new()
                        .with_prefix()
                        .with_start_revision(read_at + 1),
                ),
            )
            .await?;
        while let Some(response) = stream.message().await? {
            for event in response.events() {
                let Some(kv) = event.kv() else { continue };
                let Some(node) = kv.key_str().ok().and_then(|key| self.node_of(key)) else {
                    continue;
                };
                let mut live = self.live.lock();
                match (event.event_type(), kv.value_str()) {
                    (EventType::Put, Ok(address)) => {
                        live.insert(node, address.to_string());
                    }
                    _ => {
                        live.remove(&node);
                    }
                }
            }
        }
        Ok(())
    }

    fn node_of(&self, key: &str) -> Option<String> {
        key.strip_prefix(&self.keys.nodes()).map(str::to_string)
    }
}
