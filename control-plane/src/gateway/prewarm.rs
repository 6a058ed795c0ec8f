//! Pre-warm: at start-up, one connection for each of the most requested tenants (by the
//! requests metering recorded over the last day), so a restart does not make the first
//! request of every busy tenant pay for a connection at once.

use std::sync::Arc;

use futures::StreamExt;

use super::Gateway;

/// Tenants warmed at once: each open costs the server a fork and a login, and requests
/// arriving meanwhile need it too.
const CONCURRENCY: usize = 4;
/// How far back requests are counted.
const HISTORY_HOURS: i32 = 24;

impl Gateway {
    /// Opens one connection for each of the most requested active tenants, as many as
    /// the budget holds beside its reserve for first connections, a few at a time.
    /// Returns how many were opened; a tenant that fails is logged and skipped (its first
    /// request tries again).
    pub async fn prewarm(&self) -> usize {
        let limit = self.budget.beyond_reserve();
        let tenants = match self.owner.conn().await {
            Ok(conn) => {
                owner::tenants::tenants_most_requested(&**conn, HISTORY_HOURS, limit as i64)
                    .await
                    .map_err(|e| e.to_string())
            }
            Err(e) => Err(e.to_string()),
        };
        let tenants = match tenants {
            Ok(tenants) => tenants,
            Err(e) => {
                tracing::warn!(error = %e, "pre-warm skipped: cannot list the busiest tenants");
                return 0;
            }
        };
        let asked = tenants.len();
        let opened = futures::stream::iter(tenants)
            .map(|tenant| async move {
                let tenant = Arc::new(tenant);
                let runtime = self.runtime(&tenant).await.ok()?;
                match runtime.pool.get().await {
                    Ok(_connection) => Some(()),
                    Err(e) => {
                        tracing::warn!(tenant_id = %tenant.id, error = %e, "pre-warm: no connection");
                        None
                    }
                }
            })
            .buffer_unordered(CONCURRENCY)
            .filter_map(|opened| async move { opened })
            .count()
            .await;
        tracing::info!(opened, asked, "tenant connections pre-warmed");
        opened
    }
}
