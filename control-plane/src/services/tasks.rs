//! The shared handles that need no type of their own.

use tokio_util::task::TaskTracker;

/// Background work (drives, fleet runs) that shutdown waits for.
pub type Tasks = TaskTracker;
