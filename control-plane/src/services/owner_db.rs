//! The owner database: where tenants, domains, plans, operators, runs and the audit log
//! live, and where processes coordinate (advisory locks).

use std::time::Duration;

use deadpool_postgres::{Object, Pool};
use tokio_postgres::{Client, Transaction};

use crate::Result;
use crate::pg::{Endpoint, connect, owner_pool};

/// The owner database's pools and its address. Cheap to clone.
#[derive(Clone)]
pub struct OwnerDb {
    endpoint: Endpoint,
    pool: Pool,
    /// Connections with asynchronous commit, for records that are redone if lost (a
    /// fleet run's per-tenant outcomes): saves a WAL flush per write.
    relaxed: Pool,
}

impl OwnerDb {
    /// Builds the pools; no connection is opened until one is needed.
    pub fn new(endpoint: Endpoint) -> Result<Self> {
        let pool = owner_pool(&endpoint)?;
        let mut relaxed_endpoint = endpoint.clone();
        relaxed_endpoint
            .config_mut()
            .options("-c synchronous_commit=off");
        let relaxed = owner_pool(&relaxed_endpoint)?;
        Ok(Self {
            endpoint,
            pool,
            relaxed,
        })
    }

    pub fn endpoint(&self) -> &Endpoint {
        &self.endpoint
    }

    /// The pool itself, for callers that keep a connection across calls.
    pub fn pool(&self) -> &Pool {
        &self.pool
    }

    /// Both pools by name, for the metrics.
    pub fn pools(&self) -> [(&'static str, &Pool); 2] {
        [("main", &self.pool), ("relaxed", &self.relaxed)]
    }

    /// A pooled connection (waits at most `pg::OWNER_POOL_WAIT`).
    pub async fn conn(&self) -> Result<Object> {
        Ok(self.pool.get().await?)
    }

    /// A pooled connection whose commits do not wait for the WAL flush.
    pub async fn relaxed_conn(&self) -> Result<Object> {
        Ok(self.relaxed.get().await?)
    }

    /// A session of its own, outside the pool, for a session-level advisory lock: the
    /// lock lives as long as the session, so a crashed or cancelled holder cannot leak
    /// it. TCP keepalives notice a dead peer in a minute, not in two hours.
    pub async fn lock_session(&self) -> Result<Client> {
        let mut endpoint = self.endpoint.clone();
        endpoint
            .config_mut()
            .keepalives(true)
            .keepalives_idle(Duration::from_secs(30));
        connect(&endpoint).await
    }
}

/// Starts a transaction on a pooled connection. Errors are owner-database errors, so
/// the HTTP layer tells a lost owner database from a failed statement.
pub async fn begin(conn: &mut Object) -> Result<Transaction<'_>> {
    let client: &mut Client = conn;
    Ok(client.transaction().await.map_err(owner::Error::from)?)
}

/// Commits what [`begin`] started.
pub async fn commit(tx: Transaction<'_>) -> Result<()> {
    Ok(tx.commit().await.map_err(owner::Error::from)?)
}
