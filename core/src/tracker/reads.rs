//! Reads: whether a call is allowed, one service's usage, and every service's state under all
//! their locks (snapshots, metrics, a sync's cut).

use super::{
    describe_transition, QuotaTracker, ServiceSlot, Settings, SlotGuard, SlotState, SHARED,
};
use crate::config::Admission;
use crate::error::{DenyReason, QuotaError};
use crate::rules::Request;
use crate::usage::ServiceUsage;

/// One service as [`QuotaTracker::read_all`] read it, under its lock.
// Snapshots read the usage only; the metrics' refresh (feature `metrics`) reads the rest.
#[cfg_attr(not(feature = "metrics"), allow(dead_code))]
pub(super) struct Read<'t> {
    pub(super) slot: &'t ServiceSlot,
    /// The settings it was read under.
    pub(super) settings: &'t Settings,
    /// Its usage: the binding limit's, at the service's level.
    pub(super) usage: ServiceUsage<'t>,
    /// Each limit's usage, its own first, where it has several and they were asked for
    /// (empty otherwise).
    pub(super) limits: Vec<ServiceUsage<'t>>,
}

impl QuotaTracker {
    pub(super) fn can_call_at(&self, position: usize) -> bool {
        let slot = self.slot(position);
        if slot.queued_ahead(Request::normal(1, false)) {
            return false;
        }
        let settings = slot.settings();
        match settings.config.admission {
            _ if settings.removed => return false,
            _ if !SHARED => {}
            Admission::Local => {}
            // An async caller's call decided in place: the store's path runs off the executor.
            #[cfg(not(target_arch = "wasm32"))]
            _ if crate::caller::defers_store_call() => return false,
            Admission::Exact if !settings.more.is_empty() => {
                return self.exact_limits_can_call(position)
            }
            Admission::Exact => return self.exact_can_call(position),
            Admission::Leased { block } if !settings.more.is_empty() => {
                return self.leased_limits_can_call(position, block)
            }
            Admission::Leased { block } => return self.leased_can_call(position, block),
        }
        if !settings.more.is_empty() {
            let reduced_rate = self.is_reduced_rate();
            return self.read_limits(position, |_, settings, state| {
                (0..state.limit_count()).all(|at| {
                    settings
                        .limit(at)
                        .allows(state.count(at).used, reduced_rate)
                })
            });
        }
        let state = self
            .step_at(position, self.now(), Request::READ, true)
            .state;
        self.slot(position)
            .settings()
            .rules
            .allows(state.used, self.is_reduced_rate())
    }

    /// The error of a call refused because calls queued by `until_ready` come first.
    #[cold]
    #[inline(never)]
    pub(super) fn queued_refusal(&self, position: usize, count: u64) -> QuotaError {
        let usage = self.usage_at(position);
        self.slot(position)
            .denied(count, usage.used, usage.limit, DenyReason::Waiting)
    }

    /// The usage now (a removed service's: as it was removed).
    pub(super) fn usage_at(&self, position: usize) -> ServiceUsage<'_> {
        if !self.slot(position).settings().more.is_empty() {
            return self.read_limits(position, |slot, settings, state| {
                slot.usage_locked(settings, state)
            });
        }
        let state = self
            .step_at(position, self.now(), Request::READ, true)
            .state;
        self.slot(position).usage(&state)
    }

    /// Takes the locks of the slots at `positions` (ascending: the crate's one lock order).
    pub(super) fn lock_all(&self, positions: &[usize]) -> Vec<SlotGuard<'_>> {
        let booking = self.persistence.is_some();
        positions
            .iter()
            .map(|&position| self.slot(position).lock(booking))
            .collect()
    }

    /// The state of every service in force (in config order, with the settings it was read
    /// under) under all their locks, taken in position order (the crate's one lock order);
    /// roll-over transitions are delivered after if `deliver`. With `limits`, each limit's
    /// usage of the services of several limits too, under the same lock.
    pub(super) fn read_all(&self, now: u64, deliver: bool, limits: bool) -> Vec<Read<'_>> {
        let order = self.live();
        // The positions in increasing order (no sort: it would be the only one in the JS
        // module), and each one's guard among them, so that the reads come out in config order.
        let mut guard_of = vec![usize::MAX; order.iter().max().map_or(0, |&p| p + 1)];
        for &position in order.iter() {
            guard_of[position] = 0;
        }
        let positions: Vec<usize> = (0..guard_of.len())
            .filter(|&p| guard_of[p] != usize::MAX)
            .collect();
        for (at, &position) in positions.iter().enumerate() {
            guard_of[position] = at;
        }
        let mut guards = self.lock_all(&positions);
        let moved = self.read_locked(&mut guards, now, &mut |_, _, _| {});
        let read: Vec<_> = order
            .iter()
            .map(|&position| {
                let guard = &guards[guard_of[position]];
                let slot = guard.slot;
                let settings = slot.settings();
                let several = limits && !settings.more.is_empty();
                Read {
                    slot,
                    settings,
                    usage: slot.usage_locked(settings, guard),
                    limits: if several {
                        slot.usage_of_limits(settings, guard)
                    } else {
                        Vec::new()
                    },
                }
            })
            .collect();
        drop(guards);
        // As after any call that moves a window: the store may hold other instances' calls
        // in the new one. (A sync's own read, in `cut`, reads the new windows anyway.)
        if moved {
            if let Some(persistence) = &self.persistence {
                persistence.sync_soon();
            }
        }
        if deliver {
            self.pump(&positions);
        }
        read
    }

    /// Steps every locked service in force to `now` (a removed one is left as it is), then
    /// lets `also` look at each, removed or not; whether a window moved.
    pub(super) fn read_locked(
        &self,
        guards: &mut [SlotGuard<'_>],
        now: u64,
        also: &mut dyn FnMut(&ServiceSlot, &Settings, &mut SlotState),
    ) -> bool {
        let shared = self.persistence.is_some();
        let mut moved = false;
        for guard in guards.iter_mut() {
            let slot = guard.slot;
            let settings = slot.settings();
            if !settings.removed {
                for at in 0..guard.limit_count() {
                    let rules = settings.limit(at);
                    let (state, ledger) = guard.limit_mut(at);
                    let old_window = state.window;
                    let step = rules.step(state, now, Request::READ);
                    if shared && step.changed {
                        ledger.book(old_window, &step, 0);
                    }
                    moved |= step.moved.is_some();
                    self.queue_transitions(slot, &step);
                }
            }
            also(slot, settings, guard);
        }
        moved
    }

    pub(super) fn pump(&self, positions: &[usize]) {
        for &position in positions {
            self.slot(position)
                .outbox
                .pump(&self.observers, describe_transition);
        }
    }
}
