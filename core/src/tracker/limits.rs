//! Services of several limits (Tiingo: 50 an hour *and* 1,000 a day): one step checks a call
//! against every limit and counts it in every limit's window, under the service's one lock.
//! They skip the fast path (its word holds one count); a service of one limit never comes
//! here for a count, only for reads that any settings answer alike.

use super::{describe_transition, QuotaTracker, SavingGuard, ServiceSlot, Settings, SlotState};
use crate::config::Admission;
use crate::error::QuotaError;
use crate::rules::{Refusal, Request, Step};
use crate::usage::{Raised, Recorded, ServiceUsage, Transition};

/// What [`QuotaTracker::step_limits`] did.
pub(super) struct LimitsStep {
    /// As one limit's step says it (refused or not, a window moved, changed, shadow), but its
    /// transitions are in `transitions` (and queued already), and a moved window carried
    /// nothing the caller books (each limit's ledger is booked).
    pub(super) step: Step,
    /// The limit that refused, if one did (the first in order).
    pub(super) refused_by: usize,
    /// Every limit's level changes, resets first, in the order of the limits.
    pub(super) transitions: Vec<Transition>,
    /// How many of `transitions` are resets.
    pub(super) resets: usize,
    /// Whether the counting took a limit from below Critical to Critical or beyond.
    pub(super) entered_critical: bool,
}

impl LimitsStep {
    /// The reset this call performed, and the highest level change its counting made.
    pub(super) fn reported(&self) -> (Option<Transition>, Option<Transition>) {
        let (resets, recorded) = self.transitions.split_at(self.resets);
        (
            resets.first().cloned(),
            recorded.iter().max_by_key(|t| t.to).cloned(),
        )
    }
}

impl QuotaTracker {
    /// Whether `request` would be refused by a limit of the locked `state`, and by which (the
    /// first in order): each limit's step on a copy of its count, nothing counted. Pure: the
    /// step is, so the same request steps the counts themselves alike right after.
    pub(super) fn refusal_of(
        state: &SlotState,
        settings: &Settings,
        now: u64,
        request: Request,
    ) -> Option<(Refusal, usize)> {
        (0..state.limit_count()).find_map(|at| {
            let mut trial = *state.count(at);
            let step = settings.limit(at).step(&mut trial, now, request);
            step.refused.map(|refusal| (refusal, at))
        })
    }

    /// Applies `request` to every limit of the locked `state`: each rolls its window over if
    /// due; the calls are counted in every limit's window if no limit refuses them, in none
    /// otherwise (all or nothing). Books every limit's ledger and queues every transition.
    /// Works for a service of one limit too (a read that found one after a reconfigure).
    pub(super) fn step_limits(
        &self,
        slot: &ServiceSlot,
        state: &mut SlotState,
        settings: &Settings,
        now: u64,
        request: Request,
    ) -> LimitsStep {
        // Nothing is counted until every limit admits (asked on copies first).
        let refused = Self::refusal_of(state, settings, now, request);
        let asked = match refused {
            Some(_) => Request::READ,
            None => request,
        };
        let booking = self.persistence.is_some();
        let mut out = LimitsStep {
            step: Step {
                refused: refused.map(|(refusal, _)| refusal),
                ..Step::default()
            },
            refused_by: refused.map_or(0, |(_, at)| at),
            transitions: Vec::new(),
            resets: 0,
            entered_critical: false,
        };
        let mut recorded = Vec::new();
        for at in 0..state.limit_count() {
            let rules = settings.limit(at);
            let (count, ledger) = state.limit_mut(at);
            let old_window = count.window;
            // Refused by some limit: each only rolls its window over, as any call would.
            let step = rules.step(count, now, asked);
            if booking && step.changed {
                ledger.book(old_window, &step, asked.count);
            }
            out.step.changed |= step.changed;
            if step.moved.is_some() {
                out.step.moved = Some(0);
            }
            out.step.shadow = out.step.shadow.or(step.shadow);
            out.entered_critical |= step.entered_critical();
            out.transitions
                .extend(step.reset.map(|change| slot.transition(change)));
            recorded.extend(step.recorded.map(|change| slot.transition(change)));
        }
        out.resets = out.transitions.len();
        out.transitions.append(&mut recorded);
        out.step.queued = !out.transitions.is_empty();
        let epoch = self.observers.epoch();
        for transition in &out.transitions {
            slot.outbox.push(transition.clone(), epoch);
        }
        out
    }

    /// `record_call` and `try_record` of a service of several limits: one step under its
    /// lock. A service that is not one (any more: a reconfigure landed) goes back to the
    /// path its settings pick.
    #[inline(never)]
    pub(super) fn limits_update(
        &self,
        position: usize,
        request: Request,
    ) -> Result<Recorded<'_>, QuotaError> {
        self.limits_step_here(position, request, Admission::Local)
    }

    /// [`limits_update`](Self::limits_update) of a service whose admission is `admission`:
    /// counted here, in this instance's view (an `Exact` service's `record_call` while its store
    /// is unreachable: synced later as deltas).
    pub(super) fn limits_step_here(
        &self,
        position: usize,
        request: Request,
        admission: Admission,
    ) -> Result<Recorded<'_>, QuotaError> {
        let slot = self.slot(position);
        let now = self.now();
        let mut guard = slot.lock(self.persistence.is_some());
        let settings = slot.settings();
        if settings.removed || settings.more.is_empty() || settings.config.admission != admission {
            drop(guard);
            return self.update(position, request);
        }
        let done = self.step_limits(slot, &mut guard, settings, now, request);
        let usage = slot.usage_locked(settings, &guard);
        drop(guard);
        self.after_limits_step(slot, &done, now);
        if let Some(reason) = done.step.shadow {
            slot.shadow_denied(reason);
        }
        match done.step.refused {
            Some(Refusal::Denied { used, reason }) => {
                let limit = settings.limit(done.refused_by).limit;
                Err(slot.denied(request.count, used, limit, reason))
            }
            Some(refusal) => Err(slot.refused(refusal, request.count)),
            None => {
                let (reset, recorded) = done.reported();
                Ok(Recorded {
                    usage,
                    reset,
                    recorded,
                    shadow_denied: done.step.shadow,
                })
            }
        }
    }

    /// After a step of several limits, its lock released: a sync soon if a window moved, the
    /// transitions delivered, the save the call owes.
    pub(super) fn after_limits_step(&self, slot: &ServiceSlot, done: &LimitsStep, now: u64) {
        if done.step.moved.is_some() {
            if let Some(persistence) = &self.persistence {
                persistence.sync_soon();
            }
        }
        if done.step.queued && !SavingGuard::is_saving(self) {
            slot.outbox.pump(&self.observers, describe_transition);
        }
        self.after_call(now, done.entered_critical);
    }

    /// `read` of the service at `position` under its lock, every limit rolled over first
    /// (any number of limits; a removed service is read as it was removed).
    pub(super) fn read_limits<'s, R>(
        &'s self,
        position: usize,
        read: impl FnOnce(&'s ServiceSlot, &'s Settings, &SlotState) -> R,
    ) -> R {
        let slot = self.slot(position);
        let now = self.now();
        let mut guard = slot.lock(self.persistence.is_some());
        let settings = slot.settings();
        let done = (!settings.removed)
            .then(|| self.step_limits(slot, &mut guard, settings, now, Request::READ));
        let answer = read(slot, settings, &guard);
        drop(guard);
        if let Some(done) = done {
            self.after_limits_step(slot, &done, now);
        }
        answer
    }

    /// Every limit's usage of the service at `position`, its own limit first.
    pub(super) fn usage_limits_at(&self, position: usize) -> Vec<ServiceUsage<'_>> {
        self.read_limits(position, |slot, settings, state| {
            slot.usage_of_limits(settings, state)
        })
    }

    /// [`raise_used`](Self::raise_used) of a service of several limits: the report is taken
    /// into one limit, the one of the shortest window that contains `resets_at_ms` (of equal
    /// lengths, the one whose reset is nearest it; `None`: the shortest window's), after every
    /// limit rolled over.
    pub(super) fn raise_limits(
        &self,
        position: usize,
        at_least: u64,
        resets_at_ms: Option<u64>,
    ) -> Result<Raised<'_>, QuotaError> {
        let slot = self.slot(position);
        let now = self.now();
        let mut guard = slot.lock(self.persistence.is_some());
        let settings = slot.settings();
        if settings.removed {
            drop(guard);
            return Err(slot.removed());
        }
        if settings.more.is_empty() {
            // Reconfigured to one limit since the caller looked (perhaps `Leased`, whose raise
            // forfeits the block in hand): the one-limit raise.
            drop(guard);
            return self.raise_at(position, at_least, resets_at_ms);
        }
        let mut done = self.step_limits(slot, &mut guard, settings, now, Request::READ);
        let target = crate::usage::limit_for_reset(
            (0..guard.limit_count()).map(|at| {
                let window = guard.count(at).window;
                (window.start_ms, window.reset_at_ms)
            }),
            resets_at_ms,
        );
        let mut applied = false;
        if let Some(target) = target {
            applied = true;
            let booking = self.persistence.is_some();
            let rules = settings.limit(target);
            let (count, ledger) = guard.limit_mut(target);
            let (step, rose) = rules.raise(count, now, at_least, resets_at_ms);
            if rose == Some(true) {
                // A hold counted before it forfeits its give-back, store or not.
                ledger.raised(count.window, count.used, booking);
            }
            if booking && rose == Some(true) && settings.config.admission != Admission::Local {
                // A leased block in hand is forfeited in the raised limit's window (its
                // floor may hold its calls) and goes back to every other limit's; a grant
                // in flight goes back when it comes. The store needs the floor soon.
                let (back, step) = guard.give_lease_back_keeping(slot, self, now, Some(target));
                // Its other limits' level changes are queued: delivered after the lock.
                done.step.queued |= back.is_some();
                guard.sync.queued.give_backs.extend(back);
                self.queue_transitions(slot, &step);
                guard.lease.forfeit();
                guard.lease.more.clear();
                if let Some(persistence) = &self.persistence {
                    persistence.sync_soon();
                }
            }
            if let Some(change) = step.recorded {
                let transition = slot.transition(change);
                slot.outbox.push(transition.clone(), self.observers.epoch());
                done.entered_critical |= step.entered_critical();
                done.transitions.push(transition);
                done.step.queued = true;
            }
        }
        let usage = slot.usage_locked(settings, &guard);
        drop(guard);
        self.after_limits_step(slot, &done, now);
        let (reset, recorded) = done.reported();
        Ok(Raised {
            usage,
            applied,
            reset,
            recorded,
        })
    }
}
