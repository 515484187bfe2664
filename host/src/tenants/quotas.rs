//! What one tenant may hold: the `[tenants]` defaults, a tenant's own
//! quotas, and the error that names the quota a request would exceed.

use serde::{Deserialize, Serialize};

/// A tenant's quotas. `[tenants]` in the config gives the defaults; a
/// tenant made with its own values keeps them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct Quotas {
    /// Classes the tenant may own.
    pub max_classes: u64,
    /// Objects of its classes that may exist at once.
    pub max_objects: u64,
    /// Total size of its objects' databases, as last measured.
    pub max_storage_bytes: u64,
}

impl Default for Quotas {
    fn default() -> Self {
        Quotas {
            max_classes: 10,
            max_objects: 10_000,
            max_storage_bytes: 10 << 30,
        }
    }
}

impl Quotas {
    pub fn validate(&self, whose: &str) -> Result<(), String> {
        if self.max_classes == 0 || self.max_objects == 0 || self.max_storage_bytes == 0 {
            return Err(format!(
                "{whose}: max_classes, max_objects and max_storage_bytes must be at least 1"
            ));
        }
        if i64::try_from(self.max_storage_bytes).is_err()
            || i64::try_from(self.max_objects).is_err()
            || i64::try_from(self.max_classes).is_err()
        {
            return Err(format!("{whose}: quotas must be below 2^63"));
        }
        Ok(())
    }
}

/// Which quota.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Quota {
    MaxClasses,
    MaxObjects,
    MaxStorageBytes,
}

impl Quota {
    /// The quota's name, as in the config and the API.
    pub fn as_str(self) -> &'static str {
        match self {
            Quota::MaxClasses => "max_classes",
            Quota::MaxObjects => "max_objects",
            Quota::MaxStorageBytes => "max_storage_bytes",
        }
    }

    fn unit(self) -> &'static str {
        match self {
            Quota::MaxClasses => "classes",
            Quota::MaxObjects => "objects",
            Quota::MaxStorageBytes => "bytes",
        }
    }
}

/// A request that would take a tenant past one of its quotas.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "tenant {tenant} has reached its {} quota of {limit} {}; delete some or ask the operator for a higher quota",
    quota.as_str(),
    quota.unit()
)]
pub struct QuotaExceeded {
    pub tenant: String,
    pub quota: Quota,
    pub limit: u64,
}

/// What a tenant holds now, beside its quotas.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Usage {
    pub classes: u64,
    pub objects: u64,
    /// The sum of its objects' database sizes as the catalog last saw them
    /// (measured when an object hibernates).
    pub storage_bytes: u64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_error_names_the_quota() {
        let error = QuotaExceeded {
            tenant: "acme".into(),
            quota: Quota::MaxObjects,
            limit: 2,
        };
        let message = error.to_string();
        assert!(
            message.contains("max_objects quota of 2 objects"),
            "{message}"
        );
        assert!(Quotas::default().validate("[tenants]").is_ok());
        let zero = Quotas {
            max_objects: 0,
            ..Quotas::default()
        };
        assert!(zero.validate("[tenants]").is_err());
    }
}
