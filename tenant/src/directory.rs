//! Who is where, across tenants: the tenant API tells the control plane when one of its
//! users comes or goes, so "which tenants am I in?" can be answered without visiting every
//! tenant database. Kept outside the tenant's transaction: a lost update is repaired by
//! `control-plane tenants reindex-users`, never by failing the user's request.

pub use futures_util::future::BoxFuture;
use uuid::Uuid;

pub trait UserDirectory: Send + Sync {
    /// Tenant `tenant` has (`present`: an active user) or no longer has a user `email`.
    fn user_changed<'a>(&'a self, tenant: Uuid, email: &'a str, present: bool)
    -> BoxFuture<'a, ()>;
}

/// A directory that records nothing (tools and tests that serve one tenant).
pub struct NoDirectory;

impl UserDirectory for NoDirectory {
    fn user_changed<'a>(&'a self, _: Uuid, _: &'a str, _: bool) -> BoxFuture<'a, ()> {
        Box::pin(async {})
    }
}
