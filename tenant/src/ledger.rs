//! The storage quota under parallel uploads: what a tenant stores is the sum of its
//! `files` rows, but an upload's row is written only once its bytes are on disk, so
//! uploads that each checked that sum at their start could all pass it together. Each
//! upload therefore reserves its bytes in a ledger shared by every request of its tenant,
//! and a check counts the rows *and* the reservations of uploads still in flight.
//!
//! - A check and the reservation it grants happen under the ledger's lock, so two
//!   checks never grant the same free bytes.
//! - A body with a declared length reserves it all before it is read. A body without one
//!   reserves [`STEP`] at a time as it arrives (or what is left of the quota, when less),
//!   checking again under the lock each time. So one that turns out smaller can hold,
//!   while in flight, quota a parallel upload needed: that upload is refused (507) and
//!   may retry once the other finished.
//! - On success the `files` row is written and the reservation released under the lock,
//!   so no check sees the bytes in neither place; on any failure the reservation is
//!   released when it is dropped.
//! - Nothing here holds a connection while waiting for the lock (connections are taken
//!   after it), so waiting uploads do not starve the tenant's other requests of its pool.
//!
//! The ledger lives in this process: with several control-plane replicas serving one
//! tenant, each replica's uploads see the others' only once their rows are written, so a
//! burst spread over replicas can still pass the quota by up to what is in flight on the
//! other replicas. (A cross-process ledger needs a table, i.e. a tenant migration.)

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use crate::pool::{PoolError, TenantPool};

/// How much more an upload of unknown length reserves each time it runs out.
pub const STEP: u64 = 1024 * 1024;

/// One tenant's uploads in flight in this process.
#[derive(Debug, Default)]
pub struct StorageLedger {
    /// Serialises checks with the reservations and row writes they depend on.
    lock: tokio::sync::Mutex<()>,
    /// Bytes reserved by uploads not yet recorded in `files`. Changed under `lock`,
    /// except for releases, which may only lower it.
    reserved: AtomicU64,
}

#[derive(Debug, thiserror::Error)]
pub enum QuotaError {
    #[error("the upload would pass the storage quota")]
    Exceeded,
    #[error(transparent)]
    Pool(#[from] PoolError),
    #[error(transparent)]
    Db(#[from] tokio_postgres::Error),
}

impl StorageLedger {
    pub fn new() -> Self {
        Self::default()
    }

    /// Bytes reserved by uploads in flight.
    pub fn in_flight(&self) -> u64 {
        self.reserved.load(Ordering::SeqCst)
    }

    /// An empty reservation against `quota` (`None`: unlimited, nothing is counted).
    pub fn reservation(self: &Arc<Self>, quota: Option<i64>) -> Reservation {
        Reservation {
            ledger: Arc::clone(self),
            quota: quota.map(|q| q.max(0) as u64),
            bytes: 0,
        }
    }
}

/// Bytes an upload holds against its tenant's quota; given back when dropped.
#[derive(Debug)]
pub struct Reservation {
    ledger: Arc<StorageLedger>,
    quota: Option<u64>,
    bytes: u64,
}

impl Reservation {
    pub fn bytes(&self) -> u64 {
        self.bytes
    }

    /// Makes the reservation at least `needed` bytes, taking up to `step` more than
    /// that if the quota has room (fewer trips to the lock for a growing body); refuses
    /// if `needed` does not fit beside what is stored and what others hold.
    pub async fn grow(
        &mut self,
        pool: &TenantPool,
        needed: u64,
        step: u64,
    ) -> Result<(), QuotaError> {
        let Some(quota) = self.quota else {
            return Ok(());
        };
        if needed <= self.bytes {
            return Ok(());
        }
        let ledger = Arc::clone(&self.ledger);
        let _guard = ledger.lock.lock().await;
        let stored = stored_bytes(pool).await?;
        let held = ledger.reserved.load(Ordering::SeqCst);
        let free = quota.saturating_sub(stored).saturating_sub(held);
        let extra_needed = needed - self.bytes;
        if extra_needed > free {
            return Err(QuotaError::Exceeded);
        }
        let extra = extra_needed.max(step.min(free));
        ledger.reserved.fetch_add(extra, Ordering::SeqCst);
        self.bytes += extra;
        Ok(())
    }

    /// Records the upload with `write` (which inserts its `files` row) and releases the
    /// reservation, both under the ledger's lock; the reservation ends either way.
    pub async fn complete<T, E, F>(mut self, write: F) -> Result<T, E>
    where
        F: AsyncFnOnce() -> Result<T, E>,
    {
        if self.quota.is_none() {
            return write().await;
        }
        let ledger = Arc::clone(&self.ledger);
        let _guard = ledger.lock.lock().await;
        let written = write().await;
        self.release();
        written
    }

    fn release(&mut self) {
        self.ledger
            .reserved
            .fetch_sub(std::mem::take(&mut self.bytes), Ordering::SeqCst);
    }
}

impl Drop for Reservation {
    fn drop(&mut self) {
        self.release();
    }
}

/// What the tenant's `files` rows add up to.
async fn stored_bytes(pool: &TenantPool) -> Result<u64, QuotaError> {
    let conn = pool.get().await?;
    let sum: i64 = conn
        .query_one(
            "SELECT coalesce(sum(size_bytes), 0)::bigint FROM files",
            &[],
        )
        .await?
        .get(0);
    Ok(sum.max(0) as u64)
}
