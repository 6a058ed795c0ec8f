//! A test-only fault switch: makes provisioning, a backup or a restore stop at a chosen
//! point, as a crash would.
//! Only a build with the `fault-injection` feature (the test suite's) can arm it; in any
//! other build the checks never fire.

use std::sync::Mutex;

use owner::tenants::Step;

/// Where in a step the fault fires.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FaultPoint {
    /// The step's effect is done but not yet recorded in the tenant row.
    BeforeRecord(Step),
    /// The step is done and recorded; the next one has not started.
    AfterRecord(Step),
    /// Not a crash: just before the database step's CREATE DATABASE, the same statement
    /// of an earlier, killed attempt commits on its own orphaned server session (the
    /// server finishes a CREATE DATABASE whose client is gone).
    OrphanedCreateDatabase,
    /// A backup's database is dumped; its files are not archived yet.
    BackupDumped,
    /// A restore's database is loaded and checked; it has not been swapped in.
    RestoreLoaded,
    /// A restore's database is swapped in; the files are not.
    RestoreDatabaseSwapped,
    /// A move's copy is made and verified on the target; the tenant is not switched.
    MoveCopied,
}

/// One armed fault at a time; it fires once and disarms.
#[derive(Debug, Default)]
pub struct Faults {
    armed: Mutex<Option<FaultPoint>>,
}

impl Faults {
    #[cfg(feature = "fault-injection")]
    pub fn arm(&self, point: FaultPoint) {
        *self.armed.lock().unwrap_or_else(|p| p.into_inner()) = Some(point);
    }

    pub fn disarm(&self) {
        *self.armed.lock().unwrap_or_else(|p| p.into_inner()) = None;
    }

    /// Whether a fault is still waiting to fire.
    pub fn is_armed(&self) -> bool {
        self.armed
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .is_some()
    }

    /// Whether `point` is armed; disarms it.
    pub(crate) fn fires(&self, point: FaultPoint) -> bool {
        let mut armed = self.armed.lock().unwrap_or_else(|p| p.into_inner());
        let fires = *armed == Some(point);
        if fires {
            *armed = None;
        }
        fires
    }

    pub(crate) fn check(&self, point: FaultPoint) -> crate::Result<()> {
        let mut armed = self.armed.lock().unwrap_or_else(|p| p.into_inner());
        if *armed == Some(point) {
            *armed = None;
            return Err(crate::Error::InjectedFault(format!("{point:?}")));
        }
        Ok(())
    }
}
