//! The etcd keys of a cluster, all below its prefix.

#[derive(Clone)]
pub(super) struct Keys {
    prefix: String,
}

impl Keys {
    pub fn new(prefix: &str) -> Self {
        Keys {
            prefix: prefix.to_string(),
        }
    }

    /// `<prefix>/nodes/<node>` = the node's advertised address.
    pub fn node(&self, node: &str) -> String {
        format!("{}/nodes/{node}", self.prefix)
    }

    /// Everything below `<prefix>/nodes/` (watched).
    pub fn nodes(&self) -> String {
        format!("{}/nodes/", self.prefix)
    }

    /// `<prefix>/draining/<node>` (under the node's lease): the node is
    /// stopping and takes no object, so no node sends it one nobody owns.
    pub fn draining(&self, node: &str) -> String {
        format!("{}/draining/{node}", self.prefix)
    }

    /// Everything below `<prefix>/draining/` (watched).
    pub fn draining_nodes(&self) -> String {
        format!("{}/draining/", self.prefix)
    }

    /// Everything below `<prefix>/owners/` (watched).
    pub fn owners(&self) -> String {
        format!("{}/owners/", self.prefix)
    }

    /// `<prefix>/last-owner/<class>/<id>` = the node that took the object
    /// last (no lease: it outlives its owner, so the next one knows it
    /// must restore the object from the store first).
    pub fn last_owner(&self, class: &str, id: &str) -> String {
        format!("{}/last-owner/{class}/{id}", self.prefix)
    }

    /// Everything below `<prefix>/alarms/` (read by every node).
    pub fn alarms(&self) -> String {
        format!("{}/alarms/", self.prefix)
    }

    /// `<prefix>/alarms/<class>/<id>` = the object's alarm index entry
    /// (no lease: it outlives the node that wrote it; see `alarm_index.rs`).
    pub fn alarm(&self, class: &str, id: &str) -> String {
        format!("{}/alarms/{class}/{id}", self.prefix)
    }

    /// `<prefix>/owners/<class>/<id>` = the owning node's name. Class
    /// names have no `/` (config validation) and ids are hex.
    pub fn owner(&self, class: &str, id: &str) -> String {
        format!("{}/owners/{class}/{id}", self.prefix)
    }
}

impl Keys {
    /// `<prefix>/catalog/id` = the shared catalog's random id: which
    /// catalog a node's copy came from.
    pub fn shared_catalog_id(&self) -> String {
        format!("{}/catalog/id", self.prefix)
    }

    /// Everything below `<prefix>/catalog/rows/` (watched).
    pub fn shared_rows(&self) -> String {
        format!("{}/catalog/rows/", self.prefix)
    }

    /// `<prefix>/catalog/rows/<table>/<key as a JSON array>` = the row.
    pub fn shared_row(&self, table: &str, key: &str) -> String {
        format!("{}/catalog/rows/{table}/{key}", self.prefix)
    }

    /// `<prefix>/catalog/unique/<table>/<column>/<value as JSON>` = the
    /// key of the row that has it.
    pub fn shared_unique(&self, table: &str, column: &str, value: &str) -> String {
        format!("{}/catalog/unique/{table}/{column}/{value}", self.prefix)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn owner_keys_round_trip() {
        let keys = Keys::new("/podhost");
        let key = keys.owner("counter", "ab12");
        assert_eq!(key, "/podhost/owners/counter/ab12");
        assert!(key.starts_with(&keys.owners()));
        assert_eq!(keys.node("a"), "/podhost/nodes/a");
        assert_eq!(keys.draining("a"), "/podhost/draining/a");
        assert!(keys.draining("a").starts_with(&keys.draining_nodes()));
        let alarm = keys.alarm("counter", "ab12");
        assert_eq!(alarm, "/podhost/alarms/counter/ab12");
        assert!(alarm.starts_with(&keys.alarms()));
    }
}
