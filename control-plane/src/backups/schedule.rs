//! The background job: scheduled backups by each plan's policy, retention, the recovery
//! pass, and the daily restore test.

use std::collections::HashSet;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{DateTime, Datelike, Utc};
use owner::backups::{Backup, BackupKind, Policy, RestoreTest};
use serde::Serialize;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use super::manifest::DATABASE_DUMP;
use super::take::Request;
use super::{Backups, archive, blocking, count_rows};
use crate::Result;
use crate::audit::Actor;
use crate::pg::tools::Tool;

/// Everything younger than this is kept whatever the policy (so an hourly plan keeps its
/// hourly backups for a day).
const KEEP_ALL_WITHIN: chrono::Duration = chrono::Duration::hours(24);

/// Which of a tenant's scheduled backups (`(id, started_at)`, any order) the policy
/// keeps: every one of the last 24 hours, the newest of each of the `keep_daily` most
/// recent days (UTC) that have one, the newest of each of the `keep_weekly` most recent
/// ISO weeks that have one, and always the newest of all.
pub fn retention_keeps(
    backups: &[(Uuid, DateTime<Utc>)],
    policy: &Policy,
    now: DateTime<Utc>,
) -> HashSet<Uuid> {
    let mut newest_first = backups.to_vec();
    newest_first.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
    let mut keep: HashSet<Uuid> = newest_first
        .iter()
        .filter(|(_, at)| now - *at < KEEP_ALL_WITHIN)
        .map(|(id, _)| *id)
        .collect();
    if let Some((id, _)) = newest_first.first() {
        keep.insert(*id);
    }
    let mut pick = |bucket: &dyn Fn(&DateTime<Utc>) -> (i32, u32), count: i32| {
        let mut seen = Vec::new();
        for (id, at) in &newest_first {
            let b = bucket(at);
            if seen.contains(&b) {
                continue;
            }
            if seen.len() >= usize::try_from(count).unwrap_or(0) {
                break;
            }
            seen.push(b);
            keep.insert(*id);
        }
    };
    pick(&|at| (at.year(), at.ordinal()), policy.keep_daily);
    pick(
        &|at| {
            let week = at.iso_week();
            (week.year(), week.week())
        },
        policy.keep_weekly,
    );
    keep
}

#[derive(Debug, Default, Clone, Serialize)]
pub struct Pruned {
    pub removed: Vec<Uuid>,
}

#[derive(Debug, Default, Clone, Serialize)]
pub struct ScheduleReport {
    pub due: usize,
    pub taken: usize,
    pub failed: usize,
    pub pruned: usize,
}

/// Admitted tenant requests per second above which the gateway counts as busy and the
/// backup job yields to it.
const BUSY_RATE: f64 = 20.0;
/// How often a worker held back by traffic looks again.
const YIELD_POLL: Duration = Duration::from_millis(250);
/// While the gateway is busy, the one running worker pauses this many times the length
/// of each backup before the next.
const BUSY_PAUSE_FACTOR: u32 = 2;

/// How many due tenants one pass takes on at most.
const DUE_PER_PASS: i64 = 1000;

/// The restore test picks among backups finished this many days ago at most.
const RESTORE_TEST_DAYS: i32 = 7;

impl Backups {
    /// Removes the scheduled backups of a tenant its plan's retention no longer keeps
    /// (files first, then the row is marked removed). Skipped while a backup or
    /// restore of the tenant runs.
    pub async fn prune(&self, tenant_id: Uuid) -> Result<Pruned> {
        let Some(lock) = self.lock_tenant(tenant_id).await? else {
            return Ok(Pruned::default());
        };
        let pruned = self.prune_locked(tenant_id).await;
        lock.release().await;
        pruned
    }

    /// [`Backups::prune`] for a caller holding the tenant's lock.
    async fn prune_locked(&self, tenant_id: Uuid) -> Result<Pruned> {
        let (backups, policy) = {
            let conn = self.owner.conn().await?;
            (
                owner::backups::backup_list_succeeded(&**conn, tenant_id, BackupKind::Scheduled)
                    .await?,
                owner::backups::policy_for_tenant(&**conn, tenant_id).await?,
            )
        };
        let stamps: Vec<_> = backups.iter().map(|b| (b.id, b.started_at)).collect();
        let keep = retention_keeps(&stamps, &policy, Utc::now());
        let mut pruned = Pruned::default();
        for backup in backups.iter().filter(|b| !keep.contains(&b.id)) {
            self.remove_files(backup).await?;
            pruned.removed.push(backup.id);
        }
        Ok(pruned)
    }

    async fn remove_files(&self, backup: &Backup) -> Result<()> {
        let dir = PathBuf::from(&backup.location);
        blocking(move || archive::remove_dir(&dir)).await?;
        let conn = self.owner.conn().await?;
        owner::backups::backup_mark_removed(&**conn, backup.id).await?;
        Ok(())
    }

    /// One pass of the schedule: every due tenant backed up, then pruned by its
    /// retention. While the gateway is quiet, `concurrency` backups run at once; while it
    /// serves traffic the job yields to it: one backup at a time, each followed by a
    /// pause twice its length, so backups go on at about a third of one worker.
    pub async fn schedule_once(&self) -> Result<ScheduleReport> {
        // With several replicas, one runs the pass; the others would back the same due
        // tenants up again once their lock is free.
        let Some(_pass) = self.pass_lock("cp-backup-schedule").await? else {
            return Ok(ScheduleReport::default());
        };
        let due = {
            let conn = self.owner.conn().await?;
            owner::backups::backup_list_due(&**conn, DUE_PER_PASS).await?
        };
        let report = std::sync::Mutex::new(ScheduleReport {
            due: due.len(),
            ..ScheduleReport::default()
        });
        let queue =
            std::sync::Mutex::new(due.into_iter().collect::<std::collections::VecDeque<_>>());
        let actor = Actor::system("system:backups");
        let worker = |index: usize| {
            let (queue, report, actor) = (&queue, &report, &actor);
            async move {
                loop {
                    while index > 0 && self.traffic.rate() > BUSY_RATE {
                        tokio::time::sleep(YIELD_POLL).await;
                    }
                    let Some(next) = queue.lock().unwrap_or_else(|p| p.into_inner()).pop_front()
                    else {
                        return;
                    };
                    let started = Instant::now();
                    let result = self.back_up_and_prune(next.tenant_id, actor).await;
                    {
                        let mut report = report.lock().unwrap_or_else(|p| p.into_inner());
                        match result {
                            Ok(pruned) => {
                                report.taken += 1;
                                report.pruned += pruned.removed.len();
                            }
                            Err(e) => {
                                report.failed += 1;
                                tracing::warn!(tenant = %next.slug, error = %e, "scheduled backup failed");
                            }
                        }
                    }
                    if self.traffic.rate() > BUSY_RATE {
                        tokio::time::sleep(started.elapsed() * BUSY_PAUSE_FACTOR).await;
                    }
                }
            }
        };
        futures::future::join_all((0..self.concurrency).map(worker)).await;
        let report = report.into_inner().unwrap_or_else(|p| p.into_inner());
        if report.due > 0 {
            tracing::info!(?report, "backup schedule pass");
        }
        Ok(report)
    }

    /// A session holding the advisory lock `name` (released when it is dropped), or
    /// `None` when another process holds it.
    async fn pass_lock(&self, name: &str) -> Result<Option<tokio_postgres::Client>> {
        let session = self.owner.lock_session().await?;
        let got: bool = session
            .query_one(
                "SELECT pg_try_advisory_lock(hashtextextended($1, 0))",
                &[&name],
            )
            .await
            .map_err(owner::Error::from)?
            .get(0);
        Ok(got.then_some(session))
    }

    async fn back_up_and_prune(&self, tenant_id: Uuid, actor: &Actor) -> Result<Pruned> {
        let tenant = {
            let conn = self.owner.conn().await?;
            owner::tenants::tenant_fetch(&**conn, tenant_id).await?
        };
        let request = Request {
            kind: BackupKind::Scheduled,
            actor,
            migration_run_id: None,
        };
        // Pruned under the backup's own lock, so no other backup or restore slips between.
        let started = self.start(&tenant, &request).await?;
        let (backup, lock) = self.finish_holding(started).await;
        let Some(lock) = lock else {
            return backup.map(|_| Pruned::default());
        };
        let pruned = match backup {
            Ok(_) => self.prune_locked(tenant.id).await,
            Err(e) => Err(e),
        };
        lock.release().await;
        pruned
    }

    /// Restores one random recent backup into a scratch database, compares its row
    /// counts with the manifest, drops it, and records the outcome. `None` when there is
    /// no recent backup to test.
    pub async fn test_restore_once(&self) -> Result<Option<RestoreTest>> {
        // One test at a time across replicas (each replica still tests on its own timer).
        let Some(_pass) = self.pass_lock("cp-restore-test").await? else {
            return Ok(None);
        };
        let picked = {
            let conn = self.owner.conn().await?;
            owner::backups::backup_pick_recent(&**conn, RESTORE_TEST_DAYS).await?
        };
        let Some(backup) = picked else {
            return Ok(None);
        };
        let started = Instant::now();
        let outcome = self.test_restore(&backup).await;
        let (ok, detail) = match &outcome {
            Ok(tables) => (true, format!("{tables} tables restored, row counts match")),
            Err(e) => (false, e.to_string()),
        };
        let ms = i64::try_from(started.elapsed().as_millis()).unwrap_or(i64::MAX);
        let conn = self.owner.conn().await?;
        let test = owner::backups::restore_test_insert(&**conn, backup.id, ok, &detail, ms).await?;
        metrics::gauge!("backup_restore_test_ok").set(if ok { 1.0 } else { 0.0 });
        metrics::gauge!("backup_restore_test_timestamp_seconds").set(Utc::now().timestamp() as f64);
        if ok {
            tracing::info!(backup = %backup.id, tenant = %backup.tenant_slug, ms, "restore test passed");
        } else {
            tracing::error!(backup = %backup.id, tenant = %backup.tenant_slug, detail, "restore test FAILED");
        }
        Ok(Some(test))
    }

    /// The restore test's work; the number of tables checked.
    async fn test_restore(&self, backup: &Backup) -> Result<usize> {
        let manifest = self.verify(backup).await?;
        // Any server can tell whether a backup restores; the default one does.
        let cluster = self.servers.default_cluster().await?;
        let db = format!(
            "{}restoretest_{}",
            cluster.prefix(),
            &backup.id.simple().to_string()[..8]
        );
        cluster.create_scratch_database(&db).await?;
        let checked = async {
            Tool::new("pg_restore", cluster.admin_endpoint(), &db)
                .arg(format!("--dbname={db}"))
                .arg("--no-owner")
                .arg("--no-acl")
                .arg("--exit-on-error")
                .arg("--single-transaction")
                .arg(std::path::Path::new(&backup.location).join(DATABASE_DUMP))
                .run()
                .await?;
            let session = cluster.admin_session(&db).await?;
            let counts = count_rows(&session).await?;
            if counts != manifest.tables {
                return Err(crate::Error::BackupCorrupt(
                    "the restored row counts differ from the manifest's".into(),
                ));
            }
            Ok(counts.len())
        }
        .await;
        cluster.drop_scratch_database(&db).await?;
        checked
    }

    /// The background job until cancelled: the recovery pass every `recover_every`, the
    /// schedule every `schedule_every`, the restore test every `test_every` (a zero
    /// interval turns that part off).
    pub async fn run(
        self: Arc<Self>,
        recover_every: Duration,
        schedule_every: Duration,
        test_every: Duration,
        cancel: CancellationToken,
    ) {
        let recover = {
            let this = Arc::clone(&self);
            every(recover_every, true, move || {
                let this = Arc::clone(&this);
                async move {
                    match this.recover_left().await {
                        Ok(r) if r != super::recover::Recovered::default() => {
                            tracing::info!(?r, "backup recovery pass")
                        }
                        Ok(_) => {}
                        Err(e) => tracing::warn!(error = %e, "backup recovery pass failed"),
                    }
                    match this.recover_moves().await {
                        Ok((0, 0)) => {}
                        Ok((undone, dropped)) => {
                            tracing::info!(undone, dropped, "move recovery pass")
                        }
                        Err(e) => tracing::warn!(error = %e, "move recovery pass failed"),
                    }
                }
            })
        };
        let schedule = {
            let this = Arc::clone(&self);
            every(schedule_every, true, move || {
                let this = Arc::clone(&this);
                async move {
                    if let Err(e) = this.schedule_once().await {
                        tracing::warn!(error = %e, "backup schedule pass failed");
                    }
                }
            })
        };
        let test = every(test_every, false, move || {
            let this = Arc::clone(&self);
            async move {
                if let Err(e) = this.test_restore_once().await {
                    tracing::warn!(error = %e, "restore test could not run");
                }
            }
        });
        tokio::select! {
            _ = cancel.cancelled() => {}
            _ = async { tokio::join!(recover, schedule, test) } => {}
        }
    }
}

/// Runs `pass` every `interval` (at once first when `now`); never when it is zero.
async fn every<F, Fut>(interval: Duration, now: bool, mut pass: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    if interval.is_zero() {
        return;
    }
    if !now {
        tokio::time::sleep(interval).await;
    }
    loop {
        pass().await;
        tokio::time::sleep(interval).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    /// The start times of the backups `policy` keeps, in order.
    fn kept_times(
        backups: &[(Uuid, DateTime<Utc>)],
        policy: &Policy,
        now: DateTime<Utc>,
    ) -> Vec<DateTime<Utc>> {
        let keep = retention_keeps(backups, policy, now);
        let mut kept: Vec<_> = backups
            .iter()
            .filter(|(id, _)| keep.contains(id))
            .map(|(_, at)| *at)
            .collect();
        kept.sort();
        kept
    }

    #[test]
    fn retention_keeps_exactly_what_the_policy_says() {
        let now = Utc.with_ymd_and_hms(2026, 11, 30, 12, 0, 0).unwrap();
        // Two backups a day, at 01:00 and 13:00, for 60 days back.
        let mut backups = Vec::new();
        for day in 0..60 {
            for hour in [1, 13] {
                let at = Utc.with_ymd_and_hms(2026, 11, 30, hour, 0, 0).unwrap()
                    - chrono::Duration::days(day);
                if at <= now {
                    backups.push((Uuid::new_v4(), at));
                }
            }
        }
        let policy = Policy {
            every_secs: 43_200,
            keep_daily: 3,
            keep_weekly: 2,
        };
        let kept = kept_times(&backups, &policy, now);
        let at = |d: u32, h: u32| Utc.with_ymd_and_hms(2026, 11, d, h, 0, 0).unwrap();
        // Within 24 h: 30th 01:00, 29th 13:00. Newest per day for three days: 30th 01:00,
        // 29th 13:00, 28th 13:00. Newest per ISO week for two weeks: Monday 30th (week
        // 49) 01:00, Sunday 29th (week 48) 13:00.
        assert_eq!(kept, vec![at(28, 13), at(29, 13), at(30, 1)]);

        let weekly = Policy {
            every_secs: 86_400,
            keep_daily: 0,
            keep_weekly: 3,
        };
        let kept = kept_times(&backups, &weekly, now);
        // Weeks 49, 48, 47: their newest are the 30th 01:00, the 29th 13:00 and the
        // 22nd 13:00 (a Sunday); the 24 h rule adds nothing more.
        assert_eq!(kept, vec![at(22, 13), at(29, 13), at(30, 1)]);
        assert!(retention_keeps(&[], &policy, now).is_empty());
    }
}
