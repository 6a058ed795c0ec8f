//! The database-per-tenant control plane: configuration, provisioning and its
//! reconciler, the owner API, and the CLI that drives them. See `DESIGN.md` for the map.

pub mod app;
pub mod audit;
pub mod auth;
pub mod backups;
pub mod billing;
pub mod cli;
pub mod config;
pub mod customisation;
mod dashboard;
pub mod domains;
mod error;
pub mod finder;
pub mod fleet;
pub mod gateway;
pub mod http;
pub mod installation;
pub mod integration_sync;
pub mod integrations;
pub mod keys;
pub mod mailer;
pub mod metering;
pub mod operators;
pub mod pg;
pub mod provisioning;
pub mod secrets;
pub mod services;
pub mod sign_in;
pub mod telemetry;
pub mod views;
pub mod wiring;

pub use app::Application;
pub use config::Config;
pub use error::{Error, Result};
pub use http::state::AppState;
pub use wiring::Services;

/// The allocator of every program that links the service (its binary, the benches that
/// run it in-process, the tests). A request allocates and frees many small buffers across
/// worker threads; glibc's allocator spent over a tenth of the gateway's CPU time on them
/// (malloc, free and their consolidation in a profile of bench/src/gateway.rs).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;
