//! "Which tenants am I in?": the email index (`tenant_user_emails`) and the one-time codes
//! (`find_tenant_codes`) behind `POST /api/public/find-tenants`.

use chrono::{DateTime, Utc};
use serde::Serialize;
use tokio_postgres::GenericClient;
use uuid::Uuid;

use crate::Result;

/// Records that tenant `tenant` has (`present`) or no longer has a user with `email`.
pub async fn email_set(
    client: &impl GenericClient,
    tenant: Uuid,
    email: &str,
    present: bool,
) -> Result<()> {
    let email = email.trim().to_lowercase();
    if present {
        client
            .execute(
                "INSERT INTO tenant_user_emails (email, tenant_id) VALUES ($1, $2) \
                 ON CONFLICT DO NOTHING",
                &[&email, &tenant],
            )
            .await?;
    } else {
        client
            .execute(
                "DELETE FROM tenant_user_emails WHERE email = $1 AND tenant_id = $2",
                &[&email, &tenant],
            )
            .await?;
    }
    Ok(())
}

/// Replaces everything recorded for `tenant` with `emails` (a rebuild).
pub async fn emails_replace(
    client: &impl GenericClient,
    tenant: Uuid,
    emails: &[String],
) -> Result<()> {
    let emails: Vec<String> = emails.iter().map(|e| e.trim().to_lowercase()).collect();
    client
        .execute(
            "DELETE FROM tenant_user_emails WHERE tenant_id = $1 AND NOT (email = ANY($2))",
            &[&tenant, &emails],
        )
        .await?;
    client
        .execute(
            "INSERT INTO tenant_user_emails (email, tenant_id) \
             SELECT unnest($2::text[]), $1 ON CONFLICT DO NOTHING",
            &[&tenant, &emails],
        )
        .await?;
    Ok(())
}

/// A tenant someone can sign in to, as the answer lists it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FoundTenant {
    pub slug: String,
    pub name: String,
    /// Its primary domain.
    pub domain: String,
}

/// The active tenants with a user of `email`, by name.
pub async fn tenants_of(client: &impl GenericClient, email: &str) -> Result<Vec<FoundTenant>> {
    let rows = client
        .query(
            "SELECT t.slug, t.name, d.domain FROM tenant_user_emails e \
             JOIN tenants t ON t.id = e.tenant_id AND t.status = 'active' \
             JOIN tenant_domains d ON d.tenant_id = t.id AND d.is_primary \
             WHERE e.email = $1 ORDER BY t.name, t.slug",
            &[&email.trim().to_lowercase()],
        )
        .await?;
    Ok(rows
        .iter()
        .map(|r| FoundTenant {
            slug: r.get(0),
            name: r.get(1),
            domain: r.get(2),
        })
        .collect())
}

/// Codes made for `email` since `since` (the per-address limit).
pub async fn codes_since(
    client: &impl GenericClient,
    email: &str,
    since: DateTime<Utc>,
) -> Result<i64> {
    Ok(client
        .query_one(
            "SELECT count(*) FROM find_tenant_codes WHERE email = $1 AND created_at >= $2",
            &[&email, &since],
        )
        .await?
        .get(0))
}

pub async fn code_insert(
    client: &impl GenericClient,
    email: &str,
    code_hash: &[u8],
    expires_at: DateTime<Utc>,
) -> Result<()> {
    client
        .execute(
            "INSERT INTO find_tenant_codes (id, email, code_hash, expires_at) VALUES ($1, $2, $3, $4)",
            &[&Uuid::now_v7(), &email, &code_hash, &expires_at],
        )
        .await?;
    // Old codes are of no use to anyone.
    client
        .execute(
            "DELETE FROM find_tenant_codes WHERE expires_at < now() - interval '1 day'",
            &[],
        )
        .await?;
    Ok(())
}

/// Spends `code_hash` against the newest live code of `email`: true if it matches (the
/// code is used up), false otherwise (one attempt counted; a code takes `max_attempts`).
pub async fn code_redeem(
    client: &impl GenericClient,
    email: &str,
    code_hash: &[u8],
    max_attempts: i32,
) -> Result<bool> {
    let row = client
        .query_opt(
            "UPDATE find_tenant_codes SET attempts = attempts + 1, \
                 used_at = CASE WHEN code_hash = $2 THEN now() END \
             WHERE id = (SELECT id FROM find_tenant_codes WHERE email = $1 AND used_at IS NULL \
                         AND expires_at > now() AND attempts < $3 \
                         ORDER BY created_at DESC LIMIT 1 FOR UPDATE) \
             RETURNING used_at IS NOT NULL",
            &[&email, &code_hash, &max_attempts],
        )
        .await?;
    Ok(row.is_some_and(|r| r.get(0)))
}
