//! The web layer, on top of everything else: the state handlers see ([`state`]), the
//! router ([`router`]), what every request goes through ([`front`]), the tenant dispatch
//! ([`dispatch`]), the error envelope ([`error`]), the owner API
//! (`owner_*`), health and metrics, and the server loop ([`serve`]). The dashboard
//! (`crate::dashboard`) is the other half of the web layer. Nothing below the web layer
//! imports it.

pub mod access_log;
pub mod dispatch;
pub mod error;
pub mod extract;
pub mod front;
mod health;
pub mod metrics;
pub mod openapi;
pub mod owner_audit;
mod owner_auth;
mod owner_backups;
mod owner_migrations;
mod owner_moves;
mod owner_operators;
mod owner_plans;
mod owner_servers;
mod owner_tenants;
mod public;
pub mod router;
mod serve;
pub mod session;
pub mod state;

pub use error::ApiError;
pub use front::REQUEST_TIMEOUT;
pub use owner_auth::{CurrentOperator, actor_of as owner_actor, user_agent};
pub use serve::{HEADER_READ_TIMEOUT, KEEP_ALIVE_IDLE, raise_open_file_limit, serve};
pub use state::AppState;

/// Largest request body the owner API accepts.
pub const MAX_BODY_BYTES: usize = 64 * 1024;
