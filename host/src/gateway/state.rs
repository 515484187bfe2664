//! What every route reaches: the runtime, and the accounts, which live here
//! rather than in the runtime so that the core never depends on them.

use std::sync::Arc;

use axum::extract::FromRef;
use futures_util::future::BoxFuture;

use super::ApiError;
use crate::accounts::Accounts;
use crate::runtime::{ObjectReferences, Runtime};

/// The router's state.
#[derive(Clone)]
pub struct Gateway {
    runtime: Arc<Runtime>,
    accounts: Arc<Accounts>,
    /// Whether `/auth`, `/me` and `/orgs` are on.
    accounts_on: bool,
}

impl Gateway {
    /// Opens the accounts beside the runtime's catalog, and has the runtime
    /// tell them when an object is deleted for good.
    pub fn open(runtime: Arc<Runtime>) -> anyhow::Result<Self> {
        let config = runtime.config();
        let settings = config.accounts();
        let accounts_on = settings.is_some();
        let accounts = Arc::new(Accounts::open(
            &config.data_dir,
            config.catalog_durability(),
            settings.unwrap_or_default(),
        )?);
        runtime.refer_objects(Arc::new(Routes(Arc::clone(&accounts))));
        Ok(Gateway {
            runtime,
            accounts,
            accounts_on,
        })
    }

    pub fn runtime(&self) -> &Arc<Runtime> {
        &self.runtime
    }

    /// The accounts, or an error saying they are off.
    pub fn accounts(&self) -> Result<&Accounts, ApiError> {
        self.accounts_on
            .then_some(&*self.accounts)
            .ok_or(ApiError::AccountsDisabled)
    }

    /// API keys and handles, which work with or without accounts.
    pub fn routes(&self) -> &Accounts {
        &self.accounts
    }
}

impl FromRef<Gateway> for Arc<Runtime> {
    fn from_ref(gateway: &Gateway) -> Self {
        Arc::clone(&gateway.runtime)
    }
}

/// The API keys and handles that name objects, forgotten with them.
struct Routes(Arc<Accounts>);

impl ObjectReferences for Routes {
    fn forget(&self, class: String, name: String) -> BoxFuture<'static, anyhow::Result<()>> {
        let accounts = Arc::clone(&self.0);
        Box::pin(async move {
            accounts
                .forget_object(&class, &name)
                .await
                .map_err(|error| {
                    anyhow::anyhow!("cannot forget the object's keys and handles: {error}")
                })
        })
    }
}
