//! Rotating a tenant's role passwords online (`tenants rotate-credentials`).
//!
//! Crash-safe in three steps, each repeatable: the new passwords are sealed into the
//! tenant's row beside the current ones; both roles are given them (one transaction on
//! the server); then they become the current ones. A crash between leaves the rotation
//! in the row, and the next rotation of that tenant or the reconciler finishes it with
//! the same passwords.
//!
//! No request fails meanwhile: sessions already open keep working (PostgreSQL checks a
//! password only at login), and a pool whose login is refused tries the row's other
//! password and then reads the row again (see `gateway::runtimes`), so even a process
//! that never heard of the rotation picks up the new password at its next connection.

use serde_json::json;
use uuid::Uuid;

use owner::tenants::{Tenant, TenantStatus};

use super::Provisioner;
use crate::audit::{self, Actor, Target};
use crate::services::TenantRole;
use crate::{Error, Result};

/// A rotation untouched this long was left by a crash; younger ones may still be running.
pub const LEFT_AFTER_SECS: f64 = 60.0;

impl Provisioner {
    /// Gives both roles of tenant `id` new random passwords (verifiers of the configured
    /// rounds), online; finishes a rotation in flight instead if there is one. Audited.
    pub async fn rotate_credentials(&self, id: Uuid, actor: &Actor) -> Result<Tenant> {
        let tenant = {
            let conn = self.owner.conn().await?;
            owner::tenants::tenant_fetch(&**conn, id).await?
        };
        if !matches!(
            tenant.status,
            TenantStatus::Active | TenantStatus::Suspended
        ) {
            return Err(Error::WrongState {
                id,
                status: tenant.status.as_str(),
            });
        }
        let mut tenant = tenant;
        // A rewrap between reading the row and recording the rotation refuses the
        // record (the passwords were sealed under the key it replaced): seal again.
        for _ in 0..3 {
            if tenant.rotation.is_some() {
                break;
            }
            let sealed = self.access.seal_new_passwords(&tenant)?;
            let conn = self.owner.conn().await?;
            tenant = owner::tenants::tenant_rotation_begin(
                &**conn,
                id,
                sealed.key_version,
                tenant.data_key_enc.as_deref(),
                &sealed.owner,
                &sealed.runtime,
            )
            .await?;
            if !matches!(
                tenant.status,
                TenantStatus::Active | TenantStatus::Suspended
            ) {
                break;
            }
        }
        if tenant.rotation.is_none() {
            // Its status changed between the two reads.
            return Err(Error::WrongState {
                id,
                status: tenant.status.as_str(),
            });
        }
        self.finish_rotation(tenant, actor).await
    }

    /// Finishes the rotations a crash left behind; returns how many.
    pub async fn finish_left_rotations(&self) -> Result<usize> {
        let left = {
            let conn = self.owner.conn().await?;
            owner::tenants::tenant_list_rotations_left(&**conn, LEFT_AFTER_SECS).await?
        };
        let mut finished = 0;
        for tenant in left {
            let id = tenant.id;
            match self
                .finish_rotation(tenant, &Actor::system("reconciler"))
                .await
            {
                Ok(_) => finished += 1,
                Err(e) => {
                    tracing::warn!(tenant_id = %id, error = %e, "could not finish a credential rotation")
                }
            }
        }
        Ok(finished)
    }

    /// Gives the roles the rotation's passwords, then makes those the current ones.
    async fn finish_rotation(&self, tenant: Tenant, actor: &Actor) -> Result<Tenant> {
        let id = tenant.id;
        let (Some(owner_password), Some(runtime_password)) = (
            self.access.rotation_password(&tenant, TenantRole::Owner)?,
            self.access
                .rotation_password(&tenant, TenantRole::Runtime)?,
        ) else {
            return Ok(tenant);
        };
        self.servers
            .of(&tenant)
            .await?
            .set_role_passwords(
                &tenant.owner_role,
                &tenant.runtime_role,
                &owner_password,
                &runtime_password,
            )
            .await?;
        let key_version = tenant.rotation.as_ref().map(|r| r.key_version);
        let tenant = {
            let mut conn = self.owner.conn().await?;
            let tx = crate::services::owner_db::begin(&mut conn).await?;
            if owner::tenants::tenant_rotation_finish(&tx, id).await? {
                audit::record(
                    &tx,
                    actor,
                    "tenant.rotate_credentials",
                    Target("tenant", &id.to_string()),
                    json!({ "slug": tenant.slug, "key_version": key_version }),
                )
                .await?;
            }
            let tenant = owner::tenants::tenant_fetch(&tx, id).await?;
            crate::services::owner_db::commit(tx).await?;
            tenant
        };
        // This process's pools log in with the new password from now on; others find it
        // when their next login is refused.
        self.events.changed(id).await;
        tracing::info!(tenant_id = %id, "tenant credentials rotated");
        Ok(tenant)
    }
}
