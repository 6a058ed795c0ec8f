//! Fleet migrations: bring every tenant database to the latest tenant schema.
//!
//! One run at a time, across processes (an advisory lock in the owner database held by
//! the running process; a run row left `running` by a dead process is marked
//! `interrupted` by the next one). Each tenant is migrated over its owner role's own
//! connection under the tenant migration lock (which provisioning takes too), with its
//! pending migrations in one transaction. A failing tenant is recorded and the run goes
//! on, up to a failure budget; canaries go first and stop the run if any fails. Tenants
//! whose recorded version is already the target are skipped without a connection, so a
//! re-run after a halt or crash only touches what is still behind.

mod maintenance;
mod run;
mod status;

pub use run::{FleetRun, Progress, RunSummary};
pub use status::{FleetStatus, TenantDrift, fleet_status};

use std::sync::Arc;

use owner::tenants::TenantStatus;
use serde::{Deserialize, Serialize};

use crate::backups::Backups;
use crate::provisioning::Servers;
use crate::services::{MigrationSource, OwnerDb, Tasks, TenantAccess, TenantEvents};

/// What fleet runs and fleet status use. Cheap to clone.
#[derive(Clone)]
pub struct Fleet {
    owner: OwnerDb,
    access: Arc<TenantAccess>,
    /// Their templates are upgraded first in a run, so tenants created during it are
    /// born at the target on every server.
    servers: Arc<Servers>,
    source: Arc<MigrationSource>,
    tasks: Tasks,
    /// Takes the pre-migration backups of `migrate --backup`.
    backups: Arc<Backups>,
    /// Told when `migrate --maintenance` puts a tenant in maintenance and takes it out.
    events: TenantEvents,
}

impl Fleet {
    pub fn new(
        owner: OwnerDb,
        access: Arc<TenantAccess>,
        servers: Arc<Servers>,
        source: Arc<MigrationSource>,
        tasks: Tasks,
        backups: Arc<Backups>,
        events: TenantEvents,
    ) -> Self {
        Self {
            owner,
            access,
            servers,
            source,
            tasks,
            backups,
            events,
        }
    }

    /// The migrations runs bring tenants to.
    pub fn source(&self) -> &Arc<MigrationSource> {
        &self.source
    }
}

/// Default number of tenants migrated at once. Measured on 2 cores, the work is bound by
/// opening one connection per tenant, and 8 workers already saturate it.
pub const DEFAULT_CONCURRENCY: usize = 8;
pub const MAX_CONCURRENCY: usize = 64;

/// When a run stops dispatching new tenants.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FailureBudget {
    /// Halt once more than this many tenants failed.
    Count(usize),
    /// Halt once more than this fraction (0..1) of the run's tenants failed.
    Ratio(f64),
}

impl FailureBudget {
    /// Parses `5` (a count) or `0.1` / `10%` (a ratio).
    pub fn parse(s: &str) -> Option<Self> {
        let s = s.trim();
        if let Some(p) = s.strip_suffix('%') {
            return p
                .trim()
                .parse::<f64>()
                .ok()
                .filter(|p| (0.0..=100.0).contains(p))
                .map(|p| Self::Ratio(p / 100.0));
        }
        if s.contains('.') {
            return s
                .parse::<f64>()
                .ok()
                .filter(|r| (0.0..=1.0).contains(r))
                .map(Self::Ratio);
        }
        s.parse::<usize>().ok().map(Self::Count)
    }

    pub fn exceeded(&self, failures: usize, total: usize) -> bool {
        match *self {
            Self::Count(n) => failures > n,
            Self::Ratio(r) => total > 0 && failures as f64 > r * total as f64,
        }
    }
}

/// Which tenants go first.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Canary {
    #[default]
    None,
    /// The first N targets (oldest tenants first).
    Count(usize),
    /// These slugs.
    Slugs(Vec<String>),
}

impl Canary {
    /// `N` (the first N targets) or `slug,slug` (these tenants); blank is none.
    pub fn parse(s: &str) -> Self {
        let s = s.trim();
        if s.is_empty() {
            return Self::None;
        }
        match s.parse::<usize>() {
            Ok(n) => Self::Count(n),
            Err(_) => Self::Slugs(
                s.split(',')
                    .map(|x| x.trim().to_string())
                    .filter(|x| !x.is_empty())
                    .collect(),
            ),
        }
    }
}

/// What a run should do.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct FleetOptions {
    pub concurrency: usize,
    pub max_failures: Option<FailureBudget>,
    #[serde(default)]
    pub canary: Canary,
    /// Only these slugs (empty: all).
    #[serde(default)]
    pub tenants: Vec<String>,
    pub plan: Option<String>,
    /// Statuses to include; suspended tenants are migrated too by default.
    pub statuses: Vec<TenantStatus>,
    #[serde(default)]
    pub dry_run: bool,
    /// Back each tenant up right before migrating it; a tenant whose backup fails is
    /// not migrated (it fails the run's budget like a failed migration).
    #[serde(default)]
    pub backup: bool,
    /// Put each tenant in maintenance while it is migrated (and backed up, with
    /// `backup`): its requests are answered 503 meanwhile rather than racing the change.
    #[serde(default)]
    pub maintenance: bool,
    /// Test-only: stop dead after this many tenants, as a crash would.
    #[serde(skip)]
    pub crash_after: Option<usize>,
}

impl Default for FleetOptions {
    fn default() -> Self {
        Self {
            concurrency: DEFAULT_CONCURRENCY,
            max_failures: None,
            canary: Canary::None,
            tenants: Vec::new(),
            plan: None,
            statuses: vec![TenantStatus::Active, TenantStatus::Suspended],
            dry_run: false,
            backup: false,
            maintenance: false,
            crash_after: None,
        }
    }
}

/// Starts a run in the background, as the API and the dashboard do: records it (and
/// [`FleetRun::start`] audits it), then executes it as a background task (so shutdown
/// waits for it). Returns the run's record and a handle on its summary.
pub async fn launch(
    fleet: &Fleet,
    options: FleetOptions,
    started_by: &str,
) -> crate::Result<(
    owner::migration_runs::MigrationRun,
    tokio::task::JoinHandle<crate::Result<RunSummary>>,
)> {
    let run = FleetRun::start(fleet.clone(), options, started_by).await?;
    let record = run.run().clone();
    let handle = fleet.tasks.spawn(async move {
        let result = run.execute(|_| {}).await;
        if let Err(e) = &result {
            tracing::error!(error = %e, "fleet migration failed");
        }
        result
    });
    Ok((record, handle))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failure_budgets_parse_and_trip() {
        assert_eq!(FailureBudget::parse("3"), Some(FailureBudget::Count(3)));
        assert_eq!(
            FailureBudget::parse("0.25"),
            Some(FailureBudget::Ratio(0.25))
        );
        assert_eq!(FailureBudget::parse("10%"), Some(FailureBudget::Ratio(0.1)));
        assert_eq!(FailureBudget::parse("x"), None);
        assert_eq!(FailureBudget::parse("1.5"), None);
        assert!(!FailureBudget::Count(2).exceeded(2, 10));
        assert!(FailureBudget::Count(2).exceeded(3, 10));
        assert!(FailureBudget::Ratio(0.1).exceeded(2, 10));
        assert!(!FailureBudget::Ratio(0.1).exceeded(1, 10));
    }
}
