//! In a cluster, tenants and class owners another node wrote reach this
//! node's copy of the catalog; the tenants held in memory follow here.

use super::{TenantError, Tenants, entries};

impl Tenants {
    /// Reads the tenants and the classes' owners again from the catalog
    /// (its `tenants` or `class_owners` rows changed). The object counts
    /// and storage totals are this node's own and stay. Runs on a
    /// blocking thread, and never on the task that applies rows: a local
    /// write holds the state's lock until its rows are applied.
    pub fn reload_shared(&self) -> Result<(), TenantError> {
        // Read under the lock, so no local change lands between the read
        // and the swap and is lost.
        let mut state = self.state.lock();
        let shared = self.store.load_shared()?;
        state.tenants = entries(shared.tenants);
        state.owners = shared.owners.into_iter().collect();
        self.storage
            .lock()
            .retain(|tenant, _| state.tenants.contains_key(tenant));
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::super::{QuotaOverrides, Quotas};
    use super::*;
    use crate::storage::Durability;
    use crate::storage::catalog::Catalog;
    use crate::storage::shared_writes::Writes;
    use crate::tenants::Principal;

    fn open(dir: &std::path::Path) -> Tenants {
        Tenants::open(
            dir,
            Durability::Normal,
            Quotas::default(),
            Vec::new(),
            Writes::Direct,
        )
        .expect("tenants")
    }

    #[test]
    fn tenants_and_owners_written_elsewhere_are_known_after_a_reload() {
        let dir = tempfile::tempdir().expect("temp dir");
        let _catalog = Catalog::open(dir.path(), Durability::Normal).expect("catalog");
        // `here` is this node's memory; `elsewhere` writes the same
        // catalog, as another node's rows applied to the copy would.
        let here = open(dir.path());
        let elsewhere = open(dir.path());
        let made = elsewhere
            .create("acme", QuotaOverrides::default())
            .expect("made");
        let acme = Principal::Tenant("acme".into());
        elsewhere
            .claim_class(&acme, "shop", false)
            .expect("claimed");
        assert_eq!(here.authenticate(&made.token), None, "not yet");
        here.reload_shared().expect("reloaded");
        assert_eq!(here.authenticate(&made.token).as_deref(), Some("acme"));
        assert_eq!(here.owner_of("shop").as_deref(), Some("acme"));
        assert!(here.may_manage(&acme, "shop").is_ok());

        elsewhere.release_class("shop").expect("released");
        elsewhere.delete("acme").expect("deleted");
        here.reload_shared().expect("reloaded");
        assert_eq!(here.authenticate(&made.token), None);
        assert_eq!(here.owner_of("shop"), None);
    }
}
