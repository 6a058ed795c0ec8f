//! The shared handles that need no type of their own.

use tokio_util::task::TaskTracker;

/// The tenant migrations every tenant is brought to: one source, shared by
/// provisioning, fleet runs, fleet status and the dashboard, so they never disagree.
pub type MigrationSource = tenant::migrations::Source;

/// Background work (drives, fleet runs) that shutdown waits for.
pub type Tasks = TaskTracker;
