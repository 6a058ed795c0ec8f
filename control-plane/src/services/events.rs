//! Change announcements: a tenant's status, domains or plan changed, or a plan's limits
//! did, so caches (the gateway's) must forget what they hold. Announcing waits until
//! every listener in this process has forgotten, so the request after a change is
//! served by the new state. Changes made by other processes arrive through
//! [`super::change_feed`], which announces them here too.

use std::sync::{Arc, RwLock, Weak};

use futures::future::BoxFuture;
use uuid::Uuid;

/// What changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Change {
    Tenant(Uuid),
    /// Some plan's limits.
    Plans,
    /// The master key version new secrets are sealed with (`keys rotate`).
    Keys,
    /// The recorded tenant migration set (a fleet run recorded new migrations).
    Migrations,
    /// Anything at all: announcements may have been missed.
    Everything,
}

/// A cache that follows changes.
pub trait Listener: Send + Sync {
    fn forget(&self, change: Change) -> BoxFuture<'_, ()>;
}

/// Cheap to clone; every clone announces to the same listeners.
#[derive(Clone, Default)]
pub struct TenantEvents {
    // Weak: a listener (a gateway) lives as long as its owner keeps it, not as long as
    // the services do.
    listeners: Arc<RwLock<Vec<Weak<dyn Listener>>>>,
}

impl TenantEvents {
    /// Registers `listener` for every change announced from now on.
    pub fn listen(&self, listener: Weak<dyn Listener>) {
        let mut listeners = self.listeners.write().unwrap_or_else(|p| p.into_inner());
        listeners.retain(|l| l.strong_count() > 0);
        listeners.push(listener);
    }

    /// Announces that tenant `id` changed.
    pub async fn changed(&self, id: Uuid) {
        self.announce(Change::Tenant(id)).await;
    }

    /// Announces that a plan's limits changed.
    pub async fn plans_changed(&self) {
        self.announce(Change::Plans).await;
    }

    /// Has every listener in this process forget what `change` makes stale.
    pub async fn announce(&self, change: Change) {
        let listeners: Vec<Arc<dyn Listener>> = self
            .listeners
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .filter_map(Weak::upgrade)
            .collect();
        for listener in listeners {
            listener.forget(change).await;
        }
    }
}
