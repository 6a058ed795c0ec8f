//! `tenant_usage`: what each tenant used, one row per tenant per metering sample, with
//! `tenant_usage_latest` (each tenant's latest known figures) kept by every insert and
//! `tenant_usage_rollups` (hourly, then daily) fed by [`usage_roll_up`].
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
        .query_one(
            "WITH s AS (SELECT * FROM unnest($1::uuid[], $2::timestamptz[], $3::bigint[], \
                          $4::bigint[], $5::integer[], $6::bigint[]) AS s(id, at, db, st, users, requests) \
                        WHERE EXISTS (SELECT 1 FROM tenants t WHERE t.id = s.id)), \
             raw AS (INSERT INTO tenant_usage (tenant_id, sampled_at, database_bytes, storage_bytes, users, requests) \
                     SELECT id, at, db, st, users, requests FROM s RETURNING 1), \
             _latest AS (INSERT INTO tenant_usage_latest AS l \
                          (tenant_id, sampled_at, database_bytes, storage_bytes, users, requests) \
                        SELECT id, at, db, st, users, requests FROM s \
                        ON CONFLICT (tenant_id) DO UPDATE SET sampled_at = EXCLUDED.sampled_at, \
                          database_bytes = coalesce(EXCLUDED.database_bytes, l.database_bytes), \
                          storage_bytes = coalesce(EXCLUDED.storage_bytes, l.storage_bytes), \
                          users = coalesce(EXCLUDED.users, l.users), \
                          requests = EXCLUDED.requests) \
             SELECT count(*) FROM raw",
            &[&ids, &at, &db, &st, &users, &requests],
        )
        .await?
        .get::<_, i64>(0) as u64)
}

/// The latest known figures of each of these tenants (tenants never sampled are absent).
pub async fn usage_latest_per_tenant(
    client: &impl GenericClient,
    tenant_ids: &[Uuid],
) -> Result<HashMap<Uuid, UsageSample>> {
    let rows = client
        .query(
            &format!("SELECT {COLUMNS} FROM tenant_usage_latest WHERE tenant_id = ANY($1)"),
            &[&tenant_ids],
        )
        .await?;
    Ok(rows
        .iter()
        .map(from_row)
        .map(|s| (s.tenant_id, s))
        .collect())
}

/// The last `limit` points of a tenant's history, oldest first (ready to draw): raw
/// samples, and before them the hourly and daily roll-ups (each at its bucket's start,
/// with the bucket's largest figures and its requests).
pub async fn usage_series(
    client: &impl GenericClient,
    tenant_id: Uuid,
    limit: i64,
) -> Result<Vec<UsageSample>> {
    let rows = client
        .query(
            &format!(
                "SELECT {COLUMNS} FROM ( \
                   SELECT {COLUMNS}, id AS tie FROM tenant_usage WHERE tenant_id = $1 \
                   UNION ALL \
                   SELECT tenant_id, bucket, database_bytes, storage_bytes, users, requests, 0 \
                   FROM tenant_usage_rollups WHERE tenant_id = $1 \
                   ORDER BY sampled_at DESC, tie DESC LIMIT $2) s ORDER BY sampled_at, tie"
            ),
            &[&tenant_id, &limit.max(0)],
        )
        .await?;
    Ok(rows.iter().map(from_row).collect())
}

/// Raw samples are kept this long before they are rolled up by hour...
pub const RAW_KEPT: &str = "48 hours";
/// ...and hourly roll-ups this long before they are rolled up by day.
pub const HOURLY_KEPT: &str = "30 days";

/// What one [`usage_roll_up`] did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct RollUp {
    pub samples_rolled: i64,
    pub hours_rolled: i64,
    pub days_dropped: i64,
}

/// Rolls raw samples older than [`RAW_KEPT`] into hourly rows and hourly rows older than
/// [`HOURLY_KEPT`] into daily rows (adding to a bucket already there), and drops daily
/// rows older than `retention_days`. Callers hold the metering lock.
pub async fn usage_roll_up(client: &impl GenericClient, retention_days: i32) -> Result<RollUp> {
    // `from` selects the rows to move; `at` is their time column and `samples` how many
    // samples each stands for. The bucket is the time truncated to `period`.
    let roll = |from: String, period: &str, at: &str, samples: &str| {
        format!(
            "WITH moved AS (DELETE FROM {from} RETURNING *), \
             _rolled AS (INSERT INTO tenant_usage_rollups AS r \
                       (tenant_id, period, bucket, samples, database_bytes, storage_bytes, users, requests) \
                     SELECT tenant_id, '{period}', date_trunc('{period}', {at}), {samples}, \
                            max(database_bytes), max(storage_bytes), max(users), sum(requests) \
                     FROM moved GROUP BY tenant_id, date_trunc('{period}', {at}) \
                     ON CONFLICT (tenant_id, period, bucket) DO UPDATE SET \
                       samples = r.samples + EXCLUDED.samples, \
                       database_bytes = greatest(r.database_bytes, EXCLUDED.database_bytes), \
                       storage_bytes = greatest(r.storage_bytes, EXCLUDED.storage_bytes), \
                       users = greatest(r.users, EXCLUDED.users), \
                       requests = r.requests + EXCLUDED.requests) \
             SELECT count(*) FROM moved"
        )
    };
    let samples_rolled: i64 = client
        .query_one(
            &roll(
                format!("tenant_usage WHERE sampled_at < now() - interval '{RAW_KEPT}'"),
                "hour",
                "sampled_at",
                "count(*)",
            ),
            &[],
        )
        .await?
        .get(0);
    let hours_rolled: i64 = client
        .query_one(
            &roll(
                format!(
                    "tenant_usage_rollups WHERE period = 'hour' AND bucket < now() - interval '{HOURLY_KEPT}'"
                ),
                "day",
                "bucket",
                "sum(samples)",
            ),
            &[],
        )
        .await?
        .get(0);
    let days_dropped = client
        .execute(
            "DELETE FROM tenant_usage_rollups WHERE period = 'day' \
             AND bucket < now() - make_interval(days => $1)",
            &[&retention_days],
        )
        .await? as i64;
    Ok(RollUp {
        samples_rolled,
        hours_rolled,
        days_dropped,
    })
}

/// Totals over the active tenants. Each figure is the tenant's latest *known* value, so
/// a tenant whose database missed the last sample still counts with what it had.
pub async fn usage_totals(client: &impl GenericClient) -> Result<UsageTotals> {
    let row = client
        .query_one(
            "SELECT count(*)::bigint, \
                    coalesce(sum(l.database_bytes), 0)::bigint, coalesce(sum(l.storage_bytes), 0)::bigint, \
                    coalesce(sum(l.users), 0)::bigint, \
                    (SELECT coalesce(sum(requests), 0)::bigint FROM tenant_usage \
                      WHERE sampled_at > now() - interval '24 hours') \
             FROM tenants t \
             LEFT JOIN tenant_usage_latest l ON l.tenant_id = t.id \
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
                   LEFT JOIN tenant_usage_latest u ON u.tenant_id = t2.id \
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
