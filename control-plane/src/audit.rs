//! Who did what, for the owner database's audit log: every operator action and every
//! tenant lifecycle step is recorded through [`record`], inside the transaction that
//! made the change, so the log and the change agree.

use tokio_postgres::GenericClient;

use crate::Result;

/// Who asked for an action.
#[derive(Debug, Clone)]
pub struct Actor {
    /// `operator:<email>`, `cli`, `system:provisioner`...
    pub label: String,
    /// The client address, when the action came over HTTP.
    pub ip: Option<String>,
}

impl Actor {
    pub fn cli() -> Self {
        Self::system("cli")
    }

    /// An actor inside the control plane itself (no address).
    pub fn system(label: &str) -> Self {
        Self {
            label: label.into(),
            ip: None,
        }
    }
}

/// What an action was done to: `("tenant", id)`, `("plan", code)`...
pub struct Target<'a>(pub &'a str, pub &'a str);

/// Appends one entry to the audit log.
pub async fn record(
    client: &impl GenericClient,
    actor: &Actor,
    action: &str,
    Target(target_type, target_id): Target<'_>,
    details: serde_json::Value,
) -> Result<()> {
    owner::audit::audit_insert(
        client,
        &owner::audit::AuditEntry {
            actor: &actor.label,
            action,
            target_type,
            target_id,
            details,
            ip: actor.ip.as_deref(),
        },
    )
    .await?;
    Ok(())
}
