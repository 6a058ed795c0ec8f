//! The reconciler: finds tenants that are not where they are going (provisioning or
//! deleting) and drives them there. It runs at start-up and on a timer; the timer is
//! the retry. Drives are skipped, not waited for, when another process
//! holds the tenant, so several service processes can run it at once.

use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use serde::Serialize;
use tokio_util::sync::CancellationToken;

use super::Provisioner;
use crate::Result;

/// How many tenants one pass drives at a time.
const CONCURRENCY: usize = 4;

#[derive(Debug, Default, Clone, Serialize)]
pub struct ReconcileReport {
    /// Tenants found unfinished.
    pub found: usize,
    /// Tenants driven to their desired state.
    pub settled: usize,
    /// Tenants held by another driver.
    pub skipped: usize,
    /// Tenants whose drive failed (their row has `last_error`).
    pub failed: usize,
}

impl Provisioner {
    /// One pass over every unfinished tenant.
    pub async fn reconcile_once(&self) -> Result<ReconcileReport> {
        let unsettled = {
            let conn = self.owner.conn().await?;
            owner::tenants::tenant_list_unsettled(&**conn).await?
        };
        let mut report = ReconcileReport {
            found: unsettled.len(),
            ..ReconcileReport::default()
        };
        let mut results = futures::stream::iter(unsettled)
            .map(|t| async move { self.try_drive(t.id).await })
            .buffer_unordered(CONCURRENCY);
        while let Some(result) = results.next().await {
            match result {
                Ok(Some(_)) => report.settled += 1,
                Ok(None) => report.skipped += 1,
                Err(_) => report.failed += 1,
            }
        }
        if report.found > 0 {
            tracing::info!(?report, "reconciler pass");
        }
        match self.finish_left_rotations().await {
            Ok(0) => {}
            Ok(n) => tracing::info!(
                finished = n,
                "credential rotations left by a crash finished"
            ),
            Err(e) => {
                tracing::warn!(error = %e, "could not look for unfinished credential rotations")
            }
        }
        // Every pass, not only when something is unsettled: an owner role can reopen its
        // database at any time.
        match self.servers.in_service().await {
            Ok(clusters) => {
                for cluster in clusters {
                    if let Err(e) = cluster.reassert_hardening().await {
                        tracing::warn!(server = cluster.server_id(), error = %e, "could not re-assert tenant database hardening");
                    }
                }
            }
            Err(e) => tracing::warn!(error = %e, "could not list the database servers"),
        }
        Ok(report)
    }

    /// Runs passes until cancelled: at once, then every `interval`.
    pub async fn run_reconciler(self: Arc<Self>, interval: Duration, cancel: CancellationToken) {
        loop {
            let span = tracing::info_span!("reconcile");
            let pass = tracing::Instrument::instrument(self.reconcile_once(), span);
            tokio::select! {
                _ = cancel.cancelled() => return,
                result = pass => {
                    if let Err(e) = result {
                        tracing::warn!(error = %e, "reconciler pass failed");
                    }
                }
            }
            tokio::select! {
                _ = cancel.cancelled() => return,
                _ = tokio::time::sleep(interval) => {}
            }
        }
    }
}
