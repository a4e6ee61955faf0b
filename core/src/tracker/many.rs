//! Several services in one step (`try_record_many`, `hold_many`): their locks taken in
//! position order (the crate's one lock order), then every service's calls checked against
//! each of its limits before any is counted: all admitted, or none.

use super::{Held, QuotaTracker, SHARED};
use crate::config::Admission;
use crate::error::QuotaError;
use crate::rules::{Refusal, Request};
use crate::usage::Recorded;

impl QuotaTracker {
    /// Records the calls of several services only if normal admission allows every one of
    /// them (the rules of [`try_record`](Self::try_record), each service's against each of its
    /// limits): all are counted, or none. One atomic step: the services' locks are taken
    /// together, in config order, so no other call sees some counted and others not, and two
    /// threads cannot both take the last calls of any of them. For a call that spends two
    /// quotas at once (OpenAI: one request and 2,000 tokens).
    ///
    /// ```
    /// use quota_core::{Period, QuotaError, QuotaTracker, ServiceConfig, TrackerConfig};
    /// let config = TrackerConfig::new([
    ///     ServiceConfig::new("openai-requests", 500, Period::Minute),
    ///     ServiceConfig::new("openai-tokens", 30_000, Period::Minute),
    /// ]);
    /// let tracker = QuotaTracker::new(config)?;
    /// let both = tracker.try_record_many(&[("openai-requests", 1), ("openai-tokens", 2_000)])?;
    /// assert_eq!(both[1].usage.used, 2_000);
    /// // 40,000 tokens do not fit: the request is not counted either.
    /// let refused = tracker.try_record_many(&[("openai-requests", 1), ("openai-tokens", 40_000)]);
    /// assert!(matches!(refused, Err(QuotaError::Denied { .. })));
    /// assert_eq!(tracker.usage("openai-requests")?.used, 1);
    /// # Ok::<(), QuotaError>(())
    /// ```
    ///
    /// Returns each service's [`Recorded`], in the order asked. Errors: the first refusal
    /// ([`QuotaError::Denied`] names its service): of the services admitted by a store, in the
    /// order given, else of the `Local` ones, in config order; [`QuotaError::UnknownService`];
    /// [`QuotaError::InvalidCount`] for a count of 0 or a service named twice. On error
    /// nothing was recorded.
    ///
    /// Services whose admission is in a store (`Exact`, `Leased`) are asked first, each on its
    /// own (store I/O never runs under a lock), then the `Local` ones in one step; a refusal
    /// gives back what was admitted before it. Until the give-back, those calls are counted:
    /// a short window in which another call may be refused for them (never one in which more
    /// is admitted than the limits allow). The give-back of a window a raise reached since is
    /// forfeited (see [`StoreStats::forfeited_calls`](crate::StoreStats::forfeited_calls)).
    pub fn try_record_many(&self, calls: &[(&str, u64)]) -> Result<Vec<Recorded<'_>>, QuotaError> {
        let positions = self.positions_of(calls)?;
        let (recorded, _) = self.admit_many(&positions, false)?;
        Ok(recorded)
    }

    /// [`try_record_many`](Self::try_record_many) with priority admission (up to each limit:
    /// see [`try_record_priority`](Self::try_record_priority)).
    pub fn try_record_many_priority(
        &self,
        calls: &[(&str, u64)],
    ) -> Result<Vec<Recorded<'_>>, QuotaError> {
        let positions = self.positions_of(calls)?;
        let (recorded, _) = self.admit_many(&positions, true)?;
        Ok(recorded)
    }

    /// Each call's service position and count, in order.
    pub(super) fn positions_of(
        &self,
        calls: &[(&str, u64)],
    ) -> Result<Vec<(usize, u64)>, QuotaError> {
        calls
            .iter()
            .map(|&(service, count)| Ok((self.position(service)?, count)))
            .collect()
    }

    /// The input errors of [`admit_many`](Self::admit_many): a count of 0, a service named
    /// twice.
    pub(super) fn check_many(&self, calls: &[(usize, u64)]) -> Result<(), QuotaError> {
        for (at, &(position, count)) in calls.iter().enumerate() {
            let slot = self.slot(position);
            if count == 0 {
                return Err(slot.invalid_count(count, "count must be at least 1"));
            }
            if calls[..at].iter().any(|&(p, _)| p == position) {
                return Err(slot.invalid_count(count, "the service is named twice in one call"));
            }
        }
        Ok(())
    }

    /// Admits `calls` (each a service's position and its count), all or none: each one's
    /// [`Recorded`] and what it holds, in the order given. Services whose admission is in a
    /// store (`Exact`, `Leased`) are asked first, one after another (store I/O is never done
    /// under a lock); then the `Local` ones in one step under all their locks. A refusal gives
    /// back what was admitted before it: until then those calls were counted (a short window
    /// in which others may be refused for them: an under-admission, never an over-admission).
    pub(crate) fn admit_many(
        &self,
        calls: &[(usize, u64)],
        priority: bool,
    ) -> Result<(Vec<Recorded<'_>>, Vec<Held>), QuotaError> {
        self.check_many(calls)?;
        let reduced_rate = self.is_reduced_rate();
        let request = |at: usize| match priority {
            true => Request::priority(calls[at].1, reduced_rate),
            false => Request::normal(calls[at].1, reduced_rate),
        };
        for (at, &(position, count)) in calls.iter().enumerate() {
            if self.slot(position).queued_ahead(request(at)) {
                return Err(self.queued_refusal(position, count));
            }
        }
        // Plain loops below, not iterator chains: each chain is code of its own in the JS
        // module, which has a size budget.
        // Read without the locks, to pick a path: `admit_here` checks again under them.
        let mut shared = Vec::with_capacity(calls.len());
        for &(position, _) in calls {
            shared.push(!local(self.slot(position).settings().config.admission));
        }
        let mut admitted: Vec<Option<Admitted<'_>>> = Vec::with_capacity(calls.len());
        for at in 0..calls.len() {
            // Only shared services are admitted before `admit_here`.
            admitted.push(match SHARED && shared[at] {
                false => None,
                true => match Held::shared(self, calls[at].0, request(at)) {
                    Ok(pair) => Some(pair),
                    Err(error) => {
                        self.give_back(&admitted);
                        return Err(error);
                    }
                },
            });
        }
        if let Err(error) = self.admit_here(calls, &shared, request, &mut admitted) {
            self.give_back(&admitted);
            return match error {
                Some(error) => Err(error),
                // A service moved to or from shared admission meanwhile: asked again.
                None => self.admit_many(calls, priority),
            };
        }
        let mut recorded = Vec::with_capacity(calls.len());
        let mut held = Vec::with_capacity(calls.len());
        for (call, hold) in admitted.into_iter().flatten() {
            recorded.push(call);
            held.push(hold);
        }
        Ok((recorded, held))
    }

    /// Gives back what `admitted` holds: a refusal came after it.
    fn give_back(&self, admitted: &[Option<Admitted<'_>>]) {
        for (_, held) in admitted.iter().flatten() {
            // A service removed since keeps its calls counted (its ledger was detached).
            let _ = self.settle_held(held, 0);
        }
    }

    /// The `Local` services of `calls` (those `shared` leaves out) in one step under all their
    /// locks: each one's [`Recorded`] and hold into `admitted`, at its index in `calls`.
    /// `Err(None)`: one of them is not `Local` any more (a reconfigure landed). On error
    /// nothing was counted, and `admitted` is as it was.
    fn admit_here<'t>(
        &'t self,
        calls: &[(usize, u64)],
        shared: &[bool],
        request: impl Fn(usize) -> Request,
        admitted: &mut [Option<Admitted<'t>>],
    ) -> Result<(), Option<QuotaError>> {
        // The locks in position order; `order[k]`: the index in `calls` of the k-th lock.
        let mut order = Vec::with_capacity(calls.len());
        for (at, &shared) in shared.iter().enumerate() {
            if !shared {
                order.push(at);
            }
        }
        // An insertion sort: a few services, and no sort code in the JS module.
        for next in 1..order.len() {
            let mut at = next;
            while at > 0 && calls[order[at - 1]].0 > calls[order[at]].0 {
                order.swap(at - 1, at);
                at -= 1;
            }
        }
        let mut positions = Vec::with_capacity(order.len());
        for &at in &order {
            positions.push(calls[at].0);
        }
        let now = self.now();
        let mut guards = self.lock_all(&positions);
        // Every service is asked first: one refusal, and none is counted.
        let mut refused = None;
        for (guard, &at) in guards.iter().zip(&order) {
            let settings = self.slot(calls[at].0).settings();
            let refusal = if settings.removed {
                Some((Refusal::Removed, 0))
            } else if !local(settings.config.admission) {
                Some((Refusal::Shared, 0))
            } else {
                Self::refusal_of(guard, settings, now, request(at))
                    .map(|(refusal, limit)| (refusal, settings.limit(limit).limit))
            };
            if let Some((refusal, limit)) = refusal {
                refused = Some((at, refusal, limit));
                break;
            }
        }
        let mut steps = Vec::with_capacity(order.len());
        for (guard, &at) in guards.iter_mut().zip(&order) {
            let position = calls[at].0;
            let slot = self.slot(position);
            let settings = slot.settings();
            if settings.removed || !local(settings.config.admission) {
                continue;
            }
            // Refused: each service only rolls over, as any call would.
            let asked = match refused {
                None => request(at),
                Some(_) => Request::READ,
            };
            let done = self.step_limits(slot, guard, settings, now, asked);
            if refused.is_none() {
                let (reset, recorded) = done.reported();
                let recorded = Recorded {
                    usage: slot.usage_locked(settings, guard),
                    reset,
                    recorded,
                    shadow_denied: done.step.shadow,
                };
                admitted[at] = Some((recorded, Held::of(position, calls[at].1, settings, guard)));
            }
            steps.push((position, done));
        }
        drop(guards);
        for (position, done) in &steps {
            let slot = self.slot(*position);
            self.after_limits_step(slot, done, now);
            if let Some(reason) = done.step.shadow {
                slot.shadow_denied(reason);
            }
        }
        let Some((at, refusal, limit)) = refused else {
            return Ok(());
        };
        let (position, count) = calls[at];
        let slot = self.slot(position);
        Err(match refusal {
            Refusal::Denied { used, reason } => Some(slot.denied(count, used, limit, reason)),
            Refusal::Shared => None,
            Refusal::Removed => Some(slot.removed()),
            refusal => Some(slot.refused(refusal, count)),
        })
    }
}

/// One service's calls admitted: what the caller is told, and what it holds.
type Admitted<'t> = (Recorded<'t>, Held);

/// Whether a service of `admission` is admitted here (rather than by a store).
pub(super) fn local(admission: Admission) -> bool {
    !SHARED || admission == Admission::Local
}
