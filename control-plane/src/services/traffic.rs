//! How busy the gateway is: a count of the tenant requests it admitted, so background
//! work (backups) can tell a quiet service from one serving traffic, and yield to it.

use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// Shared by the gateway (which counts) and background jobs (which read the rate).
#[derive(Clone, Default)]
pub struct Traffic {
    admitted: Arc<AtomicU64>,
    /// The last reading: when, the count then, and the rate worked out from the one before.
    last: Arc<Mutex<Option<(Instant, u64, f64)>>>,
}

/// Readings closer together than this reuse the last rate.
const WINDOW: Duration = Duration::from_millis(250);

impl Traffic {
    /// One tenant request admitted.
    pub fn record(&self) {
        self.admitted.fetch_add(1, Ordering::Relaxed);
    }

    /// Requests per second since the previous reading (0 at the first).
    pub fn rate(&self) -> f64 {
        let now = Instant::now();
        let count = self.admitted.load(Ordering::Relaxed);
        let mut last = self.last.lock().unwrap_or_else(|p| p.into_inner());
        match *last {
            Some((at, _, rate)) if now - at < WINDOW => rate,
            Some((at, before, _)) => {
                let rate = (count - before) as f64 / (now - at).as_secs_f64();
                *last = Some((now, count, rate));
                rate
            }
            None => {
                *last = Some((now, count, 0.0));
                0.0
            }
        }
    }
}
