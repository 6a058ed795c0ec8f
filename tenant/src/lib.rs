//! The tenant database: its schema migrations, and (later) the tenant-facing API.
//!
//! This crate knows nothing of other tenants or of the owner database: callers hand it a
//! connection to one tenant's database.

pub mod api;
pub mod audit;
pub mod auth;
pub mod context;
pub mod demo;
pub mod directory;
pub mod integrations;
pub mod ledger;
pub mod migrations;
pub mod permissions;
pub mod pool;
pub mod prepared;
pub mod profile;
pub mod sign_in;
pub mod text;
pub mod users;

pub use context::{Limits, TenantContext};
pub use profile::TenantProfile;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("tenant migration failed: {}", chain(.0))]
    Migration(#[from] refinery::Error),
    #[error("tenant database error: {}", chain(.0))]
    Db(#[from] tokio_postgres::Error),
    #[error("tenant migration source: {0}")]
    Source(String),
}

/// An error and its causes on one line: refinery and tokio-postgres put the useful part
/// (the server's message) in the source, not in their own `Display`.
pub fn chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        out.push_str(": ");
        out.push_str(&s.to_string());
        source = s.source();
    }
    out
}

pub type Result<T> = std::result::Result<T, Error>;
