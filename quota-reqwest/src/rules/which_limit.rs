//! Which limit of a service a provider's word is taken into, and when a denying limit resets.

use super::QuotaRules;
use quota_core::ServiceUsage;

impl QuotaRules {
    /// The limit (its place in `limits`, the service's
    /// [`usage_limits`](quota_core::Service::usage_limits)) that a provider's count resetting
    /// at `resets_at_ms` is taken into, and the reset to give
    /// [`raise_used`](quota_core::Service::raise_used): a reset just past the end of a current
    /// window (by [`reset_slack`](Self::reset_slack) at most) counts as that end; then core's
    /// own rule picks the limit ([`ServiceUsage::limit_for_reset`]). `None`: no limit's.
    pub(super) fn target(
        &self,
        limits: &[ServiceUsage<'_>],
        resets_at_ms: Option<u64>,
    ) -> Option<(usize, Option<u64>)> {
        let resets = resets_at_ms.map(|at| {
            // The nearest end before `at` within the slack (providers round to whole seconds).
            limits
                .iter()
                .map(|usage| usage.reset_at_ms)
                .filter(|&end| at > end && at - end <= self.reset_slack_ms)
                .max()
                .unwrap_or(at)
        });
        Some((ServiceUsage::limit_for_reset(limits, resets)?, resets))
    }
}

/// When the limit that denied a call of `limit` calls per window resets: the latest reset
/// among `limits` of that count (the denial names the count, not the window; two limits of
/// one count are rare, and waiting for the later is never too early). A service of one limit
/// has one.
pub(super) fn refusing_reset(limits: &[ServiceUsage<'_>], limit: u64) -> u64 {
    let of_count = limits.iter().filter(|usage| usage.limit == limit);
    of_count
        .map(|usage| usage.reset_at_ms)
        .max()
        // A reconfigure changed the count since: the latest reset of any limit.
        .or_else(|| limits.iter().map(|usage| usage.reset_at_ms).max())
        .unwrap_or(0)
}

/// The limit a rolling count that refills in `refill_ms` is taken into: the shortest window at
/// least that long, else the longest; the shortest without a refill time.
pub(super) fn limit_for_refill(
    limits: &[ServiceUsage<'_>],
    refill_ms: Option<u64>,
) -> Option<usize> {
    let length = |usage: &ServiceUsage<'_>| usage.reset_at_ms.saturating_sub(usage.window_start_ms);
    let by_length = |a: &usize, b: &usize| length(&limits[*a]).cmp(&length(&limits[*b]));
    let all = 0..limits.len();
    match refill_ms {
        None => all.min_by(by_length),
        Some(refill) => all
            .clone()
            .filter(|&at| length(&limits[at]) >= refill)
            .min_by(by_length)
            .or_else(|| all.max_by(by_length)),
    }
}
