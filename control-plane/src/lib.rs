//! The database-per-tenant control plane: configuration, provisioning and its
//! reconciler, the owner API, and the CLI that drives them. See `DESIGN.md` for the map.

pub mod app;
pub mod auth;
pub mod billing;
pub mod cli;
pub mod config;
mod dashboard;
mod error;
pub mod fleet;
pub mod gateway;
pub mod http;
pub mod installation;
pub mod metering;
pub mod operators;
pub mod pg;
pub mod provisioning;
pub mod secrets;
pub mod sign_in;
pub mod telemetry;

pub use app::{AppState, Application, Services};
pub use config::Config;
pub use error::{Error, Result};
