//! The counting paths: one step of one service under its lock (or the fast path's swap),
//! the transitions it queues, and raises (reads are in `reads.rs`).

use super::{
    describe_transition, unknown_service, QuotaTracker, SavingGuard, ServiceSlot, Settings,
    SlotGuard, StepResult, SHARED,
};
use crate::config::Admission;
use crate::error::QuotaError;
use crate::rules::{Refusal, Request, ServiceState, Step};
use crate::store::StoredState;
use crate::usage::{Raised, Recorded, Transition};

impl QuotaTracker {
    /// One step of one service under its lock (the only lock taken), then, if `deliver`, the
    /// transitions delivered after the lock is released. Inlined, so that the hot path's
    /// step, state and result live in registers rather than being moved through memory.
    #[cfg_attr(not(target_arch = "wasm32"), inline(always))]
    pub(super) fn step_at(
        &self,
        position: usize,
        now: u64,
        request: Request,
        deliver: bool,
    ) -> StepResult {
        let (guard, step, _) = self.lock_and_step(position, now, request, false);
        self.finish_step(position, guard, step, deliver)
    }

    /// The first half of [`step_at`](Self::step_at): locks the service and steps it under the
    /// settings in force while the lock is held (booking the change for a store); the lock
    /// stays held. A removed service is not stepped: the step is refused (`Removed`). With
    /// `local` (the hot path's locked half, which read the settings before the lock), neither
    /// is a service whose settings in force now ask the store (a reconfigure to `Exact` or
    /// `Leased` landed in between): the step is refused (`Shared`), for the caller to take
    /// the shared path.
    #[cfg_attr(not(target_arch = "wasm32"), inline(always))]
    pub(super) fn lock_and_step(
        &self,
        position: usize,
        now: u64,
        request: Request,
        local: bool,
    ) -> (SlotGuard<'_>, Step, &Settings) {
        let slot = self.slot(position);
        let mut guard = slot.lock(self.persistence.is_some());
        let settings = slot.settings();
        if settings.removed {
            return (guard, removed_step(), settings);
        }
        if local && !settings.fast && (SHARED || !settings.more.is_empty()) {
            return (guard, refused_step(Refusal::Shared), settings);
        }
        if !settings.more.is_empty() {
            let step = self
                .step_limits(slot, &mut guard, settings, now, request)
                .step;
            return (guard, step, settings);
        }
        let old_window = guard.service.window;
        let step = settings.rules.step(&mut guard.service, now, request);
        if step.changed && self.persistence.is_some() {
            let counted = match step.refused {
                None => request.count,
                Some(_) => 0,
            };
            guard.sync.book(old_window, &step, counted);
        }
        (guard, step, settings)
    }

    /// The second half of [`step_at`](Self::step_at): queues the step's transitions under
    /// the lock, releases it, then asks for a sync if the window moved and delivers.
    #[cfg_attr(not(target_arch = "wasm32"), inline(always))]
    pub(super) fn finish_step(
        &self,
        position: usize,
        guard: SlotGuard<'_>,
        step: Step,
        deliver: bool,
    ) -> StepResult {
        let slot = self.slot(position);
        let (reset, recorded) = self.queue_transitions(slot, &step);
        let state = guard.service;
        drop(guard);
        if step.moved.is_some() {
            if let Some(persistence) = &self.persistence {
                persistence.sync_soon();
            }
        }
        // Inside this tracker's own save (a store that records), observers wait for the
        // save to end: it delivers every service's queue once its lock is released.
        let queued = reset.is_some() || recorded.is_some() || step.queued;
        if deliver && queued && !SavingGuard::is_saving(self) {
            slot.outbox.pump(&self.observers, describe_transition);
        }
        StepResult {
            step,
            state,
            reset,
            recorded,
        }
    }

    /// Builds the step's transitions and queues them for the observers; call it under the
    /// service's lock (which orders them).
    #[inline]
    pub(super) fn queue_transitions(
        &self,
        slot: &ServiceSlot,
        step: &Step,
    ) -> (Option<Transition>, Option<Transition>) {
        if step.reset.is_none() && step.recorded.is_none() {
            return (None, None);
        }
        self.queue_changes(slot, step)
    }

    /// [`queue_transitions`](Self::queue_transitions) when there are some: rare, out of line.
    #[cold]
    #[inline(never)]
    pub(super) fn queue_changes(
        &self,
        slot: &ServiceSlot,
        step: &Step,
    ) -> (Option<Transition>, Option<Transition>) {
        let epoch = self.observers.epoch();
        let [reset, recorded] = [step.reset, step.recorded].map(|change| {
            change.map(|change| {
                let transition = slot.transition(change);
                slot.outbox.push(transition.clone(), epoch);
                transition
            })
        });
        (reset, recorded)
    }

    /// [`update`](Self::update) of the service named `service`: the lookup and the update in
    /// one function (one call, one stack frame for `record_call` and `try_record`).
    #[inline(never)]
    pub(super) fn update_named(
        &self,
        service: &str,
        request: Request,
    ) -> Result<Recorded<'_>, QuotaError> {
        match self.find(service) {
            Some(position) => self.update_inline(position, request, true),
            None => self.update_added(service, request),
        }
    }

    /// [`update_named`](Self::update_named) of a name the build did not have: one a
    /// reconfigure added, or none.
    #[cold]
    #[inline(never)]
    pub(super) fn update_added(
        &self,
        service: &str,
        request: Request,
    ) -> Result<Recorded<'_>, QuotaError> {
        match self.find_added(service) {
            Some(position) => self.update(position, request),
            None => Err(unknown_service(service)),
        }
    }

    /// `record` and `try_record` of a [`Service`] handle.
    #[inline(never)]
    pub(super) fn update(
        &self,
        position: usize,
        request: Request,
    ) -> Result<Recorded<'_>, QuotaError> {
        self.update_inline(position, request, false)
    }

    /// [`update`](Self::update) answering only the remaining count: its own function, so
    /// that the inlined hot path builds nothing else.
    #[inline(never)]
    pub(super) fn update_remaining(
        &self,
        position: usize,
        request: Request,
    ) -> Result<u64, QuotaError> {
        self.update_as(
            position,
            request,
            false,
            |_, settings, state| settings.rules.limit.saturating_sub(state.used),
            |recorded| recorded.usage.remaining,
        )
    }

    /// `record_call` and `try_record` (by name, `by_name`, or by handle) with the whole
    /// result.
    #[cfg_attr(not(target_arch = "wasm32"), inline(always))]
    pub(super) fn update_inline(
        &self,
        position: usize,
        request: Request,
        by_name: bool,
    ) -> Result<Recorded<'_>, QuotaError> {
        self.update_as(
            position,
            request,
            by_name,
            |slot, settings, state| Recorded {
                usage: slot.usage_of(settings, state),
                reset: None,
                recorded: None,
                shadow_denied: None,
            },
            |recorded| recorded,
        )
    }

    /// The hot path for `Local` admission, answering `quiet(slot, settings, state after)` when
    /// the call changed nothing but the count (the fast path, or the lock with nothing to
    /// queue) and `changed(result)` otherwise. Written so that the step, the state and the
    /// answer stay in registers; shared admission, a window that moves, a level change, a
    /// removed service and every error are out of line. One load of the settings picks the
    /// path (`Settings::fast`); `by_name`: a removed service's name may have been added again
    /// (a handle's position never moves to it).
    ///
    /// The hot path's helpers are forced inline natively only: on wasm32 (built for size) the
    /// copies would cost more module bytes than the JS boundary would notice.
    #[cfg_attr(not(target_arch = "wasm32"), inline(always))]
    pub(super) fn update_as<'s, R>(
        &'s self,
        position: usize,
        request: Request,
        by_name: bool,
        quiet: impl FnOnce(&'s ServiceSlot, &'s Settings, &ServiceState) -> R,
        changed: impl FnOnce(Recorded<'s>) -> R,
    ) -> Result<R, QuotaError> {
        let slot = self.slot(position);
        let count = request.count;
        if count == 0 {
            return Err(slot.invalid_count(count, "count must be at least 1"));
        }
        if slot.queued_ahead(request) {
            return Err(self.queued_refusal(position, count));
        }
        let settings = slot.settings();
        if !settings.fast {
            return self.shared_update_as(position, request, by_name, changed);
        }
        let now = self.now();
        // A call that changes nothing but the count: one atomic swap, no lock.
        if let Some(counted) = slot.fast.try_count(now, request) {
            self.after_call(now, false);
            // Read again: a reconfigure may have landed since the read above, and the swap
            // counted under the parameters it published (the settings now, or later ones).
            return Ok(quiet(slot, slot.settings(), &counted.state()));
        }
        self.update_locked(position, request, now, count, quiet, changed)
    }

    /// [`update_as`](Self::update_as) with shared admission, several limits, or of a removed
    /// service: out of line, so that its result takes no room in the fast path's frame.
    #[inline(never)]
    pub(super) fn shared_update_as<'s, R>(
        &'s self,
        position: usize,
        request: Request,
        by_name: bool,
        changed: impl FnOnce(Recorded<'s>) -> R,
    ) -> Result<R, QuotaError> {
        let slot = self.slot(position);
        if slot.settings().removed {
            // By name: the name may be in force again at another position.
            return match self.find_added(&slot.name).filter(|_| by_name) {
                Some(position) => self.update(position, request).map(changed),
                None => Err(slot.removed()),
            };
        }
        self.shared_update(position, request).map(changed)
    }

    /// [`update_as`](Self::update_as) under the service's lock: out of line (natively), so
    /// that the fast path's function stays small (no registers to save for the step).
    #[cfg_attr(not(target_arch = "wasm32"), inline(never))]
    pub(super) fn update_locked<'s, R>(
        &'s self,
        position: usize,
        request: Request,
        now: u64,
        count: u64,
        quiet: impl FnOnce(&'s ServiceSlot, &'s Settings, &ServiceState) -> R,
        changed: impl FnOnce(Recorded<'s>) -> R,
    ) -> Result<R, QuotaError> {
        let slot = self.slot(position);
        let (guard, step, settings) = self.lock_and_step(position, now, request, true);
        if step.refused == Some(Refusal::Shared) {
            // Reconfigured since the settings were read (to shared admission, or to several
            // limits): decided on the path the settings in force pick (the lock is released
            // first: that path takes it again).
            drop(guard);
            return self.update(position, request).map(changed);
        }
        if step.reset.is_some()
            || step.recorded.is_some()
            || step.moved.is_some()
            || step.shadow.is_some()
        {
            return self
                .update_changed(position, guard, step, settings, now, count)
                .map(changed);
        }
        // Nothing to queue, deliver or sync soon: what `finish_step` would do is only this.
        let state = guard.service;
        drop(guard);
        self.after_call(now, false);
        match step.refused {
            Some(refusal) => Err(slot.refused(refusal, count)),
            None => Ok(quiet(slot, settings, &state)),
        }
    }

    /// The end of [`update`](Self::update) when the level changed or the window moved.
    #[cold]
    #[inline(never)]
    pub(super) fn update_changed<'s>(
        &'s self,
        position: usize,
        guard: SlotGuard<'s>,
        step: Step,
        settings: &'s Settings,
        now: u64,
        count: u64,
    ) -> Result<Recorded<'s>, QuotaError> {
        let slot = self.slot(position);
        let StepResult {
            step,
            state,
            reset,
            recorded,
        } = self.finish_call(position, guard, step, now);
        if let Some(reason) = step.shadow {
            slot.shadow_denied(reason);
        }
        match step.refused {
            Some(refusal) => Err(slot.refused(refusal, count)),
            None => Ok(Recorded {
                usage: slot.usage_of(settings, &state),
                reset,
                recorded,
                shadow_denied: step.shadow,
            }),
        }
    }

    /// [`update`](Self::update) of a service with `Exact` or `Leased` admission, or several
    /// limits.
    #[inline(never)]
    pub(super) fn shared_update(
        &self,
        position: usize,
        request: Request,
    ) -> Result<Recorded<'_>, QuotaError> {
        let settings = self.slot(position).settings();
        // An async caller's call decided in place: the store's path runs off the executor.
        #[cfg(not(target_arch = "wasm32"))]
        if SHARED
            && settings.config.admission != Admission::Local
            && crate::caller::defers_store_call()
        {
            return Err(super::nonblocking::deferred());
        }
        match settings.config.admission {
            // Several limits: each admission has its path.
            Admission::Exact if SHARED && !settings.more.is_empty() => {
                self.exact_limits_update(position, request)
            }
            Admission::Leased { block } if SHARED && !settings.more.is_empty() => {
                self.leased_limits_update(position, request, block)
            }
            _ if !settings.more.is_empty() => self.limits_update(position, request),
            // One `Local` limit: the caller read settings of several limits, and a reconfigure
            // to one landed since (or the service was removed: `update` answers that). Back to
            // the path the settings in force pick.
            Admission::Local => self.update(position, request),
            // Without the feature no config selects them: compiled out (the JS module).
            _ if !SHARED => unreachable!("shared admission needs its feature"),
            Admission::Exact => self.exact_update(position, request),
            Admission::Leased { block } => self.leased_update(position, request, block),
        }
    }

    /// [`raise_used`](Self::raise_used) of the service at `position`: one step under its lock.
    pub(super) fn raise_at(
        &self,
        position: usize,
        at_least: u64,
        resets_at_ms: Option<u64>,
    ) -> Result<Raised<'_>, QuotaError> {
        let slot = self.slot(position);
        if at_least > StoredState::MAX_TOTAL {
            return Err(slot.invalid_count(at_least, "a raise is at most 2^62 calls"));
        }
        if !slot.settings().more.is_empty() {
            return self.raise_limits(position, at_least, resets_at_ms);
        }
        let now = self.now();
        let mut guard = slot.lock(self.persistence.is_some());
        let settings = slot.settings();
        if settings.removed {
            drop(guard);
            return Err(slot.removed());
        }
        if !settings.more.is_empty() {
            // A reconfigure gave it several limits since the test above.
            drop(guard);
            return self.raise_limits(position, at_least, resets_at_ms);
        }
        let old_window = guard.service.window;
        let (step, rose) = settings
            .rules
            .raise(&mut guard.service, now, at_least, resets_at_ms);
        if self.persistence.is_some() {
            if step.changed {
                guard.sync.book(old_window, &step, 0);
            }
            if rose == Some(true) {
                // The floor to sync: `used` now (the calls counted since add to it).
                let (window, used) = (guard.service.window, guard.service.used);
                guard.sync.raised(window, used, true);
                // A leased block in hand is forfeited, not spent (the provider's count says
                // less is left than the block assumed) and not given back (a give-back
                // subtracts, and could take the stored total below the floor). The store
                // keeps counting its calls: an under-admission, never an over-admission.
                guard.lease.forfeit();
                // Shared admission asks the store, which needs the floor soon: sync with the
                // next call.
                if settings.config.admission != Admission::Local {
                    if let Some(persistence) = &self.persistence {
                        persistence.sync_soon();
                    }
                }
            }
        }
        if rose == Some(true) && self.persistence.is_none() {
            let window = guard.service.window;
            guard.sync.raised(window, 0, false);
        }
        let StepResult {
            state,
            reset,
            recorded,
            ..
        } = self.finish_call(position, guard, step, now);
        Ok(Raised {
            usage: slot.usage_of(settings, &state),
            applied: rose.is_some(),
            reset,
            recorded,
        })
    }

    /// [`finish_step`](Self::finish_step) of a recording call, delivering its transitions, then
    /// the save it owes ([`after_call`](Self::after_call)).
    pub(super) fn finish_call(
        &self,
        position: usize,
        guard: SlotGuard<'_>,
        step: Step,
        now: u64,
    ) -> StepResult {
        let result = self.finish_step(position, guard, step, true);
        self.after_call(now, result.step.entered_critical());
        result
    }

    /// After a recording call: save if one is due, or at once on entering Critical.
    #[inline]
    pub(super) fn after_call(&self, now: u64, entered_critical: bool) {
        let Some(persistence) = &self.persistence else {
            return;
        };
        let critical = entered_critical && persistence.policy.force_on_critical;
        if critical || persistence.due(now) {
            self.sync_now(critical, now);
        }
    }
}

/// The step of a call on a removed service: refused, nothing changed.
#[cold]
fn removed_step() -> Step {
    refused_step(Refusal::Removed)
}

fn refused_step(refusal: Refusal) -> Step {
    Step {
        refused: Some(refusal),
        ..Step::default()
    }
}
