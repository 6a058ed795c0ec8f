//! Maintenance mode: an operator's (`tenants maintenance SLUG on|off`, the owner API,
//! the tenant page), and the one operations take while they must not race the tenant's
//! requests (restores, `migrate --maintenance`). While it is on, the gateway answers the
//! tenant's requests 503 `tenant_maintenance` with Retry-After (writes only, when reads
//! are allowed). See `owner::maintenance` for who may take and clear it.

use serde_json::json;
use tokio_postgres::GenericClient;
use uuid::Uuid;

use owner::maintenance::{Holder, maintenance_amend, maintenance_release, maintenance_take};
use owner::tenants::{Tenant, TenantStatus};

use super::Provisioner;
use crate::audit::{self, Actor, Target};
use crate::services::owner_db;
use crate::{Error, Result};

/// Longest note an operator may leave on a maintenance.
pub const MAX_NOTE_CHARS: usize = 500;

/// For an operation about to change the tenant under it: takes the tenant's maintenance
/// for `by` unless an operator holds it (the operation then runs under theirs, and its
/// release leaves theirs in place). Another operation holding it is a conflict.
pub async fn take_for(
    client: &impl GenericClient,
    tenant: &Tenant,
    by: Holder,
    allow_reads: bool,
) -> Result<()> {
    // Locked until the caller's transaction ends, so the holder read is the one replaced.
    let current = owner::tenants::tenant_fetch_for_update(client, tenant.id).await?;
    match current.maintenance {
        None if maintenance_take(client, tenant.id, by, None, allow_reads).await? => Ok(()),
        // Taken between the read and the update (a caller outside a transaction).
        None => Err(Error::Conflict(
            "tenant_in_maintenance",
            format!("tenant {} entered maintenance meanwhile; retry", tenant.id),
        )),
        Some(m) if m.by == Holder::Operator => Ok(()),
        Some(m) => Err(busy(tenant.id, m.by)),
    }
}

/// Ends the maintenance `by` took with [`take_for`]; leaves anybody else's. Whether it
/// ended one.
pub async fn release_for(client: &impl GenericClient, id: Uuid, by: Holder) -> Result<bool> {
    Ok(maintenance_release(client, id, by).await?)
}

/// Refuses a change while an operation holds the tenant's maintenance (an operator's
/// maintenance does not stop lifecycle changes).
pub fn refuse_during_operation(tenant: &Tenant) -> Result<()> {
    match &tenant.maintenance {
        Some(m) if m.by != Holder::Operator => Err(busy(tenant.id, m.by)),
        _ => Ok(()),
    }
}

fn busy(id: Uuid, by: Holder) -> Error {
    Error::Conflict(
        "tenant_in_maintenance",
        format!(
            "tenant {id} is in maintenance for a {}; retry when it is over",
            by.as_str()
        ),
    )
}

/// A note as stored: trimmed, empty as none, bounded.
fn clean_note(note: Option<&str>) -> Result<Option<String>> {
    let note = note.map(str::trim).filter(|n| !n.is_empty());
    if let Some(n) = note {
        if n.chars().count() > MAX_NOTE_CHARS {
            return Err(Error::BadRequest(format!(
                "note: at most {MAX_NOTE_CHARS} characters"
            )));
        }
        if n.chars().any(char::is_control) {
            return Err(Error::BadRequest(
                "note: control characters are not allowed".into(),
            ));
        }
    }
    Ok(note.map(str::to_string))
}

impl Provisioner {
    /// Puts tenant `id` in an operator's maintenance, or changes the note and reads of
    /// the one it is in. Refused (409) while an operation holds it. Audited.
    pub async fn maintenance_on(
        &self,
        id: Uuid,
        note: Option<&str>,
        allow_reads: bool,
        actor: &Actor,
    ) -> Result<Tenant> {
        let note = clean_note(note)?;
        let mut conn = self.owner.conn().await?;
        let tx = owner_db::begin(&mut conn).await?;
        let current = owner::tenants::tenant_fetch_for_update(&tx, id).await?;
        if matches!(
            current.status,
            TenantStatus::Deleting | TenantStatus::Deleted
        ) {
            return Err(Error::WrongState {
                id,
                status: current.status.as_str(),
            });
        }
        refuse_during_operation(&current)?;
        let changed = if current.maintenance.is_some() {
            maintenance_amend(&tx, id, note.as_deref(), allow_reads).await?
        } else {
            maintenance_take(&tx, id, Holder::Operator, note.as_deref(), allow_reads).await?
        };
        if !changed {
            return Err(Error::Internal(format!(
                "tenant {id}: maintenance changed under a row lock"
            )));
        }
        audit::record(
            &tx,
            actor,
            "tenant.maintenance.on",
            Target("tenant", &id.to_string()),
            json!({ "slug": current.slug, "note": note, "allow_reads": allow_reads }),
        )
        .await?;
        let tenant = owner::tenants::tenant_fetch(&tx, id).await?;
        owner_db::commit(tx).await?;
        self.events.changed(id).await;
        tracing::info!(tenant_id = %id, allow_reads, "tenant put in maintenance");
        Ok(tenant)
    }

    /// Ends an operator's maintenance of tenant `id` (nothing to do if it is in none).
    /// Refused (409) while an operation holds it: that one ends with the operation.
    pub async fn maintenance_off(&self, id: Uuid, actor: &Actor) -> Result<Tenant> {
        let mut conn = self.owner.conn().await?;
        let tx = owner_db::begin(&mut conn).await?;
        let current = owner::tenants::tenant_fetch_for_update(&tx, id).await?;
        refuse_during_operation(&current)?;
        if current.maintenance.is_none() {
            return Ok(current);
        }
        maintenance_release(&tx, id, Holder::Operator).await?;
        audit::record(
            &tx,
            actor,
            "tenant.maintenance.off",
            Target("tenant", &id.to_string()),
            json!({ "slug": current.slug }),
        )
        .await?;
        let tenant = owner::tenants::tenant_fetch(&tx, id).await?;
        owner_db::commit(tx).await?;
        self.events.changed(id).await;
        tracing::info!(tenant_id = %id, "tenant out of maintenance");
        Ok(tenant)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn notes_are_trimmed_bounded_and_printable() {
        assert_eq!(clean_note(None).unwrap(), None);
        assert_eq!(clean_note(Some("  ")).unwrap(), None);
        assert_eq!(
            clean_note(Some(" disk swap ")).unwrap().as_deref(),
            Some("disk swap")
        );
        assert!(clean_note(Some(&"x".repeat(MAX_NOTE_CHARS + 1))).is_err());
        assert!(clean_note(Some("line\nbreak")).is_err());
    }
}
