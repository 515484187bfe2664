//! Tenants: the parties that ship classes to a host they do not run. A
//! tenant has a token (shown once, kept as its digest), owns the classes
//! it deployed first, and has quotas on classes, objects and storage. This
//! module decides who may act on which class; the gateway asks it (through
//! [`Principal`]) and the runtime asks it before a new object is made.
//!
//! Everything a request needs (tokens, owners, object counts) is answered
//! from memory; the catalog's tables (`store.rs`) are the truth, written
//! when a tenant or an owner changes.
//!
//! How the class routes use it (the gateway's `Principal` extractor gives
//! the principal): `PUT /admin/classes/{class}` calls
//! [`Tenants::check_claim`] before it reads the upload and
//! [`Tenants::claim_class`] once the version is valid, just before it goes
//! live; `GET`, rollback and `DELETE` of one class call
//! [`Tenants::may_manage`] (someone else's class is then a `404`, as a
//! missing one); `GET /admin/classes` keeps the classes
//! [`Tenants::sees`]; a deleted class is given back with
//! [`Tenants::release_class`]; a version's "deployed by" is
//! `principal.tenant()`, or the operator.

mod quotas;
mod shared_rows;
mod store;
mod token;

use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use serde::{Deserialize, Serialize};

pub use quotas::{Quota, QuotaExceeded, Quotas, Usage};
pub(crate) use store::SCHEMA;

use self::store::{Store, TenantRow};
use crate::storage::Durability;
use crate::storage::catalog::now_ms;
use crate::storage::shared_writes::Writes;

/// The longest tenant name, in bytes.
pub const MAX_NAME_BYTES: usize = 64;

/// How long a tenant's storage total, summed from the catalog, is reused:
/// objects opening together then cost one query.
const STORAGE_TOTAL_TTL: Duration = Duration::from_secs(1);

/// Who makes an admin request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Principal {
    /// The operator: the configured `admin_token`. May do everything.
    Admin,
    /// A tenant, by name: acts only on the classes it owns.
    Tenant(String),
}

impl Principal {
    pub fn tenant(&self) -> Option<&str> {
        match self {
            Principal::Admin => None,
            Principal::Tenant(name) => Some(name),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum TenantError {
    #[error("{0}")]
    Invalid(String),
    #[error("a tenant named {0:?} exists already")]
    Exists(String),
    #[error("no tenant named {0:?}")]
    NoSuchTenant(String),
    #[error(
        "tenant {tenant} still owns classes ({}): delete them first",
        classes.join(", ")
    )]
    OwnsClasses {
        tenant: String,
        classes: Vec<String>,
    },
    /// A class the tenant does not own, worded as for a class that does
    /// not exist, so that existence does not leak.
    #[error("no class named {0:?} is deployed")]
    NotFound(String),
    #[error("{0}")]
    Forbidden(String),
    #[error(transparent)]
    Quota(#[from] QuotaExceeded),
    #[error("internal error: {0}")]
    Internal(String),
}

impl From<crate::storage::shared_writes::SharedWriteError> for TenantError {
    fn from(error: crate::storage::shared_writes::SharedWriteError) -> Self {
        TenantError::Internal(error.to_string())
    }
}

impl From<rusqlite::Error> for TenantError {
    fn from(error: rusqlite::Error) -> Self {
        TenantError::Internal(format!("the catalog failed: {error}"))
    }
}

/// `POST /admin/tenants`'s quotas; those left out are `[tenants]`'s.
#[derive(Debug, Clone, Copy, Default, Deserialize)]
pub struct QuotaOverrides {
    pub max_classes: Option<u64>,
    pub max_objects: Option<u64>,
    pub max_storage_bytes: Option<u64>,
}

/// A tenant just made: the only time its token is seen.
#[derive(Debug, Clone, Serialize)]
pub struct Created {
    pub name: String,
    pub token: String,
    pub quotas: Quotas,
}

/// A tenant as listed.
#[derive(Debug, Clone, Serialize)]
pub struct TenantInfo {
    pub name: String,
    pub created_at: i64,
    pub classes: Vec<String>,
    pub quotas: Quotas,
    pub usage: Usage,
}

struct Entry {
    digest: [u8; 32],
    quotas: Quotas,
    created_at: i64,
}

#[derive(Default)]
struct State {
    tenants: BTreeMap<String, Entry>,
    /// Class → owning tenant; a class not here is the operator's.
    owners: HashMap<String, String>,
    /// Objects per class (every class: ownership may change).
    objects: HashMap<String, u64>,
}

impl State {
    fn classes_of(&self, tenant: &str) -> Vec<String> {
        let mut classes: Vec<String> = self
            .owners
            .iter()
            .filter(|(_, owner)| *owner == tenant)
            .map(|(class, _)| class.clone())
            .collect();
        classes.sort();
        classes
    }

    fn objects_of(&self, tenant: &str) -> u64 {
        self.owners
            .iter()
            .filter(|(_, owner)| *owner == tenant)
            .map(|(class, _)| self.objects.get(class).copied().unwrap_or(0))
            .sum()
    }
}

pub struct Tenants {
    store: Store,
    state: Mutex<State>,
    /// Each tenant's storage total as last summed, and when.
    storage: Mutex<HashMap<String, (u64, Instant)>>,
    defaults: Quotas,
    /// Classes the config gives to a tenant (`tenant = "…"` on a class):
    /// theirs at start, or as soon as the tenant is made.
    declared: Vec<(String, String)>,
}

impl Tenants {
    /// Opens the tenants' tables in the catalog's database (the catalog
    /// has created it and its objects) and gives the config's classes to
    /// their declared tenants.
    pub fn open(
        data_dir: &Path,
        durability: Durability,
        defaults: Quotas,
        declared: Vec<(String, String)>,
        writes: Writes,
    ) -> anyhow::Result<Self> {
        let store = Store::open(data_dir, durability, writes)?;
        let loaded = store.load()?;
        let state = State {
            tenants: entries(loaded.shared.tenants),
            owners: loaded.shared.owners.into_iter().collect(),
            objects: loaded.objects.into_iter().collect(),
        };
        let tenants = Tenants {
            store,
            state: Mutex::new(state),
            storage: Mutex::default(),
            defaults,
            declared,
        };
        for (class, tenant) in &tenants.declared {
            if tenants.state.lock().tenants.contains_key(tenant) {
                tenants.give(class, tenant)?;
            } else {
                tracing::warn!(
                    class,
                    tenant,
                    "the class's tenant does not exist yet; the class becomes its when it is made (POST /admin/tenants)"
                );
            }
        }
        Ok(tenants)
    }

    /// Makes tenant `name` with its token. Runs on a blocking thread.
    pub fn create(&self, name: &str, overrides: QuotaOverrides) -> Result<Created, TenantError> {
        validate_name(name)?;
        let quotas = Quotas {
            max_classes: overrides.max_classes.unwrap_or(self.defaults.max_classes),
            max_objects: overrides.max_objects.unwrap_or(self.defaults.max_objects),
            max_storage_bytes: overrides
                .max_storage_bytes
                .unwrap_or(self.defaults.max_storage_bytes),
        };
        quotas
            .validate("the tenant")
            .map_err(TenantError::Invalid)?;
        let token = token::new_token().map_err(|error| TenantError::Internal(error.to_string()))?;
        let row = TenantRow {
            name: name.to_string(),
            token_hash: token::digest_hex(&token),
            quotas,
            created_at: now_ms(),
        };
        if !self.store.insert(&row)? {
            return Err(TenantError::Exists(name.to_string()));
        }
        let entry = Entry {
            digest: token::digest(&token),
            quotas,
            created_at: row.created_at,
        };
        self.state.lock().tenants.insert(row.name, entry);
        for (class, tenant) in &self.declared {
            if tenant == name {
                self.give(class, tenant)?;
            }
        }
        tracing::info!(tenant = name, "tenant created");
        Ok(Created {
            name: name.to_string(),
            token,
            quotas,
        })
    }

    /// Every tenant with its classes, quotas and usage. Runs on a blocking
    /// thread (storage is summed from the catalog).
    pub fn list(&self) -> Result<Vec<TenantInfo>, TenantError> {
        let mut listed: Vec<TenantInfo> = {
            let state = self.state.lock();
            state
                .tenants
                .iter()
                .map(|(name, entry)| {
                    let classes = state.classes_of(name);
                    TenantInfo {
                        name: name.clone(),
                        created_at: entry.created_at,
                        usage: Usage {
                            classes: classes.len() as u64,
                            objects: state.objects_of(name),
                            storage_bytes: 0,
                        },
                        classes,
                        quotas: entry.quotas,
                    }
                })
                .collect()
        };
        for tenant in &mut listed {
            tenant.usage.storage_bytes = self.store.storage_of(&tenant.name)?;
        }
        Ok(listed)
    }

    /// Removes tenant `name`; refused while it owns a class. Runs on a
    /// blocking thread.
    pub fn delete(&self, name: &str) -> Result<(), TenantError> {
        let mut state = self.state.lock();
        if !state.tenants.contains_key(name) {
            return Err(TenantError::NoSuchTenant(name.to_string()));
        }
        let classes = state.classes_of(name);
        if !classes.is_empty() {
            return Err(TenantError::OwnsClasses {
                tenant: name.to_string(),
                classes,
            });
        }
        self.store.delete(name)?;
        state.tenants.remove(name);
        self.storage.lock().remove(name);
        tracing::info!(tenant = name, "tenant deleted");
        Ok(())
    }

    /// The tenant whose token `given` is, if any.
    pub fn authenticate(&self, given: &str) -> Option<String> {
        if !given.starts_with(token::PREFIX) {
            return None;
        }
        let found = self.find_tenant(given);
        if found.is_some() || !self.store.is_shared() {
            return found;
        }
        // In a cluster, a tenant created through another node a moment
        // ago may not be in memory yet.
        let caught_up = tokio::task::block_in_place(|| {
            self.store.catch_up()?;
            self.reload_shared()
        });
        if let Err(error) = caught_up {
            tracing::warn!("cannot catch up with the cluster's tenants: {error}");
        }
        self.find_tenant(given)
    }

    fn find_tenant(&self, given: &str) -> Option<String> {
        let state = self.state.lock();
        let digests = state
            .tenants
            .iter()
            .map(|(name, entry)| (name.as_str(), &entry.digest));
        token::find(given, digests).map(str::to_string)
    }

    /// The tenant owning `class`; `None` for the operator's classes.
    pub fn owner_of(&self, class: &str) -> Option<String> {
        self.state.lock().owners.get(class).cloned()
    }

    /// Whether `principal` may see and act on `class` and its objects:
    /// the operator on every class, a tenant on its own. A class of
    /// someone else's is [`TenantError::NotFound`], as if it did not exist.
    pub fn may_manage(&self, principal: &Principal, class: &str) -> Result<(), TenantError> {
        match principal {
            Principal::Admin => Ok(()),
            Principal::Tenant(tenant) => {
                if self.state.lock().owners.get(class) == Some(tenant) {
                    Ok(())
                } else {
                    Err(TenantError::NotFound(class.to_string()))
                }
            }
        }
    }

    /// Whether `principal` sees `class` in listings.
    pub fn sees(&self, principal: &Principal, class: &str) -> bool {
        self.may_manage(principal, class).is_ok()
    }

    /// Whether `principal` may deploy `class` (`deployed`: a version of it
    /// is live now), without claiming it: the deploy route asks before it
    /// reads and validates the upload. See [`claim_class`](Self::claim_class).
    pub fn check_claim(
        &self,
        principal: &Principal,
        class: &str,
        deployed: bool,
    ) -> Result<(), TenantError> {
        let Principal::Tenant(tenant) = principal else {
            return Ok(());
        };
        let state = self.state.lock();
        match state.owners.get(class) {
            Some(owner) if owner == tenant => Ok(()),
            Some(_) => Err(not_yours(class)),
            None if deployed => Err(not_yours(class)),
            None => check_new_class(&state, tenant),
        }
    }

    /// Just before `principal`'s deploy of `class` goes live: the operator
    /// may deploy any class (an owned class stays its tenant's); a tenant
    /// may deploy its own classes, and a class no one has deployed, which
    /// becomes its own within its `max_classes`. Deploying over someone
    /// else's class is `Forbidden`; of two tenants racing for a new name,
    /// the first to claim it wins. Runs on a blocking thread (a new owner
    /// is written to the catalog).
    pub fn claim_class(
        &self,
        principal: &Principal,
        class: &str,
        deployed: bool,
    ) -> Result<(), TenantError> {
        let Principal::Tenant(tenant) = principal else {
            return Ok(());
        };
        let mut state = self.state.lock();
        match state.owners.get(class) {
            Some(owner) if owner == tenant => return Ok(()),
            Some(_) => return Err(not_yours(class)),
            None if deployed => return Err(not_yours(class)),
            None => {}
        }
        check_new_class(&state, tenant)?;
        self.store.set_owner(class, tenant, now_ms())?;
        state.owners.insert(class.to_string(), tenant.clone());
        tracing::info!(class, tenant, "class claimed");
        Ok(())
    }

    /// Whether `tenant` may own one more class (`max_classes`).
    pub fn check_quota_new_class(&self, tenant: &str) -> Result<(), TenantError> {
        check_new_class(&self.state.lock(), tenant)
    }

    /// Forgets who owned `class`, once it is deleted. Runs on a blocking
    /// thread.
    pub fn release_class(&self, class: &str) -> Result<(), TenantError> {
        let mut state = self.state.lock();
        if state.owners.contains_key(class) {
            self.store.remove_owner(class)?;
            state.owners.remove(class);
        }
        Ok(())
    }

    /// Before a new object of `class` is made: within its tenant's
    /// `max_objects`, and its tenant's storage (as last measured) below
    /// `max_storage_bytes`. Counts the object when admitted. Called on a
    /// guest thread: the storage check reads the catalog.
    pub fn admit_new_object(&self, class: &str) -> Result<(), QuotaExceeded> {
        let (tenant, max_storage) = {
            let mut state = self.state.lock();
            let owner = state.owners.get(class).cloned();
            let quotas = owner
                .as_ref()
                .and_then(|tenant| state.tenants.get(tenant))
                .map(|entry| entry.quotas);
            if let (Some(tenant), Some(quotas)) = (&owner, quotas)
                && state.objects_of(tenant) >= quotas.max_objects
            {
                return Err(QuotaExceeded {
                    tenant: tenant.clone(),
                    quota: Quota::MaxObjects,
                    limit: quotas.max_objects,
                });
            }
            // Counted before the storage check, so two objects made at
            // once cannot both take the last place.
            *state.objects.entry(class.to_string()).or_default() += 1;
            match (owner, quotas) {
                (Some(tenant), Some(quotas)) => (tenant, quotas.max_storage_bytes),
                _ => return Ok(()),
            }
        };
        // Summed afresh: making an object costs a few `fsync`s anyway.
        let Some(used) = self.sum_storage(&tenant) else {
            return Ok(());
        };
        if used >= max_storage {
            self.object_removed(class);
            return Err(QuotaExceeded {
                tenant,
                quota: Quota::MaxStorageBytes,
                limit: max_storage,
            });
        }
        Ok(())
    }

    /// The most an object of `class` holding `own_bytes` now may grow to
    /// for its tenant's `max_storage_bytes`: what the tenant's other
    /// objects leave, and never less than what it holds (so that it can
    /// still delete and rewrite). `None` for the operator's classes. The
    /// actor applies it when it opens the database, on a guest thread.
    /// `own_bytes` is asked for only for a tenant's class.
    pub fn storage_allowance(&self, class: &str, own_bytes: impl FnOnce() -> u64) -> Option<u64> {
        let (tenant, max_storage) = {
            let state = self.state.lock();
            let tenant = state.owners.get(class)?.clone();
            let max_storage = state.tenants.get(&tenant)?.quotas.max_storage_bytes;
            (tenant, max_storage)
        };
        let own_bytes = own_bytes();
        let others = self.storage_used(&tenant)?.saturating_sub(own_bytes);
        Some(max_storage.saturating_sub(others).max(own_bytes))
    }

    /// The sum of `tenant`'s objects' last measured sizes, at most
    /// [`STORAGE_TOTAL_TTL`] old; `None` if the catalog cannot say.
    fn storage_used(&self, tenant: &str) -> Option<u64> {
        if let Some((bytes, at)) = self.storage.lock().get(tenant)
            && at.elapsed() < STORAGE_TOTAL_TTL
        {
            return Some(*bytes);
        }
        self.sum_storage(tenant)
    }

    /// [`storage_used`](Self::storage_used) read from the catalog now.
    fn sum_storage(&self, tenant: &str) -> Option<u64> {
        match self.store.storage_of(tenant) {
            Ok(bytes) => {
                self.storage
                    .lock()
                    .insert(tenant.to_string(), (bytes, Instant::now()));
                Some(bytes)
            }
            Err(error) => {
                tracing::warn!(%error, tenant, "cannot read the tenant's storage");
                None
            }
        }
    }

    /// An object of `class` was deleted.
    pub fn object_removed(&self, class: &str) {
        if let Some(count) = self.state.lock().objects.get_mut(class) {
            *count = count.saturating_sub(1);
        }
    }

    /// Gives `class` to `tenant` whoever had it (the config says so).
    fn give(&self, class: &str, tenant: &str) -> Result<(), TenantError> {
        let mut state = self.state.lock();
        if state.owners.get(class).map(String::as_str) == Some(tenant) {
            return Ok(());
        }
        self.store.set_owner(class, tenant, now_ms())?;
        state.owners.insert(class.to_string(), tenant.to_string());
        Ok(())
    }
}

/// Stored tenants as held in memory (one with a damaged digest left out).
fn entries(rows: Vec<TenantRow>) -> BTreeMap<String, Entry> {
    let mut tenants = BTreeMap::new();
    for row in rows {
        let Some(digest) = token::parse_hex(&row.token_hash) else {
            tracing::error!(tenant = row.name, "the stored token digest is damaged");
            continue;
        };
        let entry = Entry {
            digest,
            quotas: row.quotas,
            created_at: row.created_at,
        };
        tenants.insert(row.name, entry);
    }
    tenants
}

fn not_yours(class: &str) -> TenantError {
    TenantError::Forbidden(format!(
        "class {class} is not yours to deploy: another tenant or the operator deployed it; choose another name"
    ))
}

fn check_new_class(state: &State, tenant: &str) -> Result<(), TenantError> {
    let Some(entry) = state.tenants.get(tenant) else {
        return Err(TenantError::NoSuchTenant(tenant.to_string()));
    };
    let owned = state
        .owners
        .values()
        .filter(|owner| *owner == tenant)
        .count() as u64;
    if owned >= entry.quotas.max_classes {
        return Err(TenantError::Quota(QuotaExceeded {
            tenant: tenant.to_string(),
            quota: Quota::MaxClasses,
            limit: entry.quotas.max_classes,
        }));
    }
    Ok(())
}

/// Whether a bearer token is shaped as a tenant's: such tokens are
/// podhost's credentials, kept from objects like the others.
pub fn is_token(token: &str) -> bool {
    token.starts_with(token::PREFIX)
}

/// Tenant names appear in URLs and logs: lower-case letters, digits, `-`
/// and `_`, starting with a letter or digit, at most 64 bytes.
pub fn validate_name(name: &str) -> Result<(), TenantError> {
    let valid = !name.is_empty()
        && name.len() <= MAX_NAME_BYTES
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_')
        && name.as_bytes()[0].is_ascii_alphanumeric();
    if valid {
        Ok(())
    } else {
        Err(TenantError::Invalid(format!(
            "invalid tenant name {name:?}: use lower-case letters, digits, '-' and '_' (at most {MAX_NAME_BYTES}), starting with a letter or digit"
        )))
    }
}

#[cfg(test)]
mod tests;
