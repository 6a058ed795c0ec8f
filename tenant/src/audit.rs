//! `audit_log` in the tenant's own database: what happened to the tenant's accounts
//! (sign-ins, failed and throttled ones included, password changes), with the client's
//! address. Sign-in throttling counts from it, so it holds across restarts and processes.

use chrono::{DateTime, Utc};
use tokio_postgres::GenericClient;
use uuid::Uuid;

pub struct AuditEntry<'a> {
    /// The user who acted, when known.
    pub actor_id: Option<Uuid>,
    pub action: &'a str,
    pub target_type: &'a str,
    pub target_id: &'a str,
    pub details: serde_json::Value,
    pub ip: Option<&'a str>,
}

/// Appends an entry; its id.
pub async fn audit_insert(
    client: &impl GenericClient,
    entry: &AuditEntry<'_>,
) -> Result<i64, tokio_postgres::Error> {
    Ok(client
        .query_one(
            "INSERT INTO audit_log (actor_id, action, target_type, target_id, details, ip) \
             VALUES ($1, $2, $3, $4, $5, $6) RETURNING id",
            &[
                &entry.actor_id,
                &entry.action,
                &entry.target_type,
                &entry.target_id,
                &entry.details,
                &entry.ip,
            ],
        )
        .await?
        .get(0))
}

/// Settles an entry written before its outcome was known (a sign-in recorded as failed
/// until the password is checked): its action, and the user now known to be the actor.
pub async fn audit_settle(
    client: &impl GenericClient,
    id: i64,
    action: &str,
    actor_id: Option<Uuid>,
) -> Result<(), tokio_postgres::Error> {
    client
        .execute(
            "UPDATE audit_log SET action = $2, actor_id = coalesce($3, actor_id) WHERE id = $1",
            &[&id, &action, &actor_id],
        )
        .await?;
    Ok(())
}

/// Which entries [`audit_nth_newest`] looks at: `action` for the account `target_id`
/// since `since_account`, and from the address `ip` since `since_ip`.
pub struct NthNewest<'a> {
    pub action: &'a str,
    pub target_id: &'a str,
    pub since_account: DateTime<Utc>,
    pub account_nth: i64,
    pub ip: Option<&'a str>,
    pub since_ip: DateTime<Utc>,
    pub ip_nth: i64,
}

/// The time of the `account_nth` newest of the account's entries and of the `ip_nth`
/// newest of the address's; `None` where there are fewer. (With n failures allowed in a
/// window, the limit is reached while the nth newest failure is inside it.)
pub async fn audit_nth_newest(
    client: &impl GenericClient,
    q: &NthNewest<'_>,
) -> Result<(Option<DateTime<Utc>>, Option<DateTime<Utc>>), tokio_postgres::Error> {
    let row = client
        .query_one(
            "SELECT \
               (SELECT at FROM audit_log WHERE action = $1 AND target_type = 'user' \
                  AND target_id = $2 AND at > $3 ORDER BY at DESC OFFSET $4::bigint - 1 LIMIT 1), \
               (SELECT at FROM audit_log WHERE action = $1 AND $5::text IS NOT NULL \
                  AND ip = $5 AND at > $6 ORDER BY at DESC OFFSET $7::bigint - 1 LIMIT 1)",
            &[
                &q.action,
                &q.target_id,
                &q.since_account,
                &q.account_nth,
                &q.ip,
                &q.since_ip,
                &q.ip_nth,
            ],
        )
        .await?;
    Ok((row.get(0), row.get(1)))
}
