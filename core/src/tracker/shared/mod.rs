//! Shared admission: `Exact` (every decision in the store) and `Leased` (blocks of calls taken
//! from the store, spent in process). See [`Admission`](crate::Admission).
//!
//! Store calls here run with no tracker lock held; the service's lock is taken before (to roll
//! the window over and read it) and after (to take in the answer), never across.

use super::{QuotaTracker, ServiceSlot, SlotState, StepResult};
use crate::error::{DenyReason, QuotaError};
use crate::level::Level;
use crate::rules::Step;
use crate::store::{GiveBack, StoreError, WindowKey};
use crate::usage::Recorded;
use crate::window::{Window, WindowSpec};

mod exact;
mod exact_limits;
mod leased;
mod leased_limits;

pub(super) use leased::LeaseState;

impl ServiceSlot {
    pub(in crate::tracker) fn window_key(&self, window: Window) -> WindowKey {
        self.limit_window_key(&self.settings().rules.window, window)
    }

    /// The key of `window` of this service's limit counted in windows of `spec`.
    pub(in crate::tracker) fn limit_window_key(
        &self,
        spec: &WindowSpec,
        window: Window,
    ) -> WindowKey {
        WindowKey {
            service: self.name.to_string(),
            spec: spec.clone(),
            start_ms: window.start_ms,
            end_ms: window.reset_at_ms,
        }
    }
}

/// A store's answer to an admission or a lease: the window's total, and the calls of the
/// give-backs handed to syncs (`Ledger::backs_sent`) when the store was asked.
#[derive(Clone, Copy)]
pub(in crate::tracker) struct Answered {
    pub(in crate::tracker) total: u64,
    pub(in crate::tracker) backs_sent: u64,
}

impl QuotaTracker {
    /// A new give-back of `calls` counted in `window` when its raise count was `raise_count`, numbered
    /// (pending until answered).
    pub(in crate::tracker) fn give_back_of(
        &self,
        window: WindowKey,
        calls: u64,
        raise_count: u64,
    ) -> GiveBack {
        let (seq, done_below) = self.issue();
        GiveBack {
            instance: self.instance(),
            seq,
            done_below,
            window,
            unused: calls,
            raise_count,
            also: Vec::new(),
        }
    }

    /// A new operation number and the `done_below` to send with it (none without a store).
    pub(in crate::tracker) fn issue(&self) -> (u64, u64) {
        self.persistence.as_ref().map_or((0, 0), |p| p.issue())
    }

    /// Operation `seq` was answered, or dropped unsent.
    pub(in crate::tracker) fn answered(&self, seq: u64) {
        if let Some(persistence) = &self.persistence {
            persistence.answered(seq);
        }
    }

    /// A shared-admission call failed: back off as after a failed sync (the next sync, due
    /// after the back-off, tells when the store is back).
    pub(in crate::tracker) fn store_failed(&self) {
        if let Some(persistence) = &self.persistence {
            persistence.back_off(self.now());
        }
    }

    /// Calls this tracker counted in the current window that the store has not acknowledged
    /// (unsynced deltas, and admissions whose answer was lost).
    pub(in crate::tracker) fn unsynced(&self, position: usize) -> u64 {
        let guard = self.slot(position).lock(self.persistence.is_some());
        let window = guard.service.window.start_ms;
        let held: u64 = guard
            .sync
            .queued
            .admits
            .iter()
            .filter(|a| a.counted && a.request.window.start_ms == window)
            .map(|a| a.request.count)
            .sum();
        guard.sync.unacked.saturating_add(held)
    }

    pub(in crate::tracker) fn instance(&self) -> crate::InstanceId {
        self.persistence
            .as_ref()
            .map_or(crate::InstanceId::from_u128(0), |p| p.instance)
    }

    /// Whether the store failed recently and its back-off has not passed.
    pub(in crate::tracker) fn backing_off(&self, now: u64) -> bool {
        self.persistence
            .as_ref()
            .is_some_and(|p| p.backing_off(now))
    }

    /// Takes in a total the store answered for `window` (plus `count` calls this instance just
    /// had counted there): `used` rises to it and what this instance has not synced yet. The
    /// `asked` calls booked by [`ask_under_floor`](Self::ask_under_floor) are released under
    /// the same lock that adds the admitted ones to the floor.
    pub(in crate::tracker) fn take_total(
        &self,
        position: usize,
        window: Window,
        answer: Answered,
        count: u64,
        asked: u64,
        now: u64,
    ) -> StepResult {
        let result = self.take_in(position, asked, |slot, state| {
            if state.service.window != window {
                return Step::default();
            }
            // Calls given back here that the answer may still count: those whose give-back
            // the store has not had yet, and those handed to a sync since the store was asked
            // (maybe after it answered). Any window's: the view may come out lower than the
            // store's count, never higher (the store decides shared admission).
            let queued = match state.sync.queued.give_backs.is_empty() {
                true => 0,
                false => state.sync.queued.giving_back(&slot.window_key(window)),
            };
            let sent = state.sync.backs_sent.wrapping_sub(answer.backs_sent);
            let given_back = queued.saturating_add(sent);
            let mut view = answer
                .total
                .saturating_sub(given_back)
                .saturating_add(state.sync.unacked);
            // Admitted after a raise not synced yet: on top of the floor, not under it.
            if let Some(floor) = state.sync.after_raise(window, count) {
                view = view.max(floor);
            }
            let step = slot.settings().rules.observe(&mut state.service, view, now);
            state.service.total = state.service.total.saturating_add(count);
            step
        });
        if result
            .recorded
            .as_ref()
            .is_some_and(|t| t.from < Level::Critical && t.to >= Level::Critical)
        {
            self.after_call(now, true);
        }
        result
    }

    /// Takes a store's answer in under the service's lock: releases the `asked` calls booked by
    /// [`ask_under_floor`](Self::ask_under_floor), lets `update` change the state, queues the
    /// transitions it makes and delivers them once the lock is released.
    pub(in crate::tracker) fn take_in(
        &self,
        position: usize,
        asked: u64,
        update: impl FnOnce(&ServiceSlot, &mut SlotState) -> Step,
    ) -> StepResult {
        let slot = self.slot(position);
        let (step, state, reset, recorded) = {
            let mut guard = slot.lock(self.persistence.is_some());
            guard.sync.floor_asked = guard.sync.floor_asked.saturating_sub(asked);
            let step = update(slot, &mut guard);
            let (reset, recorded) = self.queue_transitions(slot, &step);
            (step, guard.service, reset, recorded)
        };
        if reset.is_some() || recorded.is_some() {
            self.pump(&[position]);
        }
        StepResult {
            step,
            state,
            reset,
            recorded,
        }
    }

    /// The result of a shared call: the window's reset from the read before, the level
    /// change from the answer after.
    pub(in crate::tracker) fn recorded_after<'t>(
        &'t self,
        slot: &'t ServiceSlot,
        read: StepResult,
        after: StepResult,
    ) -> Recorded<'t> {
        Recorded {
            usage: slot.usage(&after.state),
            reset: read.reset,
            recorded: after.recorded,
            // Shadow mode takes Local admission (`ServiceConfig::validate`).
            shadow_denied: None,
        }
    }

    pub(in crate::tracker) fn denied(
        &self,
        slot: &ServiceSlot,
        count: u64,
        used: u64,
        reason: DenyReason,
    ) -> QuotaError {
        slot.denied(count, used, slot.settings().rules.limit, reason)
    }

    /// A store call outside every lock, a panic turned into an error.
    pub(in crate::tracker) fn store_call<T>(
        &self,
        call: impl FnOnce(&dyn crate::Store) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        match &self.persistence {
            Some(persistence) => persistence.call(call),
            None => Err(StoreError::Unsupported("shared admission without a store")),
        }
    }
}

/// Releases `count` calls booked on every limit's ledger when asking.
pub(in crate::tracker) fn release_asked(state: &mut SlotState, count: u64) {
    for at in 0..state.limit_count() {
        let (_, ledger) = state.limit_mut(at);
        ledger.floor_asked = ledger.floor_asked.saturating_sub(count);
    }
}

/// The calls of held admissions counted in this instance's view (a `record_call` whose answer
/// was lost) in the window `key`, which the store may not have counted yet.
pub(in crate::tracker) fn held_in(state: &SlotState, key: &WindowKey) -> u64 {
    state
        .sync
        .queued
        .admits
        .iter()
        .filter(|held| held.counted)
        .filter(|held| {
            held.request.window == *key || held.request.also.iter().any(|w| w.window == *key)
        })
        .map(|held| held.request.count)
        .sum()
}
