//! Integration tests: a real PostgreSQL, the real service on a random port, real files.

mod helpers;

mod auth;
mod backups;
mod browser;
mod cli;
mod connections;
mod dashboard;
mod files;
mod fleet;
mod gateway;
mod hardening;
mod health;
mod hosts;
mod isolation;
mod keys;
mod limits;
mod maintenance;
mod metering;
mod moves;
mod openapi;
mod pool_policy;
mod provisioning;
mod records;
mod recovery;
mod replicas;
mod scram;
mod scratch_cluster;
mod servers;
mod sessions;
mod settings;
mod sign_in_throttling;
mod tenant_auth;
mod tenant_validation;
mod tls;
mod validation;
