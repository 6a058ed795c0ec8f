//! A test-only fault switch: makes provisioning stop at a chosen point, as a crash would.

use std::sync::Mutex;

use owner::tenants::Step;

/// Where in a step the fault fires.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FaultPoint {
    /// The step's effect is done but not yet recorded in the tenant row.
    BeforeRecord(Step),
    /// The step is done and recorded; the next one has not started.
    AfterRecord(Step),
}

/// One armed fault at a time; it fires once and disarms.
#[derive(Debug, Default)]
pub struct Faults {
    armed: Mutex<Option<FaultPoint>>,
}

impl Faults {
    pub fn arm(&self, point: FaultPoint) {
        *self.armed.lock().unwrap_or_else(|p| p.into_inner()) = Some(point);
    }

    pub fn disarm(&self) {
        *self.armed.lock().unwrap_or_else(|p| p.into_inner()) = None;
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
