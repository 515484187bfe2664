//! What every route reaches: the runtime, and the accounts, which live here
//! rather than in the runtime so that the core never depends on them.

use std::sync::Arc;

use axum::extract::FromRef;
use futures_util::future::BoxFuture;

use super::ApiError;
use super::assets::Assets;
use crate::accounts::{Accounts, AuthError};
use crate::bindings::podhost::object::routing::{NewKey, RoutingError};
use crate::capabilities::{RoutingFuture, RoutingTable};
use crate::cluster::Cluster;
use crate::runtime::{ObjectReferences, Runtime, SharedRowsFollower};
use crate::storage::shared::RowChange;

/// The router's state.
#[derive(Clone)]
pub struct Gateway {
    runtime: Arc<Runtime>,
    accounts: Arc<Accounts>,
    /// Whether `/auth`, `/me` and `/orgs` are on.
    accounts_on: bool,
    /// The static files of `[assets]`, if any.
    assets: Option<Arc<Assets>>,
    /// This node's part in a cluster, if `[cluster]` is set.
    cluster: Option<Arc<Cluster>>,
}

impl Gateway {
    /// Opens the accounts beside the runtime's catalog, and has the runtime
    /// tell them when an object is deleted for good.
    pub fn open(runtime: Arc<Runtime>) -> anyhow::Result<Self> {
        let config = runtime.config();
        let settings = runtime.accounts_settings().cloned();
        let accounts_on = settings.is_some();
        let accounts = Arc::new(Accounts::open(
            &config.data_dir,
            config.catalog_durability(),
            settings.unwrap_or_default(),
            runtime.catalog().writes().clone(),
        )?);
        let assets = config
            .assets
            .as_ref()
            .map(Assets::open)
            .transpose()?
            .map(Arc::new);
        runtime.refer_objects(Arc::new(Routes(Arc::clone(&accounts))));
        runtime.route_objects(Arc::new(Routes(Arc::clone(&accounts))));
        runtime.follow_shared_rows(Arc::new(FollowedAccounts(Arc::clone(&accounts))));
        Ok(Gateway {
            runtime,
            accounts,
            accounts_on,
            assets,
            cluster: None,
        })
    }

    /// Routes objects' requests through `cluster`: served here only when
    /// this node owns the object.
    pub fn with_cluster(mut self, cluster: Arc<Cluster>) -> Self {
        self.cluster = Some(cluster);
        self
    }

    /// The cluster, if this node is in one.
    pub fn cluster(&self) -> Option<&Arc<Cluster>> {
        self.cluster.as_ref()
    }

    /// The static files, if `[assets]` names a directory.
    pub fn assets(&self) -> Option<&Arc<Assets>> {
        self.assets.as_ref()
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

/// The accounts' memory (revoked sessions, cached roles, keys and
/// handles, open sockets' grants), following rows other nodes wrote.
struct FollowedAccounts(Arc<Accounts>);

impl SharedRowsFollower for FollowedAccounts {
    fn applied(&self, changes: &[RowChange]) {
        self.0.shared_rows_applied(changes);
    }
}

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

/// Objects' own keys and handles (`routing`), kept in the accounts.
impl RoutingTable for Routes {
    fn create_key(&self, class: String, name: String, label: String) -> RoutingFuture<NewKey> {
        let accounts = Arc::clone(&self.0);
        Box::pin(async move {
            let made = accounts
                .create_key(&class, &name, &label)
                .await
                .map_err(routing_error)?;
            Ok(NewKey {
                id: made.info.id,
                key: made.key,
            })
        })
    }

    fn revoke_key(&self, class: String, name: String, id: String) -> RoutingFuture<bool> {
        let accounts = Arc::clone(&self.0);
        Box::pin(async move {
            accounts
                .revoke_key_of(&class, &name, &id)
                .await
                .map_err(routing_error)
        })
    }

    fn set_handle(
        &self,
        class: String,
        handle: String,
        name: String,
        replace: bool,
    ) -> RoutingFuture<String> {
        let accounts = Arc::clone(&self.0);
        Box::pin(async move {
            if replace {
                accounts.set_handle(&class, &handle, &name).await
            } else {
                match accounts.claim_handle(&class, &handle, &name).await {
                    Ok(Some(handle)) => Ok(handle),
                    Ok(None) => return Err(RoutingError::Taken),
                    Err(error) => Err(error),
                }
            }
            .map_err(routing_error)
        })
    }

    fn remove_handle(&self, class: String, handle: String) -> RoutingFuture<bool> {
        let accounts = Arc::clone(&self.0);
        Box::pin(async move {
            accounts
                .delete_handle(&class, &handle)
                .await
                .map_err(routing_error)
        })
    }
}

/// A bad argument says what was wrong; anything else is the accounts'
/// database failing, logged here and summed up for the guest.
fn routing_error(error: AuthError) -> RoutingError {
    match error {
        AuthError::Invalid(message) => RoutingError::Invalid(message),
        other => {
            tracing::error!(error = %other, "an object's key or handle change failed");
            RoutingError::Unavailable("the accounts could not record the change".into())
        }
    }
}
