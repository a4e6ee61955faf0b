//! Issued, recorded and lost units per service.

use crate::usage::Snapshot;

/// One service's units in a simulation run: `issued` by the workers, `recorded` by the store.
///
/// `recorded` is read from the store ([`ServiceUsage::total_recorded`](crate::ServiceUsage),
/// summed across windows), never from the workers' own tally, so `lost` is what the store
/// really dropped.
///
/// ```
/// use quota_core::sim::ServiceCounts;
/// let counts = ServiceCounts { service: "tiingo".into(), issued: 10, recorded: 7 };
/// assert_eq!(counts.lost(), 3);
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceCounts {
    /// The service's name.
    pub service: String,
    /// Units the workers attempted.
    pub issued: u64,
    /// Units the store counted, across all windows.
    pub recorded: u64,
}

impl ServiceCounts {
    /// `issued - recorded` (0 if the store somehow counted more).
    pub fn lost(&self) -> u64 {
        self.issued.saturating_sub(self.recorded)
    }

    /// One entry per service of `snapshot`, in its order: `issued[i]` units issued to service
    /// `i` (missing entries count as 0), recorded from the snapshot's `total_recorded`.
    pub fn tally(snapshot: &Snapshot, issued: &[u64]) -> Vec<ServiceCounts> {
        snapshot
            .services()
            .iter()
            .enumerate()
            .map(|(index, usage)| ServiceCounts {
                service: usage.name.to_string(),
                issued: issued.get(index).copied().unwrap_or(0),
                recorded: usage.total_recorded,
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{ManualClock, QuotaTracker, TrackerConfig};

    #[test]
    fn recorded_comes_from_the_store_across_windows() {
        let clock = ManualClock::new(0);
        let tracker =
            QuotaTracker::new_with_clock(TrackerConfig::defaults(), clock.clone()).unwrap();
        tracker.record_call("finnhub", 50).unwrap();
        clock.advance(60_000); // a new minute: finnhub's `used` restarts
        tracker.record_call("finnhub", 20).unwrap();
        let snapshot = tracker.snapshot();
        assert_eq!(snapshot.service("finnhub").unwrap().used, 20);
        let counts = ServiceCounts::tally(&snapshot, &[0, 75]);
        assert_eq!(counts.len(), 3);
        assert_eq!(counts[1].service, "finnhub");
        assert_eq!((counts[1].recorded, counts[1].lost()), (70, 5));
        assert_eq!((counts[2].issued, counts[2].lost()), (0, 0));
    }
}
