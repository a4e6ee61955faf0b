//! What a document forgets, reading no clock: a service's windows past the latest
//! [`WINDOWS_KEPT`](StoredState::WINDOWS_KEPT), records that no resend can reach any more, and
//! the least recently seen records past [`RECORDS_KEPT`](StoredState::RECORDS_KEPT).

use super::StoredState;
use crate::sorted::between;
use crate::store::InstanceId;

impl StoredState {
    /// Keeps the service's latest windows and the records that may still see a resend (and
    /// `keep`'s, whose operation is being recorded); keeps at most
    /// [`RECORDS_KEPT`](Self::RECORDS_KEPT) records in all.
    pub(super) fn forget_old(&mut self, service: &str, keep: Option<InstanceId>) {
        self.forget_old_windows(service);
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

    /// Keeps the service's latest [`WINDOWS_KEPT`](Self::WINDOWS_KEPT) windows of each window
    /// spec.
    pub(super) fn forget_old_windows(&mut self, service: &str) {
        // Each window spec's windows are consecutive, oldest first: past the latest
        // WINDOWS_KEPT of a spec, the oldest go.
        let keys: Vec<(String, u64)> = self
            .service_windows(service)
            .map(|((_, spec, start), _)| (spec.clone(), *start))
            .collect();
        let mut at = 0;
        while at < keys.len() {
            let same = keys[at..]
                .iter()
                .take_while(|(s, _)| *s == keys[at].0)
                .count();
            for (spec, start) in &keys[at..at + same.saturating_sub(Self::WINDOWS_KEPT)] {
                self.windows
                    .remove(&(service.to_owned(), spec.clone(), *start));
            }
            at += same;
        }
    }

    /// The windows of `service`, by spec key, then start.
    fn service_windows(
        &self,
        service: &str,
    ) -> impl Iterator<Item = (&(String, String, u64), &super::StoredWindow)> {
        let first = (service.to_owned(), String::new(), 0);
        let last = (service.to_owned(), "~".to_owned(), 0);
        between(&self.windows, &first, &last)
    }

    /// Whether a record kept until `until_ms` sees no more resends: a window of the service
    /// started at or after it, no later than two of its spec's longest windows and a grace
    /// after it (time moved on; a window further off, from a host whose clock is far ahead,
    /// does not count), or the service keeps [`WINDOWS_KEPT`](Self::WINDOWS_KEPT) windows of
    /// a spec, all after it, and no window of any spec from before it (its windows are gone: a
    /// resend would only add to a window forgotten again).
    fn outlived(&self, service: &str, until_ms: u64) -> bool {
        if until_ms == u64::MAX {
            // A window ending at the end of time (a bogus clock): kept until evicted.
            return false;
        }
        // (spec key, first start, windows) of the spec being counted.
        let mut group: Option<(&str, u64, usize)> = None;
        let mut full_after = false;
        // The record's window may be of any spec (records do not say which): a spec whose kept
        // windows all came after it proves nothing while another spec still has a window from
        // before it (a host far ahead on a short spec).
        let mut earliest = u64::MAX;
        for ((_, spec, start), window) in self.service_windows(service) {
            earliest = earliest.min(*start);
            let horizon = window
                .spec
                .max_ms()
                .saturating_mul(2)
                .saturating_add(Self::RECORD_GRACE_MS);
            if *start >= until_ms && *start <= until_ms.saturating_add(horizon) {
                return true;
            }
            match &mut group {
                Some((key, _, count)) if *key == spec.as_str() => *count += 1,
                _ => group = Some((spec.as_str(), *start, 1)),
            }
            if let Some((_, first, count)) = group {
                full_after |= first >= until_ms && count >= Self::WINDOWS_KEPT;
            }
        }
        full_after && earliest >= until_ms
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
