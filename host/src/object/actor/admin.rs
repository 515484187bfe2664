//! The operator's requests, run by the actor between batches (on a guest
//! thread, like the object's SQL): they use the object's own connection,
//! so they never race its writes, and never make an instance, except an
//! import that must learn the class's migrations first.

use std::path::Path;

use super::Actor;
use crate::object::admin::{AdminError, AdminRequest, Inspection};
use crate::storage::catalog::CatalogUpdate;
use crate::storage::{Database, QueryFailure};

impl Actor {
    pub(super) async fn admin(&mut self, request: AdminRequest) {
        match request {
            AdminRequest::Inspect { timeout, reply } => {
                let _ = reply.send(self.inspect(timeout));
            }
            AdminRequest::Query {
                sql,
                params,
                limits,
                reply,
            } => {
                let result = self.with_database(|db| {
                    db.operator_query(&sql, &params, limits)
                        .map_err(AdminError::Query)
                });
                let _ = reply.send(result);
            }
            AdminRequest::Export { to, reply } => {
                let result = self.with_database(|db| {
                    db.back_up_to(&to).map_err(|error| {
                        AdminError::Internal(format!("the backup failed: {error}"))
                    })
                });
                let _ = reply.send(result);
            }
            AdminRequest::Import {
                from,
                migrations,
                reply,
            } => {
                let _ = reply.send(self.import(&from, migrations).await);
            }
        }
    }

    fn path(&self) -> std::path::PathBuf {
        self.runtime
            .data_dir()
            .object_database(self.object.class(), self.object.id())
    }

    fn not_found(&self) -> AdminError {
        AdminError::NotFound {
            class: self.object.class().to_string(),
            name: self.object.name().to_string(),
        }
    }

    /// Runs `f` on the object's database, opened for it (never created)
    /// and closed again if the object was hibernated.
    fn with_database<T>(
        &mut self,
        f: impl FnOnce(&mut Database) -> Result<T, AdminError>,
    ) -> Result<T, AdminError> {
        let opened = self.open_for_operator()?;
        let result = match self.state.database() {
            Some(db) => f(db),
            None => Err(self.not_found()),
        };
        if opened {
            // Not `close`: the catalog is told nothing, the object was not
            // active.
            drop(self.state.close());
        }
        result
    }

    /// Opens the database without an instance if it is closed; returns
    /// whether it did.
    fn open_for_operator(&mut self) -> Result<bool, AdminError> {
        if self.state.database().is_some() {
            return Ok(false);
        }
        let path = self.path();
        if !path.exists() {
            return Err(self.not_found());
        }
        let db = Database::open(&path, &self.class.settings().database()).map_err(|error| {
            tracing::error!("cannot open the database for the operator: {error:#}");
            AdminError::Internal("the object's database could not be opened".into())
        })?;
        self.state.opened(db);
        Ok(true)
    }

    fn inspect(&mut self, timeout: std::time::Duration) -> Result<Inspection, AdminError> {
        let live = self.state.is_live();
        let open = self.state.database().is_some();
        let contents = self.with_database(|db| {
            db.contents(timeout).map_err(|error| {
                AdminError::Query(QueryFailure::Failed(format!(
                    "cannot read the object's tables: {error}"
                )))
            })
        })?;
        let path = self.path();
        let size_bytes = [path.clone(), crate::storage::wal_path(&path)]
            .iter()
            .filter_map(|file| std::fs::metadata(file).ok())
            .map(|meta| meta.len())
            .sum();
        Ok(Inspection {
            live,
            open,
            last_active: open.then_some(self.last_active),
            size_bytes,
            contents,
        })
    }

    /// Replaces the database with the file at `from`: checks its
    /// migrations against the class's, empties the current write-ahead
    /// log into its file, closes it (dropping any instance), renames the
    /// new file into place and syncs the directory. A crash leaves the old
    /// database or the new one, whole.
    async fn import(&mut self, from: &Path, migrations: i64) -> Result<(), AdminError> {
        let declared = match self.class.known_migrations() {
            Some(known) => known.len(),
            None => {
                // Only an instance can tell the class's migrations.
                let watch = self.watch();
                if let Err(error) = self.activate(&watch).await {
                    tracing::warn!("activating to learn the migrations failed: {error}");
                }
                drop(watch);
                self.class
                    .known_migrations()
                    .ok_or_else(|| {
                        AdminError::Internal(
                            "the class's migrations could not be learnt from an instance".into(),
                        )
                    })?
                    .len()
            }
        };
        if migrations > declared as i64 {
            return Err(AdminError::ImportRefused(format!(
                "its schema is newer than the class's: it has had {migrations} migrations, the class declares {declared}"
            )));
        }
        let path = self.path();
        // The class's storage limit, within its tenant's quotas if it has
        // one (a new object must also fit the tenant's `max_objects`).
        let existed = path.exists();
        let settings = self.database_settings(&path)?;
        let size = std::fs::metadata(from).map_or(0, |file| file.len());
        if size > settings.max_storage_bytes {
            if !existed {
                self.runtime.tenants().object_removed(self.object.class());
            }
            return Err(AdminError::ImportRefused(format!(
                "it is {size} bytes, more than the object may hold ({} bytes)",
                settings.max_storage_bytes
            )));
        }
        let opened = if existed {
            self.open_for_operator()?
        } else {
            false
        };
        if let Some(db) = self.state.database()
            && let Err(error) = db.checkpoint()
        {
            if opened {
                drop(self.state.close());
            }
            return Err(AdminError::Internal(format!(
                "the object's write-ahead log could not be emptied: {error}"
            )));
        }
        drop(self.state.close());
        // The object's history no longer leads to its data: its next
        // commit starts a new generation with a snapshot.
        if let Some(replication) = self.runtime.replication() {
            replication.forget(self.object.id());
        }
        let data = self.runtime.data_dir();
        data.replace_database(self.object.class(), self.object.id(), from)
            .map_err(|error| {
                tracing::error!("import failed: {error:#}");
                AdminError::Internal(format!("the database could not be put in place: {error:#}"))
            })?;
        // Open the new database once: the alarm index learns its alarm,
        // the catalog its size.
        let db = Database::open(&path, &self.class.settings().database()).map_err(|error| {
            AdminError::Internal(format!("the imported database does not open: {error:#}"))
        })?;
        self.reconcile_alarm(&db);
        let size = db.size().unwrap_or(0);
        self.runtime
            .record(CatalogUpdate::Seen(self.sighting(Some(size))));
        drop(db);
        tracing::info!(size, "database imported");
        Ok(())
    }
}
