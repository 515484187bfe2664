//! The authorization rules, against a catalog in a temporary directory.

use super::*;
use crate::storage::catalog::{Catalog, CatalogUpdate, ObjectSeen};

fn open(dir: &Path, declared: &[(&str, &str)]) -> (Catalog, Tenants) {
    let catalog = Catalog::open(dir, Durability::Normal).expect("catalog");
    let declared = declared
        .iter()
        .map(|(class, tenant)| (class.to_string(), tenant.to_string()))
        .collect();
    let tenants = Tenants::open(
        dir,
        Durability::Normal,
        Quotas::default(),
        declared,
        Writes::Direct,
    )
    .expect("tenants");
    (catalog, tenants)
}

fn tenant(name: &str) -> Principal {
    Principal::Tenant(name.to_string())
}

fn quotas(max_classes: u64, max_objects: u64, max_storage_bytes: u64) -> QuotaOverrides {
    QuotaOverrides {
        max_classes: Some(max_classes),
        max_objects: Some(max_objects),
        max_storage_bytes: Some(max_storage_bytes),
    }
}

#[test]
fn tokens_are_shown_once_and_name_their_tenant() {
    let dir = tempfile::tempdir().expect("temp dir");
    let (_catalog, tenants) = open(dir.path(), &[]);
    let a = tenants
        .create("acme", QuotaOverrides::default())
        .expect("a");
    let b = tenants
        .create("bolt", QuotaOverrides::default())
        .expect("b");
    assert_eq!(a.quotas, Quotas::default());
    assert_eq!(tenants.authenticate(&a.token).as_deref(), Some("acme"));
    assert_eq!(tenants.authenticate(&b.token).as_deref(), Some("bolt"));
    assert_eq!(tenants.authenticate("tn_guess"), None);
    assert_eq!(tenants.authenticate(&a.token[1..]), None);
    assert!(matches!(
        tenants.create("acme", QuotaOverrides::default()),
        Err(TenantError::Exists(_))
    ));
    for bad in ["", "Acme", "-acme", "a b", "ünï", &"a".repeat(65)] {
        assert!(
            matches!(
                tenants.create(bad, QuotaOverrides::default()),
                Err(TenantError::Invalid(_))
            ),
            "{bad:?}"
        );
    }
    assert!(matches!(
        tenants.create("zero", quotas(0, 1, 1)),
        Err(TenantError::Invalid(_))
    ));
    // The digest is what is kept: a reopened host knows the same tokens.
    drop(tenants);
    let reopened = Tenants::open(
        dir.path(),
        Durability::Normal,
        Quotas::default(),
        vec![],
        Writes::Direct,
    )
    .expect("reopen");
    assert_eq!(reopened.authenticate(&a.token).as_deref(), Some("acme"));
}

#[test]
fn a_tenant_acts_only_on_its_own_classes() {
    let dir = tempfile::tempdir().expect("temp dir");
    let (_catalog, tenants) = open(dir.path(), &[]);
    tenants.create("acme", quotas(2, 10, 1 << 20)).expect("a");
    tenants
        .create("bolt", QuotaOverrides::default())
        .expect("b");
    let (acme, bolt) = (tenant("acme"), tenant("bolt"));

    tenants
        .claim_class(&acme, "shop", false)
        .expect("first deploy");
    tenants
        .claim_class(&acme, "shop", true)
        .expect("its own again");
    assert_eq!(tenants.owner_of("shop").as_deref(), Some("acme"));
    assert!(matches!(
        tenants.claim_class(&bolt, "shop", true),
        Err(TenantError::Forbidden(_))
    ));
    // The operator's classes are no one else's either.
    assert!(matches!(
        tenants.claim_class(&bolt, "ops", true),
        Err(TenantError::Forbidden(_))
    ));
    tenants
        .claim_class(&Principal::Admin, "shop", true)
        .expect("the operator deploys anything");
    assert_eq!(tenants.owner_of("shop").as_deref(), Some("acme"));
    assert_eq!(tenants.owner_of("ops"), None);

    tenants.may_manage(&acme, "shop").expect("its own");
    tenants
        .may_manage(&Principal::Admin, "shop")
        .expect("admin");
    tenants.may_manage(&Principal::Admin, "ops").expect("admin");
    // Someone else's class and the operator's read as missing.
    assert!(matches!(
        tenants.may_manage(&bolt, "shop"),
        Err(TenantError::NotFound(_))
    ));
    assert!(matches!(
        tenants.may_manage(&acme, "ops"),
        Err(TenantError::NotFound(_))
    ));
    assert!(tenants.sees(&acme, "shop") && !tenants.sees(&bolt, "shop"));

    // max_classes: a second class fits, a third does not.
    tenants.claim_class(&acme, "cart", false).expect("second");
    let refused = tenants.claim_class(&acme, "till", false);
    let Err(TenantError::Quota(exceeded)) = refused else {
        panic!("expected the quota, got {refused:?}");
    };
    assert_eq!(exceeded.quota, Quota::MaxClasses);
    assert!(exceeded.to_string().contains("max_classes"));
    assert!(tenants.check_quota_new_class("acme").is_err());
    assert!(matches!(
        tenants.check_claim(&acme, "till", false),
        Err(TenantError::Quota(_))
    ));
    tenants
        .check_claim(&acme, "shop", true)
        .expect("its own, even at the quota");
    assert!(tenants.check_quota_new_class("bolt").is_ok());
    assert_eq!(tenants.owner_of("till"), None);

    // A tenant that owns classes stays until they are gone.
    assert!(matches!(
        tenants.delete("acme"),
        Err(TenantError::OwnsClasses { .. })
    ));
    tenants.release_class("shop").expect("release");
    tenants.release_class("cart").expect("release");
    tenants.delete("acme").expect("now it goes");
    assert!(matches!(
        tenants.delete("acme"),
        Err(TenantError::NoSuchTenant(_))
    ));
}

#[test]
fn objects_and_storage_are_held_to_the_quotas() {
    let dir = tempfile::tempdir().expect("temp dir");
    let (catalog, tenants) = open(dir.path(), &[]);
    tenants.create("acme", quotas(5, 2, 100_000)).expect("a");
    let acme = tenant("acme");
    tenants.claim_class(&acme, "shop", false).expect("claim");

    tenants.admit_new_object("shop").expect("first");
    tenants.admit_new_object("shop").expect("second");
    let exceeded = tenants.admit_new_object("shop").expect_err("third");
    assert_eq!(exceeded.quota, Quota::MaxObjects);
    // The operator's classes have no quota.
    for _ in 0..5 {
        tenants.admit_new_object("ops").expect("unowned");
    }
    tenants.object_removed("shop");
    tenants.admit_new_object("shop").expect("room again");

    // Storage as the catalog measured it.
    let seen = |id: &str, size| {
        CatalogUpdate::Seen(ObjectSeen {
            id: id.into(),
            class: "shop".into(),
            name: id.into(),
            at: 1,
            size_bytes: Some(size),
        })
    };
    catalog
        .apply(&[seen("x", 60_000), seen("y", 50_000)])
        .expect("apply");
    tenants.object_removed("shop");
    let exceeded = tenants.admit_new_object("shop").expect_err("storage");
    assert_eq!(exceeded.quota, Quota::MaxStorageBytes);
    // An object may grow into what the others leave, and keeps what it
    // has even when the tenant is over.
    assert_eq!(
        tenants.storage_allowance("ops", || unreachable!("not a tenant's")),
        None
    );
    assert_eq!(tenants.storage_allowance("shop", || 50_000), Some(50_000));
    assert_eq!(tenants.storage_allowance("shop", || 0), Some(0));
    let listed = tenants.list().expect("list");
    assert_eq!(listed[0].usage.storage_bytes, 110_000);
    assert_eq!(listed[0].usage.objects, 1);
    assert_eq!(listed[0].classes, ["shop"]);
}

#[test]
fn the_config_gives_classes_to_tenants_made_later() {
    let dir = tempfile::tempdir().expect("temp dir");
    let (_catalog, tenants) = open(dir.path(), &[("inbox", "acme")]);
    assert_eq!(tenants.owner_of("inbox"), None);
    tenants
        .create("acme", QuotaOverrides::default())
        .expect("a");
    assert_eq!(tenants.owner_of("inbox").as_deref(), Some("acme"));
    drop(tenants);
    let (_catalog, reopened) = open(dir.path(), &[("inbox", "acme")]);
    assert_eq!(reopened.owner_of("inbox").as_deref(), Some("acme"));
    assert!(reopened.delete("acme").is_err());
}

#[test]
fn the_config_takes_default_quotas_and_class_owners() {
    let config: crate::Config = toml::from_str(
        r#"
        [tenants]
        max_objects = 50
        [classes.inbox]
        path = "inbox.wasm"
        tenant = "acme"
        "#,
    )
    .expect("valid config");
    config.validate().expect("valid");
    assert_eq!(config.tenants.max_objects, 50);
    assert_eq!(config.tenants.max_classes, Quotas::default().max_classes);
    assert_eq!(config.classes["inbox"].tenant.as_deref(), Some("acme"));
    for bad in [
        "[tenants]\nmax_classes = 0\n",
        "[tenants]\nmax_tenants = 3\n",
        "[classes.inbox]\npath = \"inbox.wasm\"\ntenant = \"Not Valid\"\n",
    ] {
        let refused = toml::from_str::<crate::Config>(bad)
            .map_err(anyhow::Error::from)
            .and_then(|config| config.validate());
        assert!(refused.is_err(), "{bad}");
    }
}
