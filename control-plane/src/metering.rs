//! Metering: every `CP_METERING_INTERVAL_SECS`, one row per tenant in `tenant_usage`
//! with its database size, storage tree size, active users and the requests the gateway
//! served it since the previous sample.
//!
//! - Database sizes of the whole fleet come from one query on the admin connection.
//! - Users are counted over one short-lived connection per tenant as its runtime role,
//!   never through a pool: visiting every tenant must not fill the pool cache or hold
//!   connections of the gateway's budget. At most `CP_METERING_CONCURRENCY` tenants are
//!   visited at once, each within [`TENANT_TIMEOUT`].
//! - A tenant that does not answer still gets its row, with NULL for what could not be
//!   measured, and the sample goes on. Request counts are taken from the gateway at the
//!   start of a sample and handed back if the rows cannot be written, so a request is
//!   counted in exactly one row.
//! - Active and suspended tenants are sampled (both hold a database and files); any
//!   other tenant with counted requests gets a row with the requests only.
//! - With several replicas, only the one holding the metering lock samples; every
//!   replica adds its request counts to `tenant_request_counts`, and the sampler takes
//!   them all in the transaction that writes the rows, so each request is counted once.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::Utc;
use futures::StreamExt;
use owner::tenants::{Tenant, TenantFilter, TenantStatus};
use owner::usage::UsageSample;
use serde::Serialize;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use crate::gateway::Gateway;
use crate::pg::connect;
use crate::services::{OwnerDb, TenantAccess, TenantRole};
use crate::{Error, Result};

/// Held (on a session of its own) by the replica taking a sample.
const METERING_LOCK: &str = "SELECT pg_try_advisory_lock(hashtextextended('cp-metering', 0))";

/// Longest a sample waits for one tenant's figures.
pub const TENANT_TIMEOUT: Duration = Duration::from_secs(5);

/// What one sample did.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct MeteringReport {
    /// Rows written.
    pub sampled: usize,
    /// Tenants with at least one figure that could not be measured (their rows carry
    /// NULL there).
    pub failed: usize,
    /// Requests recorded in this sample.
    pub requests: u64,
}

pub struct Metering {
    /// Daily roll-ups older than this are dropped (`CP_USAGE_RETENTION_DAYS`).
    retention_days: i32,
    owner: OwnerDb,
    access: Arc<TenantAccess>,
    storage: storage::Storage,
    gateway: Arc<Gateway>,
    concurrency: usize,
    tenant_timeout: Duration,
    /// One sample at a time: the background job and an operator's "sample now" would
    /// otherwise visit every tenant twice over.
    running: tokio::sync::Mutex<()>,
}

/// What was measured of one tenant.
struct Figures {
    storage_bytes: Option<i64>,
    users: Option<i32>,
}

impl Metering {
    pub fn new(
        owner: OwnerDb,
        access: Arc<TenantAccess>,
        storage: storage::Storage,
        gateway: Arc<Gateway>,
        concurrency: usize,
    ) -> Self {
        Self {
            owner,
            access,
            storage,
            gateway,
            concurrency: concurrency.max(1),
            tenant_timeout: TENANT_TIMEOUT,
            running: tokio::sync::Mutex::new(()),
            retention_days: crate::config::DEFAULT_USAGE_RETENTION_DAYS,
        }
    }

    /// Daily usage roll-ups older than this many days are dropped.
    pub fn with_retention_days(mut self, days: i32) -> Self {
        self.retention_days = days;
        self
    }

    /// Samples every tenant once and writes the rows. Fails only when the owner database
    /// cannot be read or written; a tenant's own failure is a NULL in its row.
    pub async fn sample_once(&self) -> Result<MeteringReport> {
        let _one_at_a_time = self.running.lock().await;
        let started = Instant::now();
        let result = self.sample().await;
        metrics::histogram!("metering_duration_seconds").record(started.elapsed().as_secs_f64());
        match &result {
            Ok(report) => {
                metrics::counter!("metering_runs_total", "outcome" => "ok").increment(1);
                metrics::counter!("metering_samples_total").increment(report.sampled as u64);
                metrics::counter!("metering_failures_total").increment(report.failed as u64);
                metrics::gauge!("metering_last_success_timestamp_seconds")
                    .set(Utc::now().timestamp() as f64);
            }
            Err(_) => {
                metrics::counter!("metering_runs_total", "outcome" => "error").increment(1);
            }
        }
        result
    }

    async fn sample(&self) -> Result<MeteringReport> {
        // One replica samples; the others only hand over their request counts.
        let leader = self.owner.lock_session().await?;
        let sampler: bool = leader
            .query_one(METERING_LOCK, &[])
            .await
            .map_err(owner::Error::from)?
            .get(0);
        if !sampler {
            let requests = self.hand_over_requests().await?;
            return Ok(MeteringReport {
                requests,
                ..MeteringReport::default()
            });
        }
        let sampled_at = Utc::now();
        let tenants = {
            let conn = self.owner.conn().await?;
            let mut tenants = Vec::new();
            for status in [TenantStatus::Active, TenantStatus::Suspended] {
                let filter = TenantFilter {
                    status: Some(status),
                    include_deleted: false,
                    limit: i64::MAX,
                    offset: 0,
                };
                tenants.extend(owner::tenants::tenant_list(&**conn, &filter).await?);
            }
            tenants
        };
        let database_bytes = self.database_sizes(&tenants).await;
        let figures: HashMap<Uuid, Figures> = futures::stream::iter(tenants.iter().cloned())
            .map(|t| async move { (t.id, self.figures(&t).await) })
            .buffer_unordered(self.concurrency)
            .collect()
            .await;

        // Taken last, so requests served while the tenants were visited are in this
        // sample rather than waiting a whole interval; with every other replica's, in
        // the transaction that writes the rows.
        let own = self.gateway.take_request_counts();
        let mut conn = self.owner.conn().await?;
        let tx = crate::services::owner_db::begin(&mut conn).await?;
        let counts = match async {
            owner::usage::request_counts_add(&tx, &own).await?;
            owner::usage::request_counts_take(&tx).await
        }
        .await
        {
            Ok(counts) => counts,
            Err(e) => {
                self.gateway.restore_request_counts(own);
                return Err(e.into());
            }
        };
        let mut report = MeteringReport::default();
        let mut samples = Vec::with_capacity(tenants.len());
        for t in &tenants {
            let db = database_bytes.get(&t.db_name).copied();
            let f = figures.get(&t.id);
            let storage_bytes = f.and_then(|f| f.storage_bytes);
            let users = f.and_then(|f| f.users);
            if db.is_none() || storage_bytes.is_none() || users.is_none() {
                report.failed += 1;
            }
            samples.push(UsageSample {
                tenant_id: t.id,
                sampled_at,
                database_bytes: db,
                storage_bytes,
                users,
                requests: counts.get(&t.id).copied().unwrap_or(0) as i64,
            });
        }
        let visited: std::collections::HashSet<Uuid> = tenants.iter().map(|t| t.id).collect();
        samples.extend(
            counts
                .iter()
                .filter(|(id, _)| !visited.contains(id))
                .map(|(id, n)| requests_only(*id, *n, sampled_at)),
        );
        report.requests = counts.values().sum();
        let written = async {
            let written = owner::usage::usage_insert(&tx, &samples).await?;
            let flipped = owner::usage::database_quota_refresh(&tx, None).await?;
            crate::services::owner_db::commit(tx).await?;
            for id in &flipped {
                tracing::info!(tenant_id = %id, "database quota state changed");
                self.gateway.forget(Some(*id)).await;
            }
            Ok::<_, Error>(written)
        }
        .await;
        if written.is_ok() {
            // Still the leader: keep the history small. A failure here costs nothing but
            // a later roll-up.
            match self.roll_up().await {
                Ok(r) if r != owner::usage::RollUp::default() => {
                    tracing::info!(
                        samples_rolled = r.samples_rolled,
                        hours_rolled = r.hours_rolled,
                        days_dropped = r.days_dropped,
                        "usage history rolled up"
                    );
                }
                Ok(_) => {}
                Err(e) => tracing::warn!(error = %e, "usage roll-up failed"),
            }
        }
        drop(leader);
        match written {
            Ok(written) => {
                report.sampled = written as usize;
                Ok(report)
            }
            Err(e) => {
                // The others' counts went back with the rollback; this replica's too.
                self.gateway.restore_request_counts(own);
                Err(e)
            }
        }
    }

    /// Adds this replica's request counts to those waiting for the sampler. How many.
    async fn hand_over_requests(&self) -> Result<u64> {
        let counts = self.gateway.take_request_counts();
        if counts.is_empty() {
            return Ok(0);
        }
        let added = async {
            let conn = self.owner.conn().await?;
            owner::usage::request_counts_add(&**conn, &counts).await?;
            Ok::<_, Error>(())
        }
        .await;
        match added {
            Ok(()) => Ok(counts.values().sum()),
            Err(e) => {
                self.gateway.restore_request_counts(counts);
                Err(e)
            }
        }
    }

    /// `db_name -> bytes` for all these tenants, in one query per database server; a
    /// server that cannot be asked leaves its tenants' sizes unknown.
    async fn database_sizes(&self, tenants: &[Tenant]) -> HashMap<String, i64> {
        let mut by_server: HashMap<&str, Vec<&str>> = HashMap::new();
        for t in tenants {
            by_server
                .entry(t.server_id.as_str())
                .or_default()
                .push(t.db_name.as_str());
        }
        let mut sizes = HashMap::new();
        for (server, names) in by_server {
            let result = async {
                let admin = connect(&self.access.servers().endpoint(server).await?).await?;
                let rows = tokio::time::timeout(
                    self.tenant_timeout,
                    admin.query(
                        "SELECT datname, pg_database_size(oid) FROM pg_database WHERE datname = ANY($1)",
                        &[&names],
                    ),
                )
                .await
                .map_err(|_| Error::Internal("timed out".into()))??;
                Ok::<_, Error>(
                    rows.iter()
                        .map(|r| (r.get::<_, String>(0), r.get::<_, i64>(1)))
                        .collect::<Vec<_>>(),
                )
            }
            .await;
            match result {
                Ok(found) => sizes.extend(found),
                Err(e) => {
                    tracing::warn!(error = %e, server, "metering: could not read database sizes")
                }
            }
        }
        sizes
    }

    /// Storage and users of one tenant, each measured on its own so one failing does
    /// not lose the other.
    async fn figures(&self, tenant: &Tenant) -> Figures {
        let storage = async {
            let tree = self.storage.tenant(&tenant.slug)?;
            let walk = tokio::task::spawn_blocking(move || tree.size_bytes());
            match tokio::time::timeout(self.tenant_timeout, walk).await {
                Err(_) => Err(Error::Internal("timed out walking the storage tree".into())),
                Ok(Err(join)) => Err(Error::Internal(format!("storage walk failed: {join}"))),
                Ok(Ok(size)) => Ok(i64::try_from(size?).unwrap_or(i64::MAX)),
            }
        };
        let users = async {
            let count = async {
                let client = self.access.connect(tenant, TenantRole::Runtime).await?;
                Ok::<_, Error>(tenant::users::user_count(&client).await?)
            };
            match tokio::time::timeout(self.tenant_timeout, count).await {
                Err(_) => Err(Error::Internal("timed out".into())),
                Ok(result) => result.map(|n| i32::try_from(n).unwrap_or(i32::MAX)),
            }
        };
        let (storage, users) = tokio::join!(storage, users);
        let storage_bytes = storage
            .inspect_err(|e| {
                tracing::warn!(tenant_id = %tenant.id, slug = %tenant.slug, error = %e, "metering: storage size unknown");
            })
            .ok();
        let users = users
            .inspect_err(|e| {
                tracing::warn!(tenant_id = %tenant.id, slug = %tenant.slug, error = %e, "metering: user count unknown");
            })
            .ok();
        Figures {
            storage_bytes,
            users,
        }
    }

    /// Hands the request counts over (no tenant is visited): for shutdown, so the
    /// requests since the last sample are in the next one, whichever replica takes it.
    async fn roll_up(&self) -> Result<owner::usage::RollUp> {
        let mut conn = self.owner.conn().await?;
        let tx = crate::services::owner_db::begin(&mut conn).await?;
        let done = owner::usage::usage_roll_up(&tx, self.retention_days).await?;
        crate::services::owner_db::commit(tx).await?;
        Ok(done)
    }

    pub async fn record_requests(&self) -> Result<u64> {
        let _one_at_a_time = self.running.lock().await;
        self.hand_over_requests().await
    }

    /// Samples every `interval` until cancelled (the first sample one interval after the
    /// start), then records the request counts gathered since the last one.
    pub async fn run(self: Arc<Self>, interval: Duration, cancel: CancellationToken) {
        loop {
            tokio::select! {
                _ = cancel.cancelled() => break,
                _ = tokio::time::sleep(interval) => {}
            }
            match self.sample_once().await {
                Ok(report) => tracing::debug!(?report, "metering sample written"),
                Err(e) => {
                    tracing::warn!(error = %e, "metering sample failed; request counts kept for the next one")
                }
            }
        }
        if let Err(e) = self.record_requests().await {
            tracing::warn!(error = %e, "could not record the last request counts");
        }
    }
}

fn requests_only(tenant_id: Uuid, requests: u64, at: chrono::DateTime<Utc>) -> UsageSample {
    UsageSample {
        tenant_id,
        sampled_at: at,
        database_bytes: None,
        storage_bytes: None,
        users: None,
        requests: i64::try_from(requests).unwrap_or(i64::MAX),
    }
}
