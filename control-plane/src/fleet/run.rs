//! One fleet migration run: start (lock, record, pick targets), then execute.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Instant;

use futures::StreamExt;
use owner::migration_runs::{self as runs, RunStatus, TenantRunStatus};
use owner::tenants::Tenant;
use serde::Serialize;
use serde_json::json;
use tokio_postgres::Client;
use tracing::Instrument;
use uuid::Uuid;

use super::{Canary, Fleet, FleetOptions, MAX_CONCURRENCY};
use crate::provisioning::TENANT_MIGRATION_LOCK;
use crate::services::{MigrationSource, TenantRole};
use crate::{Error, Result};

pub(super) const FLEET_LOCK: &str =
    "SELECT pg_try_advisory_lock(hashtextextended('cp-fleet-migration', 0))";

/// Live counts, reported after every tenant.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Progress {
    pub total: usize,
    pub done: usize,
    pub succeeded: usize,
    pub failed: usize,
    /// The tenant that just finished, and whether it succeeded.
    pub last: Option<(String, bool)>,
}

/// How a run ended.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct RunSummary {
    pub run_id: Uuid,
    pub status: RunStatus,
    pub target_version: i32,
    /// Tenants the run set out to migrate (or, in a dry run, to inspect).
    pub total: usize,
    /// Tenants migrated (0 in a dry run).
    pub succeeded: usize,
    /// In a dry run: tenants inspected, each with the migrations a real run would apply.
    pub would_apply: usize,
    /// Tenants that failed (in a dry run: that could not be inspected).
    pub failed: usize,
    /// Tenants never attempted because the run halted first.
    pub not_attempted: usize,
    /// Tenants already at the target version, skipped without a connection.
    pub up_to_date: usize,
    pub halt_reason: Option<String>,
    #[schema(value_type = u64)]
    pub elapsed_ms: u128,
}

/// Migrations a tenant had pending: `(version, name)`.
type Pending = Vec<(i32, String)>;

struct Target {
    tenant: Tenant,
    canary: bool,
}

/// A started run: it holds the fleet lock (unless a dry run) until it is executed or dropped.
pub struct FleetRun {
    /// Per-tenant records go through the owner database's relaxed pool (asynchronous
    /// commit): the tenant database's own migration history is the truth, so a record
    /// lost to a crash only makes the next run connect to that tenant, find nothing
    /// pending and record it again. Saves a WAL flush per tenant.
    fleet: Fleet,
    /// The migration set, as recorded when the run started.
    source: Arc<tenant::migrations::Source>,
    _lock: Option<Client>,
    run: runs::MigrationRun,
    options: FleetOptions,
    targets: Vec<Target>,
    up_to_date: usize,
}

enum Outcome {
    Succeeded,
    Failed,
    NotAttempted,
    Crashed,
}

impl FleetRun {
    /// Takes the fleet lock (refusing if another run holds it), marks runs of dead
    /// processes interrupted, picks the tenants still behind and records the run.
    pub async fn start(fleet: Fleet, options: FleetOptions, started_by: &str) -> Result<Self> {
        if !(1..=MAX_CONCURRENCY).contains(&options.concurrency) {
            return Err(Error::BadRequest(format!(
                "concurrency must be 1 to {MAX_CONCURRENCY}"
            )));
        }
        let lock = if options.dry_run {
            None
        } else {
            let lock = fleet.owner.lock_session().await?;
            let got: bool = lock.query_one(FLEET_LOCK, &[]).await?.get(0);
            if !got {
                let conn = fleet.owner.conn().await?;
                let running = runs::run_list(&**conn, 20)
                    .await?
                    .into_iter()
                    .find(|r| r.status == RunStatus::Running);
                return Err(Error::FleetBusy(running.map(|r| r.id)));
            }
            Some(lock)
        };
        let conn = fleet.owner.conn().await?;
        if lock.is_some() {
            let interrupted = runs::run_mark_interrupted(&**conn).await?;
            for id in interrupted {
                tracing::warn!(run_id = %id, "marked a run left running by a stopped process as interrupted");
            }
        }
        // The set as recorded now (under the fleet lock for a real run), fixed for the run.
        let source = fleet.source.refresh().await?;
        let target_version = source.latest_version();
        let tenants = owner::tenants::tenant_list_for_migration(
            &**conn,
            &options.statuses,
            &options.tenants,
            options.plan.as_deref(),
        )
        .await?;
        let unknown: Vec<&String> = options
            .tenants
            .iter()
            .filter(|s| !tenants.iter().any(|t| &t.slug == *s))
            .collect();
        if !unknown.is_empty() {
            return Err(Error::BadRequest(format!(
                "no such tenant (or not in the selected statuses): {unknown:?}"
            )));
        }
        if let Canary::Slugs(slugs) = &options.canary
            && let Some(missing) = slugs
                .iter()
                .find(|s| !tenants.iter().any(|t| &t.slug == *s))
        {
            return Err(Error::BadRequest(format!(
                "canary {missing:?} is not among the run's tenants"
            )));
        }
        let total_selected = tenants.len();
        let behind: Vec<Tenant> = tenants
            .into_iter()
            .filter(|t| t.schema_version.unwrap_or(0) < target_version)
            .collect();
        let up_to_date = total_selected - behind.len();
        let mut canaries_left = match &options.canary {
            Canary::Count(n) => *n,
            _ => 0,
        };
        let targets: Vec<Target> = behind
            .into_iter()
            .map(|tenant| {
                let canary = match &options.canary {
                    Canary::None => false,
                    Canary::Count(_) => {
                        let c = canaries_left > 0;
                        canaries_left = canaries_left.saturating_sub(1);
                        c
                    }
                    Canary::Slugs(slugs) => slugs.contains(&tenant.slug),
                };
                Target { tenant, canary }
            })
            .collect();
        let mut recorded = serde_json::to_value(&options).unwrap_or_else(|_| json!({}));
        recorded["up_to_date"] = json!(up_to_date);
        let run = runs::run_insert(
            &**conn,
            Uuid::now_v7(),
            if options.dry_run {
                RunStatus::DryRun
            } else {
                RunStatus::Running
            },
            source.origin(),
            target_version,
            &recorded,
            started_by,
        )
        .await?;
        let rows: Vec<(Uuid, String, &'static str, Option<i32>)> = targets
            .iter()
            .map(|t| {
                (
                    t.tenant.id,
                    t.tenant.slug.clone(),
                    if t.canary { "canary" } else { "main" },
                    t.tenant.schema_version,
                )
            })
            .collect();
        runs::run_tenants_insert(&**conn, run.id, &rows).await?;
        // Every start is audited here, whoever started it (API, dashboard or CLI).
        crate::audit::record(
            &**conn,
            &crate::audit::Actor::system(started_by),
            if options.dry_run {
                "migration.dry_run"
            } else {
                "migration.start"
            },
            crate::audit::Target("migration_run", &run.id.to_string()),
            serde_json::json!({
                "target_version": run.target_version,
                "options": run.options,
            }),
        )
        .await?;
        tracing::info!(run_id = %run.id, targets = targets.len(), up_to_date, target_version, dry_run = options.dry_run, "fleet migration started");
        Ok(Self {
            fleet,
            source,
            _lock: lock,
            run,
            options,
            targets,
            up_to_date,
        })
    }

    pub fn run(&self) -> &runs::MigrationRun {
        &self.run
    }

    /// The migration set the run brings tenants to.
    pub fn source(&self) -> &Arc<tenant::migrations::Source> {
        &self.source
    }

    pub fn target_count(&self) -> usize {
        self.targets.len()
    }

    /// Migrates (or, in a dry run, inspects) the targets: canaries first, then the rest.
    pub async fn execute(self, progress: impl Fn(&Progress) + Send + Sync) -> Result<RunSummary> {
        let span = tracing::info_span!("fleet_migration", run_id = %self.run.id);
        self.execute_inner(&progress).instrument(span).await
    }

    async fn execute_inner(
        mut self,
        progress: &(impl Fn(&Progress) + Send + Sync),
    ) -> Result<RunSummary> {
        let started = Instant::now();
        let total = self.targets.len();
        let mut state = Progress {
            total,
            ..Progress::default()
        };
        let (canaries, main): (Vec<Target>, Vec<Target>) = std::mem::take(&mut self.targets)
            .into_iter()
            .partition(|t| t.canary);
        let mut halt_reason = None;

        if !canaries.is_empty() {
            let crashed = self.wave(canaries, &mut state, progress, false).await?;
            if crashed {
                return Err(Error::InjectedFault("fleet run stopped dead".into()));
            }
            if state.failed > 0 {
                halt_reason = Some(format!(
                    "{} canary tenant(s) failed; the rest were not attempted",
                    state.failed
                ));
            }
        }
        if halt_reason.is_none() && !self.options.dry_run {
            // New tenants must be born at the new version: upgrade the template before
            // the main wave (after the canaries, so a bad migration stops there).
            match self.fleet.servers.in_service().await {
                Ok(clusters) => {
                    for cluster in clusters {
                        if let Err(e) = cluster.upgrade_template().await {
                            halt_reason = Some(format!(
                                "upgrading the template database on server {} failed: {e}",
                                cluster.server_id()
                            ));
                            break;
                        }
                    }
                }
                Err(e) => {
                    halt_reason = Some(format!("listing the database servers failed: {e}"));
                }
            }
            // The set has passed the canaries and every template: record it, so every
            // process (and every view) adopts it. A run stopped before here records
            // nothing, and its folder can still be fixed.
            if halt_reason.is_none() {
                self.record_set().await?;
            }
        }
        let mut halted_by_budget = false;
        if halt_reason.is_none() && !main.is_empty() {
            let budget_before = state.failed;
            let crashed = self.wave(main, &mut state, progress, true).await?;
            if crashed {
                return Err(Error::InjectedFault("fleet run stopped dead".into()));
            }
            if let Some(budget) = self.options.max_failures
                && budget.exceeded(state.failed - budget_before, total)
            {
                halted_by_budget = true;
                halt_reason = Some(format!("failure budget exceeded ({} failed)", state.failed));
            }
        }
        let status = if self.options.dry_run {
            RunStatus::DryRun
        } else if halted_by_budget {
            RunStatus::Halted
        } else if state.failed > 0 || halt_reason.is_some() {
            RunStatus::Failed
        } else {
            RunStatus::Succeeded
        };
        let conn = self.fleet.owner.conn().await?;
        runs::run_finish(&**conn, self.run.id, status, halt_reason.as_deref()).await?;
        let summary = RunSummary {
            run_id: self.run.id,
            status,
            target_version: self.run.target_version,
            total,
            succeeded: if self.options.dry_run {
                0
            } else {
                state.succeeded
            },
            would_apply: if self.options.dry_run {
                state.succeeded
            } else {
                0
            },
            failed: state.failed,
            not_attempted: total - state.done,
            up_to_date: self.up_to_date,
            halt_reason,
            elapsed_ms: started.elapsed().as_millis(),
        };
        tracing::info!(
            run_id = %summary.run_id,
            status = summary.status.as_str(),
            target_version = summary.target_version,
            total = summary.total,
            succeeded = summary.succeeded,
            would_apply = summary.would_apply,
            failed = summary.failed,
            not_attempted = summary.not_attempted,
            up_to_date = summary.up_to_date,
            halt_reason = summary.halt_reason.as_deref(),
            elapsed_ms = summary.elapsed_ms as u64,
            "fleet migration finished"
        );
        Ok(summary)
    }

    async fn record_set(&self) -> Result<()> {
        let conn = self.fleet.owner.conn().await?;
        let added = MigrationSource::record(&**conn, &self.source, self.run.id).await?;
        if !added.is_empty() {
            tracing::info!(run_id = %self.run.id, versions = ?added, "recorded new tenant migrations");
            crate::audit::record(
                &**conn,
                &crate::audit::Actor::system(&self.run.started_by),
                "migration.recorded",
                crate::audit::Target("migration_run", &self.run.id.to_string()),
                json!({ "versions": added }),
            )
            .await?;
        }
        Ok(())
    }

    /// Runs one wave with bounded concurrency. With `budgeted`, stops dispatching once
    /// the failure budget is exceeded, letting in-flight tenants finish. Returns true if
    /// the test-only crash switch fired.
    async fn wave(
        &self,
        targets: Vec<Target>,
        state: &mut Progress,
        progress: &(impl Fn(&Progress) + Send + Sync),
        budgeted: bool,
    ) -> Result<bool> {
        let halted = AtomicBool::new(false);
        let started = AtomicUsize::new(0);
        let failures_before = state.failed;
        // The concurrency is per database server: each gets its own permits, and the
        // wave runs as many tenants at once as all servers together allow.
        let per_server: std::collections::HashMap<String, tokio::sync::Semaphore> = targets
            .iter()
            .map(|t| {
                (
                    t.tenant.server_id.clone(),
                    tokio::sync::Semaphore::new(self.options.concurrency),
                )
            })
            .collect();
        let width = self.options.concurrency * per_server.len().max(1);
        let targets = interleave_by_server(targets);
        let mut outcomes = futures::stream::iter(targets)
            .map(|target| {
                let halted = &halted;
                let started = &started;
                let per_server = &per_server;
                async move {
                    let _permit = match per_server.get(&target.tenant.server_id) {
                        Some(permits) => Some(permits.acquire().await.map_err(|e| {
                            Error::Internal(format!("fleet run permits closed: {e}"))
                        })?),
                        None => None,
                    };
                    if halted.load(Ordering::SeqCst) {
                        return Ok((target.tenant.slug, Outcome::NotAttempted));
                    }
                    let n = started.fetch_add(1, Ordering::SeqCst);
                    if self.options.crash_after.is_some_and(|limit| n >= limit) {
                        return Ok((target.tenant.slug, Outcome::Crashed));
                    }
                    let outcome = if self.options.dry_run {
                        self.inspect_tenant(&target.tenant).await?
                    } else {
                        self.migrate_tenant(&target.tenant).await?
                    };
                    Ok::<_, Error>((target.tenant.slug, outcome))
                }
            })
            .buffer_unordered(width);
        while let Some(result) = outcomes.next().await {
            let (slug, outcome) = result?;
            match outcome {
                Outcome::Crashed => return Ok(true),
                Outcome::NotAttempted => continue,
                Outcome::Succeeded => {
                    state.succeeded += 1;
                    state.last = Some((slug, true));
                }
                Outcome::Failed => {
                    state.failed += 1;
                    state.last = Some((slug, false));
                }
            }
            state.done += 1;
            if budgeted
                && let Some(budget) = self.options.max_failures
                && budget.exceeded(state.failed - failures_before, state.total)
            {
                halted.store(true, Ordering::SeqCst);
            }
            progress(state);
        }
        Ok(false)
    }

    /// The pre-migration backup of `migrate --backup`, recorded with the run's id.
    async fn back_up(&self, tenant: &Tenant) -> Result<()> {
        let actor = crate::audit::Actor::system("system:fleet");
        let request = crate::backups::BackupRequest {
            kind: owner::backups::BackupKind::PreMigration,
            actor: &actor,
            migration_run_id: Some(self.run.id),
        };
        self.fleet
            .backups
            .take(tenant, &request)
            .await
            .map(|_| ())
            .map_err(|e| Error::Internal(format!("pre-migration backup failed, not migrated: {e}")))
    }

    /// Migrates one tenant over its owner role's connection, under the tenant migration
    /// lock; records the outcome. A tenant's own failure is an outcome, not an error;
    /// only a failure to record it is.
    async fn migrate_tenant(&self, tenant: &Tenant) -> Result<Outcome> {
        let span =
            tracing::info_span!("migrate_tenant", tenant_id = %tenant.id, slug = %tenant.slug);
        async {
            let run_id = self.run.id;
            {
                let conn = self.fleet.owner.relaxed_conn().await?;
                runs::run_tenant_start(&**conn, run_id, tenant.id).await?;
            }
            let started = Instant::now();
            let source = &self.source;
            let maintenance = self.options.maintenance
                && tenant
                    .schema_version
                    .is_none_or(|v| v < source.latest_version());
            let result: Result<tenant::migrations::MigrationOutcome> = async {
                if maintenance {
                    self.fleet.enter_maintenance(tenant).await?;
                }
                if self.options.backup {
                    self.back_up(tenant).await?;
                }
                let mut client = self.fleet.access.connect(tenant, TenantRole::Owner).await?;
                Ok(source
                    .apply_locked(&mut client, TENANT_MIGRATION_LOCK)
                    .await?)
            }
            .await;
            if maintenance {
                self.fleet.leave_maintenance(tenant.id).await;
            }
            let ms = i32::try_from(started.elapsed().as_millis()).unwrap_or(i32::MAX);
            let conn = self.fleet.owner.relaxed_conn().await?;
            match result {
                Ok(outcome) => {
                    let applied = json!(
                        outcome
                            .applied
                            .iter()
                            .map(|(v, n)| format!("V{v}__{n}"))
                            .collect::<Vec<_>>()
                    );
                    runs::run_tenant_succeeded(
                        &**conn,
                        run_id,
                        tenant.id,
                        outcome.from,
                        outcome.to,
                        &applied,
                        ms,
                    )
                    .await?;
                    tracing::info!(from = outcome.from, to = outcome.to, ms, "tenant migrated");
                    Ok(Outcome::Succeeded)
                }
                Err(e) => {
                    let message = e.to_string();
                    runs::run_tenant_finish(
                        &**conn,
                        run_id,
                        tenant.id,
                        TenantRunStatus::Failed,
                        None,
                        None,
                        None,
                        Some(&message),
                        ms,
                    )
                    .await?;
                    tracing::warn!(error = %message, "tenant migration failed");
                    Ok(Outcome::Failed)
                }
            }
        }
        .instrument(span)
        .await
    }

    /// Dry run: lists the tenant's pending migrations, changing nothing.
    async fn inspect_tenant(&self, tenant: &Tenant) -> Result<Outcome> {
        let started = Instant::now();
        let source = &self.source;
        let result: Result<(i32, Pending)> = async {
            let client = self.fleet.access.connect(tenant, TenantRole::Owner).await?;
            Ok((
                tenant::migrations::current_version(&client).await?,
                source.pending(&client).await?,
            ))
        }
        .await;
        let ms = i32::try_from(started.elapsed().as_millis()).unwrap_or(i32::MAX);
        let conn = self.fleet.owner.conn().await?;
        match result {
            Ok((from, pending)) => {
                let pending = json!(
                    pending
                        .iter()
                        .map(|(v, n)| format!("V{v}__{n}"))
                        .collect::<Vec<_>>()
                );
                runs::run_tenant_finish(
                    &**conn,
                    self.run.id,
                    tenant.id,
                    TenantRunStatus::WouldApply,
                    Some(from),
                    None,
                    Some(&pending),
                    None,
                    ms,
                )
                .await?;
                Ok(Outcome::Succeeded)
            }
            Err(e) => {
                runs::run_tenant_finish(
                    &**conn,
                    self.run.id,
                    tenant.id,
                    TenantRunStatus::Failed,
                    None,
                    None,
                    None,
                    Some(&e.to_string()),
                    ms,
                )
                .await?;
                Ok(Outcome::Failed)
            }
        }
    }
}

/// The targets taken from each server in turn (each server's in their order), so a wave
/// keeps every server busy instead of waiting on the first one's permits.
fn interleave_by_server(targets: Vec<Target>) -> Vec<Target> {
    let mut queues: Vec<(String, std::collections::VecDeque<Target>)> = Vec::new();
    for target in targets {
        match queues
            .iter_mut()
            .find(|(server, _)| *server == target.tenant.server_id)
        {
            Some((_, queue)) => queue.push_back(target),
            None => queues.push((
                target.tenant.server_id.clone(),
                std::collections::VecDeque::from([target]),
            )),
        }
    }
    let mut out = Vec::new();
    while queues.iter().any(|(_, q)| !q.is_empty()) {
        for (_, queue) in &mut queues {
            if let Some(target) = queue.pop_front() {
                out.push(target);
            }
        }
    }
    out
}
