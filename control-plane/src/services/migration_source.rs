//! The tenant migration set every view of this process uses: the built-in migrations,
//! plus the set fleet runs recorded in the owner database, plus this process's `--dir`
//! (`CP_TENANT_MIGRATIONS_DIR`), if any. A real run records its set, so a `migrate --dir`
//! changes what status, `--verify`, the dashboard and provisioning say in every process,
//! each of which re-reads the record when the change feed announces it. A run records
//! its set once it has passed the canaries and upgraded every template.

use std::path::PathBuf;
use std::sync::{Arc, RwLock};

use futures::future::BoxFuture;
use owner::tenant_migrations::{self as recorded, RecordedMigration};
use tenant::migrations::{SetEntry, Source};
use tokio_postgres::GenericClient;
use uuid::Uuid;

use crate::services::{Change, Listener, OwnerDb};
use crate::{Error, Result};

pub struct MigrationSource {
    owner: OwnerDb,
    dir: Option<PathBuf>,
    current: RwLock<Arc<Source>>,
}

impl MigrationSource {
    /// Reads the recorded set; a `dir` that conflicts with it is refused.
    pub async fn load(owner: OwnerDb, dir: Option<PathBuf>) -> Result<Self> {
        let source = read(&owner, dir.as_ref()).await?;
        Ok(Self {
            owner,
            dir,
            current: RwLock::new(Arc::new(source)),
        })
    }

    /// The set as last read.
    pub fn current(&self) -> Arc<Source> {
        Arc::clone(&self.current.read().unwrap_or_else(|p| p.into_inner()))
    }

    /// Reads the recorded set again.
    pub async fn refresh(&self) -> Result<Arc<Source>> {
        let source = Arc::new(read(&self.owner, self.dir.as_ref()).await?);
        *self.current.write().unwrap_or_else(|p| p.into_inner()) = Arc::clone(&source);
        Ok(source)
    }

    /// The set as recorded now, for pages that must not lag the change feed; if the
    /// record cannot be read, the set as last read.
    pub async fn fresh(&self) -> Arc<Source> {
        match self.refresh().await {
            Ok(source) => source,
            Err(e) => {
                tracing::warn!(error = %e, "could not re-read the recorded tenant migrations");
                self.current()
            }
        }
    }

    /// Records `set` for run `run_id` (which holds the fleet lock); returns the versions
    /// added to the record. The feed then tells every process.
    pub async fn record(
        client: &impl GenericClient,
        set: &Source,
        run_id: Uuid,
    ) -> Result<Vec<i32>> {
        let set: Vec<RecordedMigration> = set
            .entries()
            .into_iter()
            .map(|e| RecordedMigration {
                version: e.version,
                name: e.name,
                checksum: e.checksum,
                sql: e.sql,
            })
            .collect();
        Ok(recorded::record_set(client, &set, run_id).await?)
    }
}

/// Built-in + `dir` + recorded; a recorded migration is never changed, so a `dir` (or a
/// build) with another version of one is refused.
async fn read(owner: &OwnerDb, dir: Option<&PathBuf>) -> Result<Source> {
    let set = {
        let conn = owner.conn().await?;
        recorded::recorded_set(&**conn).await?
    };
    let mut source = Source::embedded();
    if let Some(dir) = dir {
        source = source.with_dir(dir)?;
    }
    let entries: Vec<SetEntry> = set
        .into_iter()
        .map(|r| SetEntry {
            version: r.version,
            name: r.name,
            checksum: r.checksum,
            sql: r.sql,
        })
        .collect();
    source.with_recorded(&entries).map_err(|e| {
        Error::Conflict(
            "migration_set_conflict",
            format!(
                "{e}. The owner database records the tenant migrations fleet runs applied \
                 (`migrate status` lists them), and a recorded migration never changes: \
                 give a --dir that agrees with that record (a fix goes in a new version), \
                 or none"
            ),
        )
    })
}

impl Listener for MigrationSource {
    fn forget(&self, change: Change) -> BoxFuture<'_, ()> {
        Box::pin(async move {
            if matches!(change, Change::Migrations | Change::Everything)
                && let Err(e) = self.refresh().await
            {
                tracing::warn!(error = %e, "could not read the recorded tenant migrations");
            }
        })
    }
}
