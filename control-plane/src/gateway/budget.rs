//! How many tenant connections this process may hold, and how many tenant pools it
//! keeps: given (`CP_TENANT_CONNECTION_BUDGET`, `CP_MAX_TENANT_POOLS`), or worked out at
//! start-up from the server the tenants live on.
//!
//! The derived budget is what the server's `max_connections` leaves once its reserved
//! slots and this process's other connections are set aside: the owner pools, fleet
//! migrations, metering, backups, provisioning and the reconciler, plus a margin for operators'
//! own sessions (psql, backups, monitoring). It is one process's share: several
//! processes on one server must each be given a budget explicitly.

use crate::config::Config;
use crate::pg::{Endpoint, OWNER_POOL_SIZE, connect};
use crate::{Error, Result};

/// Connections the control plane itself may open besides tenant pools, apart from the
/// owner pools: a fleet run's default concurrency, provisioning and the reconciler, the
/// lock sessions.
const OWN_WORK: usize = crate::fleet::DEFAULT_CONCURRENCY + 8;

/// Tenant pools kept at least, whatever the budget: a pool without a connection costs a
/// few kilobytes, and keeping it saves rebuilding it (its keys and storage paths).
const MIN_POOLS: u64 = 1000;

/// The budget and the pool cache's size in force, and where the budget came from.
#[derive(Debug, Clone)]
pub struct ConnectionPlan {
    pub budget: usize,
    pub max_pools: u64,
    /// How the budget was derived; `None` when it was configured.
    pub derived: Option<Derivation>,
}

/// The figures a derived budget came from.
#[derive(Debug, Clone, Copy)]
pub struct Derivation {
    pub max_connections: usize,
    /// `superuser_reserved_connections` plus (PostgreSQL 16+) `reserved_connections`.
    pub reserved: usize,
    /// Kept for the control plane's own connections and operators' sessions.
    pub kept_back: usize,
}

impl ConnectionPlan {
    /// The plan for `config`, asking the server for its limits when the budget is not
    /// configured.
    pub async fn for_server(config: &Config, server: &Endpoint) -> Result<Self> {
        let (budget, derived) = match config.tenant_connection_budget {
            Some(budget) => (budget, None),
            None => {
                let (budget, derivation) = derived_budget(config, server).await?;
                (budget, Some(derivation))
            }
        };
        let max_pools = config
            .max_tenant_pools
            .unwrap_or_else(|| MIN_POOLS.max(2 * budget as u64));
        if max_pools < budget as u64 {
            tracing::warn!(
                max_pools,
                budget,
                "CP_MAX_TENANT_POOLS is below the tenant connection budget: a pool released \
                 from the cache closes its connection, so at most {max_pools} tenants hold one"
            );
        }
        Ok(Self {
            budget,
            max_pools,
            derived,
        })
    }
}

/// The budget `server`'s limits leave for tenant connections (see the module's comment).
pub async fn derived_budget(config: &Config, server: &Endpoint) -> Result<(usize, Derivation)> {
    let client = connect(server).await?;
    let row = client
        .query_one(
            "SELECT current_setting('max_connections')::int8, \
             current_setting('superuser_reserved_connections')::int8 \
             + coalesce(current_setting('reserved_connections', true)::int8, 0)",
            &[],
        )
        .await
        .map_err(|e| Error::Internal(format!("cannot read max_connections: {e}")))?;
    let count = |i: usize| usize::try_from(row.get::<_, i64>(i)).unwrap_or(0);
    // Metering and the backup job run beside the pools, each on connections of its own
    // (a backup holds a snapshot session and pg_dump's).
    let side_work = config.metering_concurrency
        + crate::backups::Backups::connections_needed(config.backup_concurrency);
    let derivation = derive(count(0), count(1), side_work);
    let budget = derivation
        .max_connections
        .saturating_sub(derivation.reserved + derivation.kept_back);
    if budget < config.tenant_pool_size {
        return Err(Error::Config(format!(
            "the server's max_connections ({}) leaves {budget} connections for tenants \
             after {} reserved and {} kept for the control plane, fewer than \
             CP_TENANT_POOL_SIZE ({}); raise max_connections or set \
             CP_TENANT_CONNECTION_BUDGET",
            derivation.max_connections,
            derivation.reserved,
            derivation.kept_back,
            config.tenant_pool_size
        )));
    }
    Ok((budget, derivation))
}

fn derive(max_connections: usize, reserved: usize, side_work: usize) -> Derivation {
    // Operators' sessions: a twentieth of the server, at least five.
    let margin = (max_connections / 20).max(5);
    Derivation {
        max_connections,
        reserved,
        kept_back: 2 * OWNER_POOL_SIZE + OWN_WORK + side_work + margin,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_derived_budget_leaves_room_for_the_control_plane_and_operators() {
        // PostgreSQL's defaults: 100 connections, 3 for superusers.
        let d = derive(100, 3, 4);
        assert_eq!(d.kept_back, 2 * OWNER_POOL_SIZE + OWN_WORK + 4 + 5);
        assert!(d.max_connections - d.reserved - d.kept_back >= 40);
        // A server sized for a fleet gives most of itself to tenants.
        let d = derive(1200, 3, 4);
        let budget = d.max_connections - d.reserved - d.kept_back;
        assert!((1000..1200).contains(&budget), "{budget}");
    }
}
