//! `migrate --maintenance`: each tenant is in maintenance while it is migrated (and
//! backed up), so its requests are answered 503 rather than racing the change. A run
//! that dies leaves its tenants in maintenance; [`Fleet::recover_left_maintenance`]
//! ends it once no run holds the fleet lock.

use owner::maintenance::{Holder, maintenance_held_by};
use owner::tenants::Tenant;
use uuid::Uuid;

use super::Fleet;
use super::run::FLEET_LOCK;
use crate::Result;
use crate::provisioning::maintenance::{release_for, take_for};
use crate::services::owner_db;

impl Fleet {
    /// Puts `tenant` in maintenance for its migration (under an operator's, if one
    /// holds it); refused while another operation (a restore) holds it.
    pub(super) async fn enter_maintenance(&self, tenant: &Tenant) -> Result<()> {
        let mut conn = self.owner.conn().await?;
        let tx = owner_db::begin(&mut conn).await?;
        take_for(&tx, tenant, Holder::Migration, false).await?;
        owner_db::commit(tx).await?;
        self.events.changed(tenant.id).await;
        Ok(())
    }

    /// Ends the maintenance [`Fleet::enter_maintenance`] took. A failure is logged: the
    /// recovery pass ends it later.
    pub(super) async fn leave_maintenance(&self, id: Uuid) {
        let released = async {
            let conn = self.owner.conn().await?;
            release_for(&**conn, id, Holder::Migration).await
        }
        .await;
        if let Err(e) = released {
            tracing::warn!(tenant_id = %id, error = %e, "could not end a migration's maintenance; the recovery pass will");
        }
        self.events.changed(id).await;
    }

    /// Ends the maintenance of tenants left in it by a run that died: only when no run
    /// is live (the fleet lock is free), since a live run ends its own. How many.
    pub async fn recover_left_maintenance(&self) -> Result<usize> {
        let left = {
            let conn = self.owner.conn().await?;
            maintenance_held_by(&**conn, Holder::Migration).await?
        };
        if left.is_empty() {
            return Ok(0);
        }
        let lock = self.owner.lock_session().await?;
        let free: bool = lock.query_one(FLEET_LOCK, &[]).await?.get(0);
        if !free {
            return Ok(0);
        }
        let mut ended = 0;
        for id in left {
            if release_for(&lock, id, Holder::Migration).await? {
                ended += 1;
            }
            self.events.changed(id).await;
        }
        tracing::warn!(
            tenants = ended,
            "ended the maintenance a stopped migration run left"
        );
        // Dropping the session releases the fleet lock.
        drop(lock);
        Ok(ended)
    }
}

impl Fleet {
    /// Runs [`Fleet::recover_left_maintenance`] until cancelled: at once, then every
    /// `interval`.
    pub async fn run_recovery(
        self,
        interval: std::time::Duration,
        cancel: tokio_util::sync::CancellationToken,
    ) {
        loop {
            tokio::select! {
                _ = cancel.cancelled() => return,
                result = self.recover_left_maintenance() => {
                    if let Err(e) = result {
                        tracing::warn!(error = %e, "could not look for maintenance left by migration runs");
                    }
                }
            }
            tokio::select! {
                _ = cancel.cancelled() => return,
                _ = tokio::time::sleep(interval) => {}
            }
        }
    }
}
