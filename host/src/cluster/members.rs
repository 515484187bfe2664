//! The cluster's live nodes and their addresses (`<prefix>/nodes/`), less
//! those draining (`<prefix>/draining/`), kept by watches, for placing
//! objects nobody serves yet. Both keys live under the node's lease, so a
//! dead node leaves these lists when its lease ends.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use etcd_client::{Client, EventType, GetOptions, WatchOptions};
use parking_lot::Mutex;

use super::ClusterError;
use super::keys::Keys;

pub(super) struct Members {
    /// Node name → advertised address.
    registered: Arc<Followed>,
    /// Nodes that are stopping (the value says only that).
    draining: Arc<Followed>,
}

impl Members {
    /// Starts following both lists.
    pub fn start(client: Client, keys: Keys) -> Arc<Members> {
        Arc::new(Members {
            registered: Followed::start(client.clone(), keys.nodes()),
            draining: Followed::start(client, keys.draining_nodes()),
        })
    }

    /// The live nodes now that take objects: (name, address).
    pub fn live(&self) -> Vec<(String, String)> {
        let draining = self.draining.entries.lock();
        self.registered
            .entries
            .lock()
            .iter()
            .filter(|(node, _)| !draining.contains_key(*node))
            .map(|(node, address)| (node.clone(), address.clone()))
            .collect()
    }
}

/// The keys below one prefix (less the prefix) and their values.
struct Followed {
    prefix: String,
    entries: Mutex<BTreeMap<String, String>>,
}

impl Followed {
    /// Starts following `prefix`: a read of it, then a watch from there;
    /// read again whenever the watch breaks.
    fn start(client: Client, prefix: String) -> Arc<Followed> {
        let followed = Arc::new(Followed {
            prefix,
            entries: Mutex::new(BTreeMap::new()),
        });
        let follower = Arc::clone(&followed);
        tokio::spawn(async move {
            loop {
                if let Err(error) = follower.follow(client.clone()).await {
                    tracing::warn!(prefix = %follower.prefix, "a watch of cluster nodes ended: {error}");
                }
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        });
        followed
    }

    async fn follow(&self, mut client: Client) -> Result<(), ClusterError> {
        let prefix = self.prefix.as_str();
        let listing = client
            .get(prefix, Some(GetOptions::new().with_prefix()))
            .await?;
        let read_at = listing.header().map_or(0, |header| header.revision());
        *self.entries.lock() = listing
            .kvs()
            .iter()
            .filter_map(|kv| {
                Some((
                    self.name_of(kv.key_str().ok()?)?,
                    kv.value_str().ok()?.to_string(),
                ))
            })
            .collect();
        let mut stream = client
            .watch(
                prefix,
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
                let Some(name) = kv.key_str().ok().and_then(|key| self.name_of(key)) else {
                    continue;
                };
                let mut entries = self.entries.lock();
                match (event.event_type(), kv.value_str()) {
                    (EventType::Put, Ok(value)) => {
                        entries.insert(name, value.to_string());
                    }
                    _ => {
                        entries.remove(&name);
                    }
                }
            }
        }
        Ok(())
    }

    fn name_of(&self, key: &str) -> Option<String> {
        key.strip_prefix(&self.prefix).map(str::to_string)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn followed(prefix: &str, entries: &[(&str, &str)]) -> Arc<Followed> {
        Arc::new(Followed {
            prefix: prefix.into(),
            entries: Mutex::new(
                entries
                    .iter()
                    .map(|(key, value)| (key.to_string(), value.to_string()))
                    .collect(),
            ),
        })
    }

    #[test]
    fn draining_nodes_are_not_live_for_placement() {
        let members = Members {
            registered: followed(
                "/p/nodes/",
                &[
                    ("a", "10.0.0.1:80"),
                    ("b", "10.0.0.2:80"),
                    ("c", "10.0.0.3:80"),
                ],
            ),
            draining: followed("/p/draining/", &[("b", "draining")]),
        };
        assert_eq!(
            members.live(),
            [
                ("a".to_string(), "10.0.0.1:80".to_string()),
                ("c".to_string(), "10.0.0.3:80".to_string())
            ]
        );
        assert_eq!(
            members.draining.name_of("/p/draining/b").as_deref(),
            Some("b")
        );
        assert_eq!(members.draining.name_of("/p/nodes/b"), None);
    }
}
