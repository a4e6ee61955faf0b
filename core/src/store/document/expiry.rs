//! What a document forgets, reading no clock: a service's windows past the latest
//! [`WINDOWS_KEPT`](StoredState::WINDOWS_KEPT), records that no resend can reach any more, and
//! the least recently seen records past [`RECORDS_KEPT`](StoredState::RECORDS_KEPT).

use super::StoredState;
use crate::sorted::between;
use crate::store::InstanceId;
use crate::window::Period;

impl StoredState {
    /// Keeps the service's latest windows and the records that may still see a resend (and
    /// `keep`'s, whose operation is being recorded); keeps at most
    /// [`RECORDS_KEPT`](Self::RECORDS_KEPT) records in all.
    pub(super) fn forget_old(&mut self, service: &str, keep: Option<InstanceId>) {
        for period in Period::ALL {
            let first = (service.to_owned(), period, 0);
            let last = (service.to_owned(), period, u64::MAX);
            let starts: Vec<u64> = between(&self.windows, &first, &last)
                .map(|((_, _, start), _)| *start)
                .collect();
            for start in starts
                .iter()
                .take(starts.len().saturating_sub(Self::WINDOWS_KEPT))
            {
                self.windows.remove(&(service.to_owned(), period, *start));
            }
        }
        // Records expire only when a window starts (so the scan runs only then).
        if !std::mem::take(&mut self.new_window) {
            self.evict_over_bound();
            return;
        }
        let first = (service.to_owned(), InstanceId::from_u128(0));
        let last = (service.to_owned(), InstanceId::from_u128(u128::MAX));
        let expired: Vec<(String, InstanceId)> = between(&self.ops, &first, &last)
            .filter(|(_, ops)| Some(ops.instance) != keep && self.outlived(service, ops.until_ms))
            .map(|(key, _)| key.clone())
            .collect();
        for key in expired {
            self.ops.remove(&key);
        }
        self.evict_over_bound();
    }

    /// Whether a record kept until `until_ms` sees no more resends: a window of the service
    /// started at or after it, no later than two periods and a grace after it (time moved on;
    /// a window further off, from a host whose clock is far ahead, does not count), or the
    /// service keeps [`WINDOWS_KEPT`](Self::WINDOWS_KEPT) windows of a period, all after it
    /// (its windows are gone: a resend would only add to a window forgotten again).
    fn outlived(&self, service: &str, until_ms: u64) -> bool {
        if until_ms == u64::MAX {
            // A window ending at the end of time (a bogus clock): kept until evicted.
            return false;
        }
        Period::ALL.iter().any(|&period| {
            let horizon = period
                .max_ms()
                .saturating_mul(2)
                .saturating_add(Self::RECORD_GRACE_MS);
            let first = (service.to_owned(), period, until_ms);
            let last = (service.to_owned(), period, until_ms.saturating_add(horizon));
            if between(&self.windows, &first, &last).next().is_some() {
                return true;
            }
            let all = (service.to_owned(), period, 0);
            let end = (service.to_owned(), period, u64::MAX);
            let mut windows = between(&self.windows, &all, &end).peekable();
            windows
                .peek()
                .is_some_and(|((_, _, start), _)| *start >= until_ms)
                && between(&self.windows, &all, &end).count() >= Self::WINDOWS_KEPT
        })
    }

    /// Past [`RECORDS_KEPT`](Self::RECORDS_KEPT) records, evicts the least recently seen down
    /// to nine tenths of it (so the sort runs once per many operations), counts and logs it.
    fn evict_over_bound(&mut self) {
        if self.ops.len() <= Self::RECORDS_KEPT {
            return;
        }
        // The least `seen` that keeps at most nine tenths: searched by counting, not by sorting
        // (a sort of these keys would add its own code to the JS module).
        let keep = Self::RECORDS_KEPT / 10 * 9;
        let older = |cutoff: u64| self.ops.values().filter(|ops| ops.seen < cutoff).count();
        let (mut low, mut high) = (0, self.applies.saturating_add(1));
        while low < high {
            let mid = low + (high - low) / 2;
            if self.ops.len() - older(mid) <= keep {
                high = mid;
            } else {
                low = mid + 1;
            }
        }
        let before = self.ops.len();
        self.ops.retain(|_, ops| ops.seen >= low);
        let gone = before - self.ops.len();
        self.evicted = self.evicted.saturating_add(gone as u64);
        crate::observers::quietly(|| {
            log::warn!(
                "quota: the store kept more than {} operations records; evicted the {gone} least \
                 recently seen (a resend of theirs would count again)",
                Self::RECORDS_KEPT
            )
        });
    }
}
