//! `tenant_usage`: what each tenant used, one row per tenant per metering sample.
//!
//! A figure that could not be measured (the tenant's database did not answer, say) is
//! NULL, never zero, so a chart or a total can tell "nothing" from "unknown".

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use serde::Serialize;
use tokio_postgres::{GenericClient, Row};
use uuid::Uuid;

use crate::Result;

/// One sample of one tenant.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct UsageSample {
    pub tenant_id: Uuid,
    pub sampled_at: DateTime<Utc>,
    pub database_bytes: Option<i64>,
    pub storage_bytes: Option<i64>,
    /// Active users in the tenant's database.
    pub users: Option<i32>,
    /// Requests served since the previous sample.
    pub requests: i64,
}

/// The fleet's usage: the latest known figures of every active tenant added up, and the
/// requests of the last 24 hours.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct UsageTotals {
    pub active_tenants: i64,
    pub database_bytes: i64,
    pub storage_bytes: i64,
    pub users: i64,
    pub requests_24h: i64,
}

const COLUMNS: &str = "tenant_id, sampled_at, database_bytes, storage_bytes, users, requests";

fn from_row(r: &Row) -> UsageSample {
    UsageSample {
        tenant_id: r.get(0),
        sampled_at: r.get(1),
        database_bytes: r.get(2),
        storage_bytes: r.get(3),
        users: r.get(4),
        requests: r.get(5),
    }
}

/// Writes a sample per tenant in one statement. Samples of tenants that have no row
/// (any more) are skipped rather than failing the others. Returns the rows written.
pub async fn usage_insert(client: &impl GenericClient, samples: &[UsageSample]) -> Result<u64> {
    if samples.is_empty() {
        return Ok(0);
    }
    let ids: Vec<Uuid> = samples.iter().map(|s| s.tenant_id).collect();
    let at: Vec<DateTime<Utc>> = samples.iter().map(|s| s.sampled_at).collect();
    let db: Vec<Option<i64>> = samples.iter().map(|s| s.database_bytes).collect();
    let st: Vec<Option<i64>> = samples.iter().map(|s| s.storage_bytes).collect();
    let users: Vec<Option<i32>> = samples.iter().map(|s| s.users).collect();
    let requests: Vec<i64> = samples.iter().map(|s| s.requests).collect();
    Ok(client
        .execute(
            "INSERT INTO tenant_usage (tenant_id, sampled_at, database_bytes, storage_bytes, users, requests) \
             SELECT s.id, s.at, s.db, s.st, s.users, s.requests \
             FROM unnest($1::uuid[], $2::timestamptz[], $3::bigint[], $4::bigint[], $5::integer[], $6::bigint[]) \
                  AS s(id, at, db, st, users, requests) \
             WHERE EXISTS (SELECT 1 FROM tenants t WHERE t.id = s.id)",
            &[&ids, &at, &db, &st, &users, &requests],
        )
        .await?)
}

/// The newest sample of each of these tenants (tenants never sampled are absent).
pub async fn usage_latest_per_tenant(
    client: &impl GenericClient,
    tenant_ids: &[Uuid],
) -> Result<HashMap<Uuid, UsageSample>> {
    let rows = client
        .query(
            &format!(
                "SELECT DISTINCT ON (tenant_id) {COLUMNS} FROM tenant_usage \
                 WHERE tenant_id = ANY($1) ORDER BY tenant_id, sampled_at DESC, id DESC"
            ),
            &[&tenant_ids],
        )
        .await?;
    Ok(rows
        .iter()
        .map(from_row)
        .map(|s| (s.tenant_id, s))
        .collect())
}

/// The last `limit` samples of a tenant, oldest first (ready to draw).
pub async fn usage_series(
    client: &impl GenericClient,
    tenant_id: Uuid,
    limit: i64,
) -> Result<Vec<UsageSample>> {
    let rows = client
        .query(
            &format!(
                "SELECT {COLUMNS} FROM (SELECT id, {COLUMNS} FROM tenant_usage WHERE tenant_id = $1 \
                 ORDER BY sampled_at DESC, id DESC LIMIT $2) s ORDER BY sampled_at, id"
            ),
            &[&tenant_id, &limit.max(0)],
        )
        .await?;
    Ok(rows.iter().map(from_row).collect())
}

/// Totals over the active tenants. Each figure is the tenant's latest *known* value, so
/// a tenant whose database missed the last sample still counts with what it had.
pub async fn usage_totals(client: &impl GenericClient) -> Result<UsageTotals> {
    let row = client
        .query_one(
            "SELECT count(*)::bigint, \
                    coalesce(sum(db.v), 0)::bigint, coalesce(sum(st.v), 0)::bigint, \
                    coalesce(sum(us.v), 0)::bigint, \
                    (SELECT coalesce(sum(requests), 0)::bigint FROM tenant_usage \
                      WHERE sampled_at > now() - interval '24 hours') \
             FROM tenants t \
             LEFT JOIN LATERAL (SELECT database_bytes AS v FROM tenant_usage u \
                 WHERE u.tenant_id = t.id AND u.database_bytes IS NOT NULL \
                 ORDER BY u.sampled_at DESC LIMIT 1) db ON true \
             LEFT JOIN LATERAL (SELECT storage_bytes AS v FROM tenant_usage u \
                 WHERE u.tenant_id = t.id AND u.storage_bytes IS NOT NULL \
                 ORDER BY u.sampled_at DESC LIMIT 1) st ON true \
             LEFT JOIN LATERAL (SELECT users AS v FROM tenant_usage u \
                 WHERE u.tenant_id = t.id AND u.users IS NOT NULL \
                 ORDER BY u.sampled_at DESC LIMIT 1) us ON true \
             WHERE t.status = 'active'",
            &[],
        )
        .await?;
    Ok(UsageTotals {
        active_tenants: row.get(0),
        database_bytes: row.get(1),
        storage_bytes: row.get(2),
        users: row.get(3),
        requests_24h: row.get(4),
    })
}

/// Adds a process's request counts to those waiting for the next sample.
pub async fn request_counts_add(
    client: &impl GenericClient,
    counts: &HashMap<Uuid, u64>,
) -> Result<()> {
    if counts.is_empty() {
        return Ok(());
    }
    let ids: Vec<Uuid> = counts.keys().copied().collect();
    let requests: Vec<i64> = counts
        .values()
        .map(|n| i64::try_from(*n).unwrap_or(i64::MAX))
        .collect();
    client
        .execute(
            "INSERT INTO tenant_request_counts (tenant_id, requests) \
             SELECT s.id, s.n FROM unnest($1::uuid[], $2::bigint[]) AS s(id, n) \
             WHERE EXISTS (SELECT 1 FROM tenants t WHERE t.id = s.id) \
             ON CONFLICT (tenant_id) DO UPDATE \
             SET requests = tenant_request_counts.requests + EXCLUDED.requests",
            &[&ids, &requests],
        )
        .await?;
    Ok(())
}

/// Takes (and clears) every waiting request count; in the transaction that writes them
/// into usage rows, so a failed write leaves them waiting.
pub async fn request_counts_take(client: &impl GenericClient) -> Result<HashMap<Uuid, u64>> {
    let rows = client
        .query(
            "DELETE FROM tenant_request_counts RETURNING tenant_id, requests",
            &[],
        )
        .await?;
    Ok(rows
        .iter()
        .map(|r| {
            (
                r.get::<_, Uuid>(0),
                u64::try_from(r.get::<_, i64>(1)).unwrap_or(0),
            )
        })
        .collect())
}

/// Sets `tenants.database_over_quota` from each living tenant's latest sampled database
/// size and its plan's `max_database_bytes` (all tenants, or only `tenant`): after a
/// sample, and when a plan or a tenant's plan changes. Only flags that change are
/// written, so the change feed announces exactly the tenants whose answer changes. How
/// changed.
pub async fn database_quota_refresh(
    client: &impl GenericClient,
    tenant: Option<Uuid>,
) -> Result<Vec<Uuid>> {
    Ok(client
        .query(
            "UPDATE tenants t SET database_over_quota = q.over \
             FROM (SELECT t2.id, COALESCE(u.database_bytes > p.max_database_bytes, false) AS over \
                   FROM tenants t2 \
                   JOIN subscription_plans p ON p.code = t2.plan_code \
                   LEFT JOIN LATERAL ( \
                       SELECT database_bytes FROM tenant_usage \
                       WHERE tenant_id = t2.id AND database_bytes IS NOT NULL \
                       ORDER BY sampled_at DESC LIMIT 1) u ON true \
                   WHERE t2.status NOT IN ('deleting', 'deleted') \
                     AND ($1::uuid IS NULL OR t2.id = $1)) q \
             WHERE t.id = q.id AND t.database_over_quota IS DISTINCT FROM q.over \
             RETURNING t.id",
            &[&tenant],
        )
        .await?
        .iter()
        .map(|r| r.get(0))
        .collect())
}
