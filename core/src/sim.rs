//! A seeded workload simulator: what concurrent workers call, and what a store ends up counting.
//!
//! The simulator is pure: the same [`Workload`] and seed give every worker the same calls, on
//! every machine and on `wasm32`. Drivers decide how the calls are issued: [`threads::run`] uses
//! real OS threads (native only), the dashboard uses async tasks in the browser.
//!
//! - [`Workload`]: how many workers, how fast, which services (weights), how large each call is,
//!   bursts, seed.
//! - [`OpStream`]: one worker's endless, deterministic sequence of [`Op`]s.
//! - [`Mode`]: count through the [`QuotaTracker`](crate::QuotaTracker) (`Locked`) or through
//!   [`RacyCounts`] (`Racy`), the lost-update bug kept as a demonstration.
//! - [`Counter`]: the one shared counter of a run, in either mode (the native driver and the
//!   dashboard both count through it).
//! - [`ServiceCounts`]: per service, the units issued, the units the store recorded (read from
//!   the store, never from the workers' own tally) and the difference, lost.
//!
//! ```
//! use quota_core::sim::{ServiceCounts, Workload};
//! use quota_core::{QuotaTracker, TrackerConfig};
//!
//! let config = TrackerConfig::defaults();
//! let workload = Workload::even(&config);
//! let tracker = QuotaTracker::new(config.clone())?;
//! let mut issued = vec![0; config.services.len()];
//! for op in workload.stream(&config, 0)?.take(100) {
//!     tracker.record_call(&config.services[op.service].name, op.count)?;
//!     issued[op.service] += op.count;
//! }
//! let counts = ServiceCounts::tally(&tracker.snapshot(), &issued);
//! assert!(counts.iter().all(|c| c.lost() == 0));
//! assert_eq!(counts.iter().map(|c| c.recorded).sum::<u64>(), 100);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

mod counter;
mod racy;
mod stream;
mod tally;
#[cfg(not(target_arch = "wasm32"))]
pub mod threads;
mod workload;

pub use counter::Counter;
pub use racy::{RacyCounts, RacyState};
pub use stream::{Bursts, CallSize, Op, OpStream};
pub use tally::ServiceCounts;
pub use workload::{Share, Workload, WorkloadError};

use std::fmt;
use std::str::FromStr;

/// How the simulated calls are counted.
///
/// ```
/// use quota_core::sim::Mode;
/// assert_eq!("racy".parse::<Mode>(), Ok(Mode::Racy));
/// assert_eq!(Mode::Locked.as_str(), "locked");
/// assert!("fast".parse::<Mode>().is_err());
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Mode {
    /// Through [`QuotaTracker::record_call`](crate::QuotaTracker::record_call): every unit is
    /// counted, lost is always 0.
    #[default]
    Locked,
    /// Through [`RacyCounts`]: copy the whole state, yield, change the copy, write it back.
    /// Concurrent workers overwrite each other's updates. A demonstration of the bug only.
    Racy,
}

impl Mode {
    /// Both modes, locked first.
    pub const ALL: [Mode; 2] = [Mode::Locked, Mode::Racy];

    /// The lowercase word for this mode: `locked` or `racy`.
    pub fn as_str(self) -> &'static str {
        match self {
            Mode::Locked => "locked",
            Mode::Racy => "racy",
        }
    }
}

impl fmt::Display for Mode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Mode {
    type Err = WorkloadError;

    fn from_str(word: &str) -> Result<Self, Self::Err> {
        Mode::ALL
            .into_iter()
            .find(|mode| mode.as_str() == word)
            .ok_or_else(|| {
                WorkloadError(format!(
                    "unknown mode {word:?}: expected \"locked\" or \"racy\""
                ))
            })
    }
}
