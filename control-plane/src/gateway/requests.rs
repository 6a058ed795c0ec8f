//! Requests served per tenant, counted by the gateway and taken by metering.

use std::collections::HashMap;
use std::sync::Mutex;

use uuid::Uuid;

use super::Gateway;

#[derive(Default)]
pub(super) struct RequestCounts(Mutex<HashMap<Uuid, u64>>);

impl RequestCounts {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<Uuid, u64>> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl Gateway {
    pub(super) fn count_request(&self, tenant: Uuid) {
        let mut counts = self.requests.lock();
        *counts.entry(tenant).or_default() += 1;
    }

    /// Takes the request counts gathered since the last call, leaving zero behind.
    /// Whoever takes them and fails to record them hands them back with
    /// [`Gateway::restore_request_counts`], so no request is lost or counted twice.
    pub fn take_request_counts(&self) -> HashMap<Uuid, u64> {
        let mut counts = self.requests.lock();
        std::mem::take(&mut *counts)
    }

    /// Adds counts back (taken but not recorded) to those gathered since.
    pub fn restore_request_counts(&self, taken: HashMap<Uuid, u64>) {
        let mut counts = self.requests.lock();
        for (id, n) in taken {
            *counts.entry(id).or_default() += n;
        }
    }
}
