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
    /// A CLI command, named with the OS user and host that ran it (`cli:alice@ops-1`).
    pub fn cli() -> Self {
        Self::system(&cli_label())
    }

    /// An actor inside the control plane itself (no address).
    pub fn system(label: &str) -> Self {
        Self {
            label: label.into(),
            ip: None,
        }
    }
}

/// `cli:<user>@<host>`: who ran a command, as far as the machine says.
pub fn cli_label() -> String {
    let user = std::env::var("USER")
        .or_else(|_| std::env::var("LOGNAME"))
        .unwrap_or_else(|_| "unknown".into());
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .ok()
        .filter(|h| !h.is_empty())
        .or_else(|| std::env::var("HOSTNAME").ok())
        .unwrap_or_else(|| "unknown".into());
    format!("cli:{user}@{host}")
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
