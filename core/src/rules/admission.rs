//! Admission: what a call asks for, and the rule that admits it or names why not.

use super::ServiceRules;
use crate::error::DenyReason;

/// What a call asks of a service.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Request {
    /// Only roll over if due (reads: `usage`, `can_call`, snapshots).
    Read,
    /// Count `n` calls, always (`record_call`).
    Record(u64),
    /// Count `n` calls only if admitted (`try_record`, `try_record_priority`): see
    /// [`ServiceRules::denies`].
    TryRecord {
        count: u64,
        reduced_rate: bool,
        priority: bool,
    },
}

impl ServiceRules {
    /// Whether one more call is admitted at `used` (`can_call`: normal admission).
    pub(crate) fn allows(&self, used: u64, reduced_rate: bool) -> bool {
        self.denies(used, 1, reduced_rate, false).is_none()
    }

    /// The most calls admission lets the window's count reach: the limit for a priority call,
    /// `min(critical threshold, limit - reserve)` for a normal one, and in reduced rate no more
    /// than the reduced allowance either way.
    #[inline]
    pub(crate) fn cap(&self, reduced_rate: bool, priority: bool) -> u64 {
        let cap = if priority {
            self.limit
        } else {
            self.normal_cap
        };
        if reduced_rate {
            cap.min(self.reduced_allowance)
        } else {
            cap
        }
    }

    /// The admission rule, the one place it is written (the tracker's step, `can_call`, and
    /// shared admission through [`shared_rule`](Self::shared_rule) all apply it): `count`
    /// more calls at `used` are admitted if `used + count` is at most
    /// [`cap`](Self::cap). A count of 0 asks about one call.
    ///
    /// The rule that refuses, if one does, naming first the rules that refuse priority calls
    /// too: [`Limit`](DenyReason::Limit) (past the limit), then
    /// [`ReducedRate`](DenyReason::ReducedRate) (past the reduced allowance); then, for a
    /// normal call only, [`Critical`](DenyReason::Critical) (at the Critical level, or the
    /// call would pass it) or [`Reserve`](DenyReason::Reserve) (the call would take calls of
    /// the reserve, and the reserve comes before the Critical threshold). So `Critical` and
    /// `Reserve` mean: a priority call would be admitted.
    #[inline]
    pub(crate) fn denies(
        &self,
        used: u64,
        count: u64,
        reduced_rate: bool,
        priority: bool,
    ) -> Option<DenyReason> {
        let after = used.saturating_add(count.max(1));
        if after <= self.cap(reduced_rate, priority) {
            return None;
        }
        Some(self.refusing(used, after, reduced_rate))
    }

    /// The reason [`denies`](Self::denies) names for a refused count that brings `used` to
    /// `after`.
    #[cold]
    fn refusing(&self, used: u64, after: u64, reduced_rate: bool) -> DenyReason {
        if after > self.limit {
            DenyReason::Limit
        } else if reduced_rate && after > self.reduced_allowance {
            DenyReason::ReducedRate
        } else if self.reserve_first && used < self.thresholds.critical_at {
            DenyReason::Reserve
        } else {
            DenyReason::Critical
        }
    }

    /// `(below, cap)` for a shared store's admission ([`AdmitRequest`](crate::AdmitRequest)):
    /// admit while the total is below `below` and total + count is at most `cap`. Both are
    /// [`cap`](Self::cap): for a count of at least 1 that is the rule of
    /// [`denies`](Self::denies), and for a count of 0 (`can_call`) it asks about one call. A
    /// lease's ceiling is the normal `cap`: a block never holds calls of the reserve.
    pub(crate) fn shared_rule(&self, reduced_rate: bool, priority: bool) -> (u64, u64) {
        let cap = self.cap(reduced_rate, priority);
        (cap, cap)
    }
}
