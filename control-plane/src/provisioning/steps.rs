//! The steps of the state machine: which comes next ([`next`], a pure function) and
//! what each does ([`Provisioner::run_step`]). Every effect is idempotent: it looks at
//! what exists first, so it may run again after a crash at any point.

use owner::tenants::{Step, Tenant, TenantStatus};
use serde_json::json;

use super::Provisioner;
use super::cluster::Sessions;
use super::names::TenantNames;
use crate::services::TenantRole;
use crate::{Error, Result};

/// The step a tenant in `status` that last finished `done` takes next, and the status
/// it is in while taking it; `None` when the tenant is where it is going.
pub fn next(status: TenantStatus, done: Step) -> Option<(TenantStatus, Step)> {
    use Step as S;
    use TenantStatus as T;
    let step = match (status, done) {
        (T::Provisioning, S::RowInserted) => S::RolesCreated,
        (T::Provisioning, S::RolesCreated) => S::DatabaseCreated,
        (T::Provisioning, S::DatabaseCreated) => S::SchemaMigrated,
        (T::Provisioning, S::SchemaMigrated) => S::StorageCreated,
        (T::Provisioning, _) => S::Ready,
        (T::Deleting, S::DatabaseDropped) => S::RolesDropped,
        (T::Deleting, S::RolesDropped) => S::StorageRemoved,
        (T::Deleting, S::StorageRemoved) => S::Removed,
        (T::Deleting, _) => S::DatabaseDropped,
        (T::Active | T::Suspended | T::Deleted, _) => return None,
    };
    Some((status, step))
}

impl Provisioner {
    /// Performs one step's effect; returns details for the audit entry.
    pub(super) async fn run_step(
        &self,
        sessions: &mut Sessions,
        tenant: &Tenant,
        step: Step,
    ) -> Result<serde_json::Value> {
        let names = TenantNames {
            database: tenant.db_name.clone(),
            owner_role: tenant.owner_role.clone(),
            runtime_role: tenant.runtime_role.clone(),
        };
        let started = std::time::Instant::now();
        let mut details = json!({});
        let cluster = self.servers.of(tenant).await?;
        match step {
            Step::RolesCreated => {
                let owner_pw = self.access.password(tenant, TenantRole::Owner)?;
                let runtime_pw = self.access.password(tenant, TenantRole::Runtime)?;
                cluster
                    .ensure_roles(sessions, tenant.id, &names, &owner_pw, &runtime_pw)
                    .await?;
                details = json!({ "roles": [names.owner_role, names.runtime_role] });
            }
            Step::DatabaseCreated => {
                cluster
                    .ensure_database(sessions, tenant.id, &names, &self.faults)
                    .await?;
                details = json!({ "database": names.database });
            }
            Step::SchemaMigrated => {
                let version = cluster.migrate(sessions, &names).await?;
                if let Some(admin) = &tenant.initial_admin {
                    cluster.ensure_first_admin(sessions, &names, admin).await?;
                }
                let conn = self.owner.conn().await?;
                if let Some(admin) = &tenant.initial_admin {
                    // Findable by "which tenants am I in" (see `owner::finder`).
                    owner::finder::email_set(&**conn, tenant.id, &admin.email, true).await?;
                }
                owner::tenants::tenant_set_schema_version(&**conn, tenant.id, version).await?;
                details = json!({ "schema_version": version });
            }
            Step::StorageCreated => {
                let tree = self.storage.tenant(&tenant.slug)?;
                tokio::task::spawn_blocking(move || tree.create())
                    .await
                    .map_err(|e| Error::Internal(format!("storage task failed: {e}")))??;
            }
            Step::DatabaseDropped => cluster.drop_database(sessions, tenant.id, &names).await?,
            Step::RolesDropped => {
                // Dropping the database again first is a no-op normally, and finishes the
                // job if a lost lock let a create land after the database was dropped.
                cluster.drop_database(sessions, tenant.id, &names).await?;
                cluster.drop_roles(sessions, tenant.id, &names).await?
            }
            Step::StorageRemoved => {
                let tree = self.storage.tenant(&tenant.slug)?;
                tokio::task::spawn_blocking(move || tree.remove())
                    .await
                    .map_err(|e| Error::Internal(format!("storage task failed: {e}")))??;
            }
            Step::Ready | Step::Removed | Step::RowInserted | Step::DeleteRequested => {}
        }
        if let Some(map) = details.as_object_mut() {
            map.insert("ms".into(), json!(started.elapsed().as_millis() as u64));
        }
        Ok(details)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Follows `next` from a starting point to the end.
    fn walk(status: TenantStatus, from: Step) -> Vec<Step> {
        let mut done = from;
        let mut steps = Vec::new();
        while let Some((s, step)) = next(status, done) {
            assert_eq!(s, status, "a step keeps the status it runs in");
            steps.push(step);
            if matches!(step, Step::Ready | Step::Removed) {
                break;
            }
            done = step;
        }
        steps
    }

    #[test]
    fn creation_runs_every_step_in_order() {
        assert_eq!(
            walk(TenantStatus::Provisioning, Step::RowInserted),
            [
                Step::RolesCreated,
                Step::DatabaseCreated,
                Step::SchemaMigrated,
                Step::StorageCreated,
                Step::Ready
            ]
        );
    }

    #[test]
    fn creation_resumes_after_the_last_recorded_step() {
        assert_eq!(
            walk(TenantStatus::Provisioning, Step::DatabaseCreated),
            [Step::SchemaMigrated, Step::StorageCreated, Step::Ready]
        );
        assert_eq!(
            walk(TenantStatus::Provisioning, Step::StorageCreated),
            [Step::Ready]
        );
    }

    #[test]
    fn deletion_starts_with_the_database_whatever_creation_reached() {
        for reached in [
            Step::RowInserted,
            Step::RolesCreated,
            Step::DatabaseCreated,
            Step::SchemaMigrated,
            Step::StorageCreated,
            Step::Ready,
            Step::DeleteRequested,
        ] {
            assert_eq!(
                walk(TenantStatus::Deleting, reached),
                [
                    Step::DatabaseDropped,
                    Step::RolesDropped,
                    Step::StorageRemoved,
                    Step::Removed
                ],
                "deleting after {reached:?}"
            );
        }
    }

    #[test]
    fn settled_tenants_take_no_step() {
        for status in [
            TenantStatus::Active,
            TenantStatus::Suspended,
            TenantStatus::Deleted,
        ] {
            assert_eq!(next(status, Step::Ready), None);
            assert_eq!(next(status, Step::Removed), None);
        }
    }
}
