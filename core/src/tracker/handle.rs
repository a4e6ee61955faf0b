//! A handle on one service of a tracker: no name lookup per call.

use super::QuotaTracker;
use crate::error::QuotaError;
use crate::rules::Request;
use crate::usage::{Raised, Recorded, ServiceUsage};

/// One service of a [`QuotaTracker`], from [`QuotaTracker::service`]: the same operations as
/// the tracker's, without looking the name up on every call. `Copy`; borrows the tracker.
///
/// A handle names one position for good: once [`QuotaTracker::reconfigure`] removes its
/// service, every fallible call answers [`QuotaError::UnknownService`] (even if the name is
/// added again: that is a new service), [`can_call`](Self::can_call) is `false`, and
/// [`usage`](Self::usage) and [`reserve_allocation`](Self::reserve_allocation) describe the
/// service as it was removed.
#[derive(Clone, Copy)]
pub struct Service<'t> {
    tracker: &'t QuotaTracker,
    position: usize,
}

/// A small copyable index naming a service of a tracker, for code that keeps handles (in a
/// struct, a map, another thread). It means the same service only for the tracker that gave
/// it, or one built from the same config; [`QuotaTracker::service_by_id`] turns it back into
/// a [`Service`] (`None` once the service was removed).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ServiceId(u32);

impl ServiceId {
    pub(crate) fn index(self) -> usize {
        self.0 as usize
    }
}

impl<'t> Service<'t> {
    pub(super) fn new(tracker: &'t QuotaTracker, position: usize) -> Self {
        Service { tracker, position }
    }

    /// The tracker this handle borrows.
    pub(super) fn tracker(&self) -> &'t QuotaTracker {
        self.tracker
    }

    /// The service's position in its tracker.
    pub(crate) fn position(&self) -> usize {
        self.position
    }

    /// This service's id.
    pub fn id(&self) -> ServiceId {
        // A tracker's services fit in memory, so their count fits in a u32 on every target
        // the tracker supports; saturate rather than wrap if it ever did not.
        ServiceId(u32::try_from(self.position).unwrap_or(u32::MAX))
    }

    /// The service's name.
    pub fn name(&self) -> &'t str {
        &self.tracker.slot(self.position).name
    }

    /// How the service's calls are admitted (as the config in force says): `Local` calls
    /// never wait for the store; `Exact` and `Leased` ones may.
    pub fn admission(&self) -> crate::Admission {
        self.tracker.slot(self.position).settings().config.admission
    }

    /// [`QuotaTracker::record_call`] on this service.
    #[inline]
    pub fn record(&self, count: u64) -> Result<Recorded<'t>, QuotaError> {
        self.tracker.update(self.position, Request::record(count))
    }

    /// [`QuotaTracker::try_record`] on this service.
    #[inline]
    pub fn try_record(&self, count: u64) -> Result<Recorded<'t>, QuotaError> {
        let request = self.tracker.admission(count, false);
        self.tracker.update(self.position, request)
    }

    /// [`QuotaTracker::try_record_priority`] on this service: may use the reserve, up to the
    /// limit.
    #[inline]
    pub fn try_record_priority(&self, count: u64) -> Result<Recorded<'t>, QuotaError> {
        let request = self.tracker.admission(count, true);
        self.tracker.update(self.position, request)
    }

    /// [`record`](Self::record), answering only the remaining count (`limit - used`, 0 once
    /// the limit is reached): for hot loops that need no more. Transitions, observers and
    /// saves are the same as `record`'s; nothing else is built.
    #[inline]
    pub fn record_remaining(&self, count: u64) -> Result<u64, QuotaError> {
        self.tracker
            .update_remaining(self.position, Request::record(count))
    }

    /// [`try_record`](Self::try_record), answering only the remaining count (see
    /// [`record_remaining`](Self::record_remaining)); a denial is the same error.
    #[inline]
    pub fn try_record_remaining(&self, count: u64) -> Result<u64, QuotaError> {
        let request = self.tracker.admission(count, false);
        self.tracker.update_remaining(self.position, request)
    }

    /// [`QuotaTracker::raise_used`] on this service.
    pub fn raise_used(
        &self,
        at_least: u64,
        resets_at_ms: Option<u64>,
    ) -> Result<Raised<'t>, QuotaError> {
        self.tracker.raise_at(self.position, at_least, resets_at_ms)
    }

    /// [`QuotaTracker::can_call`] on this service.
    pub fn can_call(&self) -> bool {
        self.tracker.can_call_at(self.position)
    }

    /// [`QuotaTracker::usage`] of this service.
    pub fn usage(&self) -> ServiceUsage<'t> {
        self.tracker.usage_at(self.position)
    }

    /// [`QuotaTracker::usage_limits`] of this service.
    pub fn usage_limits(&self) -> Vec<ServiceUsage<'t>> {
        self.tracker.usage_limits_at(self.position)
    }

    /// [`QuotaTracker::reserve_allocation`] of this service.
    pub fn reserve_allocation(&self) -> u64 {
        self.tracker.slot(self.position).settings().rules.reserve
    }
}

impl std::fmt::Debug for Service<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Service")
            .field("name", &self.name())
            .field("id", &self.id())
            .finish()
    }
}
