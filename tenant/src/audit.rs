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

/// Appends the outcome of an entry written before its outcome was known (a sign-in
/// attempt recorded before its password is checked), pointing back at it with
/// `details.attempt`. The first entry is never changed: the log is append-only for the
/// runtime role that serves requests.
pub async fn audit_outcome(
    client: &impl GenericClient,
    attempt_id: i64,
    action: &str,
    actor_id: Option<Uuid>,
) -> Result<(), tokio_postgres::Error> {
    client
        .execute(
            "INSERT INTO audit_log (actor_id, action, target_type, target_id, details, ip) \
             SELECT coalesce($3, actor_id), $2, target_type, target_id, \
                    jsonb_build_object('attempt', id), ip \
             FROM audit_log WHERE id = $1",
            &[&attempt_id, &action, &actor_id],
        )
        .await?;
    Ok(())
}

/// Which entries [`audit_nth_newest`] looks at: `action` for the account `target_id`
/// since `since_account`, and from the address `ip` since `since_ip`, leaving out those
/// with an outcome (see [`audit_outcome`]) among `excused`.
pub struct NthNewest<'a> {
    pub action: &'a str,
    pub excused: &'a [&'a str],
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
            "WITH counted AS ( \
               SELECT a.at, a.target_type, a.target_id, a.ip FROM audit_log a \
               WHERE a.action = $1 AND a.at > least($3::timestamptz, $6::timestamptz) \
                 AND NOT EXISTS (SELECT 1 FROM audit_log o WHERE o.action = ANY($8) \
                   AND o.at >= a.at AND o.details ->> 'attempt' = a.id::text)) \
             SELECT \
               (SELECT at FROM counted WHERE target_type = 'user' \
                  AND target_id = $2 AND at > $3 ORDER BY at DESC OFFSET $4::bigint - 1 LIMIT 1), \
               (SELECT at FROM counted WHERE $5::text IS NOT NULL \
                  AND ip = $5 AND at > $6 ORDER BY at DESC OFFSET $7::bigint - 1 LIMIT 1)",
            &[
                &q.action,
                &q.target_id,
                &q.since_account,
                &q.account_nth,
                &q.ip,
                &q.since_ip,
                &q.ip_nth,
                &q.excused,
            ],
        )
        .await?;
    Ok((row.get(0), row.get(1)))
}
