//! The shared counter of a simulated run, in either mode.

use super::{Mode, RacyCounts};
use crate::error::QuotaError;
use crate::tracker::QuotaTracker;
use crate::usage::{Recorded, Snapshot};

/// Where a run's calls are counted: through the tracker (locked) or through the racy
/// demonstration. The native driver ([`threads::run`](super::threads::run)) and the dashboard
/// both count through it.
///
/// ```
/// use quota_core::sim::{Counter, Mode};
/// use quota_core::TrackerConfig;
///
/// let counter = Counter::new(TrackerConfig::defaults(), Mode::Racy, 0)?;
/// counter.record("tiingo", 2, 0, || {})?;
/// assert_eq!(counter.mode(), Mode::Racy);
/// assert_eq!(counter.snapshot(0).service("tiingo").unwrap().used, 2);
/// # Ok::<(), quota_core::QuotaError>(())
/// ```
#[derive(Debug)]
pub enum Counter {
    /// Through a [`QuotaTracker`] (boxed: it is much larger than the racy counts).
    Locked(Box<QuotaTracker>),
    /// DEMONSTRATION ONLY: through [`RacyCounts`].
    Racy(RacyCounts),
}

impl Counter {
    /// A counter of `config` in `mode`: a tracker on the system clock, or racy counts with
    /// windows starting at `now_ms`.
    ///
    /// Errors: [`QuotaError::InvalidConfig`].
    pub fn new(config: crate::TrackerConfig, mode: Mode, now_ms: u64) -> Result<Self, QuotaError> {
        Ok(match mode {
            Mode::Locked => Counter::Locked(Box::new(QuotaTracker::new(config)?)),
            Mode::Racy => Counter::Racy(RacyCounts::new(config, now_ms)?),
        })
    }

    /// How this counter counts.
    pub fn mode(&self) -> Mode {
        match self {
            Counter::Locked(_) => Mode::Locked,
            Counter::Racy(_) => Mode::Racy,
        }
    }

    /// Records `count` units to `service`: one [`QuotaTracker::record_call`], or one racy
    /// update with `between()` run between the copy and the write-back (where other workers
    /// get to run). The tracker's own clock applies in locked mode, `now_ms` in racy mode.
    pub fn record(
        &self,
        service: &str,
        count: u64,
        now_ms: u64,
        between: impl FnOnce(),
    ) -> Result<Recorded<'_>, QuotaError> {
        match self {
            Counter::Locked(tracker) => tracker.record_call(service, count),
            Counter::Racy(counts) => counts.record(service, count, now_ms, between),
        }
    }

    /// Every service's usage as counted now (racy mode: as stored at `now_ms`).
    pub fn snapshot(&self, now_ms: u64) -> Snapshot {
        match self {
            Counter::Locked(tracker) => tracker.snapshot(),
            Counter::Racy(counts) => counts.snapshot(now_ms),
        }
    }

    /// The tracker, in locked mode.
    pub fn tracker(&self) -> Option<&QuotaTracker> {
        match self {
            Counter::Locked(tracker) => Some(tracker),
            Counter::Racy(_) => None,
        }
    }
}
