//! One service's slot: its rules, its lock-guarded state (with the fast path's word taken
//! with the lock) and the usage, transitions and errors built from it.

use super::{fast_path, shared, FastPath, Ledger, SHARED};
use crate::config::Admission;
use crate::config::ServiceConfig;
use crate::error::{DenyReason, QuotaError};
use crate::locks::{Mutex, MutexGuard};
use crate::observers::Outbox;
use crate::rules::{Change, Refusal, ServiceRules, ServiceState, Step};
use crate::usage::{ServiceUsage, Transition};
use crossbeam_utils::CachePadded;
use std::sync::Arc;

/// One service: its fixed config and rules, its guarded state, its queued transitions.
pub(super) struct ServiceSlot {
    /// Shared with every transition of the service (cloning it copies no text).
    pub(super) name: Arc<str>,
    pub(super) config: ServiceConfig,
    pub(super) rules: ServiceRules,
    /// Padded to its own cache line so threads on different services do not contend. Taken
    /// only through [`lock`](Self::lock), which also takes the fast path's word.
    pub(super) state: CachePadded<Mutex<SlotState>>,
    /// The lock-free count of calls that change nothing else (its own cache line).
    pub(super) fast: FastPath,
    /// Transitions waiting for the observers, queued under `state`'s lock.
    pub(super) outbox: Outbox<Transition>,
    /// Denials not counted in the metrics yet.
    #[cfg(feature = "metrics")]
    pub(super) denials: crate::metrics::Denials,
}

/// What a service's lock guards.
pub(super) struct SlotState {
    pub(super) service: ServiceState,
    /// What a shared store has not acknowledged yet (kept only with a store).
    pub(super) sync: Ledger,
    /// The block in hand (`Leased` admission only).
    pub(super) lease: shared::LeaseState,
    /// What the fast path's word was released with (`None`: left taken).
    pub(super) published: Option<fast_path::Published>,
}

/// A service's lock, held: its state, with the calls the fast path counted before the lock
/// was taken already in it. Dropping it publishes the state for the fast path, then unlocks.
pub(super) struct SlotGuard<'a> {
    pub(super) guard: MutexGuard<'a, SlotState>,
    pub(super) slot: &'a ServiceSlot,
    /// The fast path's word as the lock took it.
    pub(super) taken: u64,
}

impl std::ops::Deref for SlotGuard<'_> {
    type Target = SlotState;
    fn deref(&self) -> &SlotState {
        &self.guard
    }
}

impl std::ops::DerefMut for SlotGuard<'_> {
    fn deref_mut(&mut self) -> &mut SlotState {
        &mut self.guard
    }
}

impl Drop for SlotGuard<'_> {
    fn drop(&mut self) {
        let slot = self.slot;
        let enabled = !SHARED || slot.config.admission == Admission::Local;
        let state = &mut *self.guard;
        state.published = slot.fast.release(
            self.taken,
            &state.service,
            &slot.rules,
            enabled,
            state.published,
        );
    }
}

/// What [`QuotaTracker::step_at`] leaves for the caller.
pub(super) struct StepResult {
    pub(super) step: Step,
    pub(super) state: ServiceState,
    pub(super) reset: Option<Transition>,
    pub(super) recorded: Option<Transition>,
}

impl ServiceSlot {
    /// Takes the service's lock, the only way to it: the calls the fast path counted since
    /// the lock was last released go into the state first (and, with a store, `booking`,
    /// into what the store has not acknowledged yet), as if each had taken the lock.
    #[cfg_attr(not(target_arch = "wasm32"), inline(always))]
    pub(super) fn lock(&self, booking: bool) -> SlotGuard<'_> {
        let mut guard = self.state.lock();
        let (taken, counted) = self.fast.take(guard.published);
        if counted > 0 {
            Self::absorb(&mut guard, counted, booking);
        }
        SlotGuard {
            guard,
            slot: self,
            taken,
        }
    }

    /// Adds `counted` fast calls (all in the current window, at the same level) to `state`.
    #[inline(never)]
    pub(super) fn absorb(state: &mut SlotState, counted: u64, booking: bool) {
        state.service.used = state.service.used.saturating_add(counted);
        state.service.total = state.service.total.saturating_add(counted);
        if booking {
            let window = state.service.window;
            state.sync.book(window, &Step::default(), counted);
        }
    }

    pub(super) fn transition(&self, change: Change) -> Transition {
        Transition::of(&self.name, self.rules.limit, change)
    }

    #[inline]
    pub(super) fn usage(&self, state: &ServiceState) -> ServiceUsage<'_> {
        ServiceUsage::of(&self.name, &self.config, state)
    }

    /// The error of a refused step.
    #[cold]
    #[inline(never)]
    pub(super) fn refused(&self, refusal: Refusal, count: u64) -> QuotaError {
        match refusal {
            Refusal::Overflow => self.invalid_count(count, "the counter would overflow"),
            Refusal::Denied { used, reason } => self.denied(count, used, reason),
        }
    }

    /// The error of a denied call (with feature `metrics`, counted). Call it with no lock held.
    #[cold]
    pub(super) fn denied(&self, count: u64, used: u64, reason: DenyReason) -> QuotaError {
        #[cfg(feature = "metrics")]
        self.denials.deny(&self.name, reason);
        QuotaError::Denied {
            service: Arc::clone(&self.name),
            count,
            used,
            limit: self.rules.limit,
            reason,
        }
    }

    /// A call shadow mode admitted that `reason` would have denied (with feature `metrics`,
    /// counted). Call it with no lock held.
    #[cold]
    pub(super) fn shadow_denied(&self, reason: DenyReason) {
        #[cfg(feature = "metrics")]
        self.denials.shadow(&self.name, reason);
        log::debug!(
            "quota: {} would have been denied ({}); admitted in shadow mode",
            self.name,
            reason.as_str()
        );
    }

    #[cold]
    pub(super) fn invalid_count(&self, count: u64, reason: &'static str) -> QuotaError {
        QuotaError::InvalidCount {
            service: Arc::clone(&self.name),
            count,
            reason,
        }
    }
}
