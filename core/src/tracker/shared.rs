//! Shared admission: `Exact` (every decision in the store) and `Leased` (blocks of calls taken
//! from the store, spent in process). See [`Admission`](crate::Admission).
//!
//! Store calls here run with no tracker lock held; the service's lock is taken before (to roll
//! the window over and read it) and after (to take in the answer), never across.

use super::{QuotaTracker, ServiceSlot, StepResult};
use crate::error::{DenyReason, QuotaError};
use crate::level::Level;
use crate::step::{Request, Step};
use crate::store::{AdmitReply, AdmitRequest, GiveBack, LeaseRequest, StoreError, WindowKey};
use crate::sync::Ordering;
use crate::usage::Recorded;
use crate::window::Window;
use std::sync::Arc;

/// The block a `Leased` service holds.
#[derive(Debug, Default)]
pub(super) struct LeaseState {
    /// Granted calls not spent yet.
    pub(super) left: u64,
    /// The window they were granted in.
    pub(super) window: Option<Window>,
    /// The lease number of the last grant (a give-back names it).
    pub(super) seq: u64,
}

impl LeaseState {
    /// Takes the unspent calls back out, as a give-back of `window`'s block.
    pub(super) fn give_back(
        &mut self,
        slot: &ServiceSlot,
        instance: crate::InstanceId,
    ) -> Option<GiveBack> {
        let window = self.window?;
        let unused = std::mem::take(&mut self.left);
        (unused > 0).then(|| GiveBack {
            instance,
            seq: self.seq,
            window: slot.window_key(window),
            unused,
        })
    }
}

impl ServiceSlot {
    pub(super) fn window_key(&self, window: Window) -> WindowKey {
        WindowKey {
            service: self.config.name.clone(),
            period: self.rules.period,
            start_ms: window.start_ms,
            end_ms: window.reset_at_ms,
        }
    }
}

impl QuotaTracker {
    /// `record_call` (`force`) or `try_record` on an `Exact` service.
    pub(super) fn exact_update(
        &self,
        position: usize,
        count: u64,
        force: bool,
    ) -> Result<Recorded<'_>, QuotaError> {
        let slot = &self.services[position];
        let now = self.now();
        let read = self.step_at(position, now, Request::Read, true);
        let reduced = self.is_reduced_rate();
        let (below, cap) = slot.rules.shared_rule(reduced);
        let request = AdmitRequest {
            window: slot.window_key(read.state.window),
            count,
            below,
            cap,
            force,
        };
        let reply = self.store_call(|store| store.admit(&request));
        let result = match reply {
            Ok(AdmitReply::Admitted { total }) => {
                let learned = self.take_total(position, read.state.window, total, count, now);
                Ok(self.recorded_after(slot, read, learned))
            }
            Ok(AdmitReply::Denied { total }) => {
                let learned = self.take_total(position, read.state.window, total, 0, now);
                let reason = slot
                    .rules
                    .denies(total, count, reduced)
                    .unwrap_or(DenyReason::Limit);
                Err(self.denied(slot, count, learned.state.used, reason))
            }
            // Counting without asking never loses a call: counted here, synced later.
            Err(_) if force => {
                let recorded = self.step_at(position, now, Request::Record(count), true);
                self.after_call(now, false);
                return match recorded.step.refused {
                    None => Ok(self.recorded_after(slot, read, recorded)),
                    Some(_) => Err(slot.invalid_count(count, "the counter would overflow")),
                };
            }
            Err(_) => Err(self.denied(slot, count, read.state.used, DenyReason::StoreUnavailable)),
        };
        self.after_call(now, false);
        result
    }

    /// `can_call` on an `Exact` service: the store's rule on the shared count (adds nothing).
    pub(super) fn exact_can_call(&self, position: usize) -> bool {
        let slot = &self.services[position];
        let now = self.now();
        let read = self.step_at(position, now, Request::Read, true);
        let (below, cap) = slot.rules.shared_rule(self.is_reduced_rate());
        let request = AdmitRequest {
            window: slot.window_key(read.state.window),
            count: 0,
            below,
            cap,
            force: false,
        };
        match self.store_call(|store| store.admit(&request)) {
            Ok(AdmitReply::Admitted { total }) => {
                self.take_total(position, read.state.window, total, 0, now);
                true
            }
            Ok(AdmitReply::Denied { total }) => {
                self.take_total(position, read.state.window, total, 0, now);
                false
            }
            Err(_) => false,
        }
    }

    /// `record_call` (`force`) or `try_record` on a `Leased` service.
    pub(super) fn leased_update(
        &self,
        position: usize,
        count: u64,
        force: bool,
        block: u64,
    ) -> Result<Recorded<'_>, QuotaError> {
        let slot = &self.services[position];
        let now = self.now();
        if let Some(spent) = self.spend_lease(position, now, count) {
            return Ok(spent);
        }
        // Not enough in hand: ask for a block (or as many as this call needs), unless the
        // shared total seen is at the ceiling already (it only falls by other instances
        // giving blocks back, which this instance learns at the next window: it may
        // under-admit until then, never over-admit).
        let reduced = self.is_reduced_rate();
        let read = self.step_at(position, now, Request::Read, true);
        let in_hand = self.lease_left(position, read.state.window);
        let asked = block.max(count.saturating_sub(in_hand));
        let (ceiling, _) = slot.rules.shared_rule(reduced);
        let granted = if read.state.used >= ceiling && !force {
            Ok(0)
        } else {
            self.take_lease(position, read.state.window, asked, reduced, now)
        };
        if let Some(spent) = self.spend_lease(position, now, count) {
            return Ok(spent);
        }
        if force {
            let recorded = self.step_at(position, now, Request::Record(count), true);
            self.after_call(now, false);
            return match recorded.step.refused {
                None => Ok(self.recorded_after(slot, read, recorded)),
                Some(_) => Err(slot.invalid_count(count, "the counter would overflow")),
            };
        }
        let state = self.step_at(position, now, Request::Read, true).state;
        let reason = match granted {
            Err(_) => DenyReason::StoreUnavailable,
            Ok(_) => slot
                .rules
                .denies(state.used, count, reduced)
                .unwrap_or(DenyReason::Critical),
        };
        Err(self.denied(slot, count, state.used, reason))
    }

    /// `can_call` on a `Leased` service: calls in hand, or a block granted now.
    pub(super) fn leased_can_call(&self, position: usize, block: u64) -> bool {
        let now = self.now();
        let window = self
            .step_at(position, now, Request::Read, true)
            .state
            .window;
        if self.lease_left(position, window) > 0 {
            return true;
        }
        let reduced = self.is_reduced_rate();
        matches!(self.take_lease(position, window, block, reduced, now), Ok(granted) if granted > 0)
    }

    fn lease_left(&self, position: usize, window: Window) -> u64 {
        let guard = self.services[position].state.lock();
        if guard.lease.window == Some(window) {
            guard.lease.left
        } else {
            0
        }
    }

    /// Spends `count` leased calls if the block in hand covers them (one lock acquisition).
    fn spend_lease(&self, position: usize, now: u64, count: u64) -> Option<Recorded<'_>> {
        let slot = &self.services[position];
        let (state, reset, recorded) = {
            let mut guard = slot.state.lock();
            let old_window = guard.service.window;
            let step = slot.rules.step(&mut guard.service, now, Request::Read);
            if step.changed {
                guard.sync.book(old_window, &step, 0);
                if let Some(back) = self.persistence.as_ref().and_then(|p| {
                    let instance = p.instance;
                    let guard = &mut *guard;
                    (guard.lease.window == Some(old_window))
                        .then(|| guard.lease.give_back(slot, instance))
                        .flatten()
                }) {
                    guard.sync.give_backs.push(back);
                }
            }
            let (reset, recorded) = self.queue_transitions(slot, &step);
            let covered =
                guard.lease.window == Some(guard.service.window) && guard.lease.left >= count;
            if covered {
                guard.lease.left -= count;
                guard.service.total = guard.service.total.saturating_add(count);
            }
            (covered.then_some(guard.service), reset, recorded)
        };
        if reset.is_some() || recorded.is_some() {
            self.pump(&[position]);
        }
        let state = state?;
        self.after_call(now, false);
        Some(Recorded {
            usage: slot.usage(&state),
            reset,
            recorded,
        })
    }

    /// Asks the store for `asked` calls of `window`; the grant joins the block in hand.
    fn take_lease(
        &self,
        position: usize,
        window: Window,
        asked: u64,
        reduced: bool,
        now: u64,
    ) -> Result<u64, StoreError> {
        let slot = &self.services[position];
        let Some(persistence) = &self.persistence else {
            return Err(StoreError::Unsupported("leased admission without a store"));
        };
        let seq = self.lease_seq.fetch_add(1, Ordering::Relaxed) + 1;
        let (ceiling, _) = slot.rules.shared_rule(reduced);
        let request = LeaseRequest {
            instance: persistence.instance,
            seq,
            window: slot.window_key(window),
            block: asked,
            ceiling,
        };
        let reply = self.store_call(|store| store.lease(&request))?;
        {
            let mut guard = slot.state.lock();
            if guard.service.window == window {
                if guard.lease.window != Some(window) {
                    guard.lease.left = 0;
                }
                guard.lease.window = Some(window);
                guard.lease.left = guard.lease.left.saturating_add(reply.granted);
                guard.lease.seq = seq;
            } else if reply.granted > 0 {
                // The window moved while asking: that block is for a window that ended.
                guard.sync.give_backs.push(GiveBack {
                    instance: persistence.instance,
                    seq,
                    window: slot.window_key(window),
                    unused: reply.granted,
                });
            }
        }
        self.take_total(position, window, reply.total, 0, now);
        Ok(reply.granted)
    }

    /// Takes in a total the store answered for `window` (plus `count` calls this instance just
    /// had counted there): `used` rises to it and what this instance has not synced yet.
    fn take_total(
        &self,
        position: usize,
        window: Window,
        total: u64,
        count: u64,
        now: u64,
    ) -> StepResult {
        let slot = &self.services[position];
        let (step, state, reset, recorded) = {
            let mut guard = slot.state.lock();
            let mut step = Step::default();
            if guard.service.window == window {
                let view = total.saturating_add(guard.sync.unacked);
                step = slot.rules.observe(&mut guard.service, view, now);
                guard.service.total = guard.service.total.saturating_add(count);
            }
            let (reset, recorded) = self.queue_transitions(slot, &step);
            (step, guard.service, reset, recorded)
        };
        if reset.is_some() || recorded.is_some() {
            self.pump(&[position]);
            if recorded
                .as_ref()
                .is_some_and(|t| t.from < Level::Critical && t.to >= Level::Critical)
            {
                self.after_call(now, true);
            }
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
    fn recorded_after<'t>(
        &'t self,
        slot: &'t ServiceSlot,
        read: StepResult,
        after: StepResult,
    ) -> Recorded<'t> {
        Recorded {
            usage: slot.usage(&after.state),
            reset: read.reset,
            recorded: after.recorded,
        }
    }

    fn denied(&self, slot: &ServiceSlot, count: u64, used: u64, reason: DenyReason) -> QuotaError {
        QuotaError::Denied {
            service: Arc::clone(&slot.name),
            count,
            used,
            limit: slot.rules.limit,
            reason,
        }
    }

    /// A store call outside every lock, a panic turned into an error.
    fn store_call<T>(
        &self,
        call: impl FnOnce(&dyn crate::Store) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        match &self.persistence {
            Some(persistence) => persistence.call(call),
            None => Err(StoreError::Unsupported("shared admission without a store")),
        }
    }
}
