//! `Leased` admission of a service of several limits: one store call grants the same block in
//! every limit's window ([`LeaseRequest::also`]: the most every window has room for below its
//! ceiling), and the block is spent while every limit is still in the window it was granted
//! in; when any limit's window moves on, the rest goes back to all of them at once.

use super::{held_in, release_asked};
use crate::config::Admission;
use crate::error::{DenyReason, QuotaError};
use crate::rules::{Ask, Request};
use crate::store::{GiveBackWindow, LeaseReply, LeaseRequest, LeaseWindow, StoreError, WindowKey};
use crate::tracker::{describe_transition, QuotaTracker, SavingGuard, Settings};
use crate::usage::Recorded;

/// What a lease was asked under: the settings in force, each limit's window, the forfeits.
struct Asked<'a> {
    settings: &'a Settings,
    keys: &'a [WindowKey],
    forfeits: u64,
}

impl QuotaTracker {
    /// `record_call`, `try_record` or `try_record_priority` on a `Leased` service of several
    /// limits, as [`leased_update`](Self::leased_update) does for one: the block in hand, else
    /// a block asked (under every limit's normal ceiling), else a priority call asks the store
    /// as one `Exact` admission.
    pub(in crate::tracker) fn leased_limits_update(
        &self,
        position: usize,
        call: Request,
        block: u64,
    ) -> Result<Recorded<'_>, QuotaError> {
        let slot = self.slot(position);
        let settings = slot.settings();
        if settings.more.is_empty() {
            // Reconfigured to one limit since the caller looked: the path it picks now.
            return self.update(position, call);
        }
        let (count, force) = (call.count, call.ask == Ask::Record);
        let now = self.now();
        if let Some(spent) = self.spend_lease_limits(position, now, count) {
            return Ok(spent);
        }
        let reduced = self.is_reduced_rate();
        // In hand, and the least headroom below a limit's ceiling seen (as for one limit: a
        // count no block could cover takes none).
        let (in_hand, headroom, forfeits) = self.read_limits(position, |_, settings, state| {
            let in_hand = if state.block_is_current() {
                state.lease.left
            } else {
                0
            };
            let headroom = (0..state.limit_count())
                .map(|at| {
                    let ceiling = settings.limit(at).lease_ceiling(reduced);
                    ceiling.saturating_sub(state.count(at).used)
                })
                .min()
                .unwrap_or(0);
            (in_hand, headroom, state.lease.forfeits)
        });
        let needed = count.saturating_sub(in_hand);
        let granted = if self.backing_off(now) {
            Err(StoreError::Unavailable(
                "the store failed; backing off".into(),
            ))
        } else if !force && needed > headroom {
            Ok(0)
        } else {
            self.take_lease_limits(position, block.max(needed), reduced, now)
        };
        if let Some(spent) = self.spend_lease_limits(position, now, count) {
            return Ok(spent);
        }
        if !std::ptr::eq(slot.settings(), settings) || self.lease_forfeits(position) != forfeits {
            // Reconfigured while the store was asked (the grant went back), or a raise forfeited
            // the grant: decided again, under the settings and the counts in force.
            return self.update(position, call);
        }
        if !force && matches!(granted, Ok(got) if got >= count) {
            // The block granted covered this call, and other threads spent it first: asked
            // again (a refusal here would be one with room to spare).
            return self.update(position, call);
        }
        if force {
            let admission = slot.settings().config.admission;
            return self.limits_step_here(position, Request::record(count), admission);
        }
        if call.ask == Ask::Priority && granted.is_ok() {
            return self.exact_limits_update(position, call);
        }
        // Refused by a limit's view, or else by the shared total at the ceiling of the limit
        // with the least room below it.
        let normal = Request::normal(count, reduced);
        let (used, limit, reason) = self.read_limits(position, |_, settings, state| {
            let limit = |at: usize| (settings.limit(at), state.count(at).used);
            let by_view = (0..state.limit_count()).find_map(|at| {
                let (rules, used) = limit(at);
                Some((used, rules.limit, rules.denies(used, normal)?))
            });
            let tightest = (0..state.limit_count())
                .min_by_key(|&at| {
                    let (rules, used) = limit(at);
                    rules.lease_ceiling(reduced).saturating_sub(used)
                })
                .unwrap_or(0);
            let (rules, used) = limit(tightest);
            let by_ceiling = rules
                .denies(rules.lease_ceiling(reduced), normal)
                .unwrap_or(DenyReason::Critical);
            match granted {
                Err(_) => (used, rules.limit, DenyReason::StoreUnavailable),
                Ok(_) => by_view.unwrap_or((used, rules.limit, by_ceiling)),
            }
        });
        Err(slot.denied(count, used, limit, reason))
    }

    /// `can_call` on a `Leased` service of several limits: calls in hand, or a block granted now.
    pub(in crate::tracker) fn leased_limits_can_call(&self, position: usize, block: u64) -> bool {
        let now = self.now();
        let in_hand = self.read_limits(position, |_, _, state| {
            state.block_is_current() && state.lease.left > 0
        });
        if in_hand {
            return true;
        }
        if self.backing_off(now) {
            return false;
        }
        let reduced = self.is_reduced_rate();
        matches!(self.take_lease_limits(position, block, reduced, now), Ok(granted) if granted > 0)
    }

    /// Spends `count` leased calls if the block in hand covers them, every limit rolled over
    /// first (one lock acquisition); a block some limit's window moved on from goes back first.
    fn spend_lease_limits(&self, position: usize, now: u64, count: u64) -> Option<Recorded<'_>> {
        let slot = self.slot(position);
        let (recorded, done) = {
            let mut guard = slot.lock(self.persistence.is_some());
            let settings = slot.settings();
            if settings.removed || settings.more.is_empty() {
                return None;
            }
            let done = self.step_limits(slot, &mut guard, settings, now, Request::READ);
            if guard.lease.window.is_some() && !guard.block_is_current() {
                let (back, step) = guard.give_lease_back(slot, self, now);
                guard.sync.queued.give_backs.extend(back);
                self.queue_transitions(slot, &step);
            }
            let covered = guard.block_is_current() && guard.lease.left >= count;
            let recorded = covered.then(|| {
                guard.lease.left -= count;
                for at in 0..guard.limit_count() {
                    let (state, _) = guard.limit_mut(at);
                    state.total = state.total.saturating_add(count);
                }
                let (reset, recorded) = done.reported();
                Recorded {
                    usage: slot.usage_locked(settings, &guard),
                    reset,
                    recorded,
                    shadow_denied: None,
                }
            });
            (recorded, done)
        };
        self.after_limits_step(slot, &done, now);
        if recorded.is_none() && !SavingGuard::is_saving(self) {
            // A give-back may have lowered a limit's view: its transitions go out now.
            slot.outbox.pump(&self.observers, describe_transition);
        }
        recorded
    }

    /// Asks the store for `asked` calls in every limit's window now; the grant joins the block
    /// in hand. A lease whose answer is lost is left to the next sync.
    fn take_lease_limits(
        &self,
        position: usize,
        asked: u64,
        reduced: bool,
        now: u64,
    ) -> Result<u64, StoreError> {
        let slot = self.slot(position);
        // Under the lock (and its settings in force): floors the store has not seen cap the
        // block (it cannot hold them against it); the block is booked on every limit's ledger;
        // each limit's window and the calls of it the store does not know.
        let (settings, asked, keys, unsynced, forfeits) = {
            let mut guard = slot.lock(true);
            let settings = slot.settings();
            let forfeits = guard.lease.forfeits;
            let leasing = !settings.removed
                && !settings.more.is_empty()
                && matches!(settings.config.admission, Admission::Leased { .. });
            if !leasing {
                return Ok(0);
            }
            let mut asked = asked;
            let mut keys: Vec<WindowKey> = Vec::with_capacity(guard.limit_count());
            let mut unsynced = Vec::with_capacity(guard.limit_count());
            for at in 0..guard.limit_count() {
                let rules = settings.limit(at);
                let window = guard.count(at).window;
                let key = slot.limit_window_key(&rules.window, window);
                let held = held_in(&guard, &key);
                let (_, ledger) = guard.limit_mut(at);
                if let Some(seen) = ledger.floor_seen(window) {
                    asked = asked.min(rules.lease_ceiling(reduced).saturating_sub(seen));
                }
                unsynced.push(ledger.unacked.saturating_add(held));
                keys.push(key);
            }
            if asked == 0 {
                return Ok(0);
            }
            for at in 0..guard.limit_count() {
                let (_, ledger) = guard.limit_mut(at);
                ledger.floor_asked = ledger.floor_asked.saturating_add(asked);
            }
            (settings, asked, keys, unsynced, forfeits)
        };
        // Blocks are normal admission (they never hold the reserve), less what the store does
        // not know of this tracker's calls.
        let ceiling = |at: usize| {
            settings
                .limit(at)
                .lease_ceiling(reduced)
                .saturating_sub(unsynced[at])
        };
        let (seq, done_below) = self.issue();
        let request = LeaseRequest {
            instance: self.instance(),
            seq,
            done_below,
            window: keys[0].clone(),
            block: asked,
            ceiling: ceiling(0),
            also: (1..keys.len())
                .map(|at| LeaseWindow {
                    window: keys[at].clone(),
                    ceiling: ceiling(at),
                })
                .collect(),
        };
        let reply = match self.store_call(|store| store.lease(&request)?.answering(&request)) {
            Ok(reply) => {
                self.answered(request.seq);
                reply
            }
            Err(error) => {
                let mut guard = slot.lock(true);
                if error.maybe_applied() {
                    // Maybe granted: booked, and asked again by the next sync until answered.
                    guard.sync.queued.leases.push(request);
                } else {
                    release_asked(&mut guard, asked);
                    self.answered(request.seq);
                }
                drop(guard);
                self.store_failed();
                return Err(error);
            }
        };
        let asked_under = Asked {
            settings,
            keys: &keys,
            forfeits,
        };
        Ok(self.take_grant(position, &request, &asked_under, reply, now))
    }

    /// Takes a grant in under one acquisition of the service's lock: joined to the block in
    /// hand if every limit is still in the window it was asked in under the same settings
    /// (a reconfigure may have lowered a limit) and no raise came since it was asked, else given
    /// back to the windows it was granted in. Every limit still in the window asked takes the
    /// store's total of it. Returns the calls joined.
    fn take_grant(
        &self,
        position: usize,
        request: &LeaseRequest,
        asked: &Asked<'_>,
        reply: LeaseReply,
        now: u64,
    ) -> u64 {
        let keys = asked.keys;
        let slot = self.slot(position);
        let granted = reply.granted;
        let (joined, transitions) = {
            let mut guard = slot.lock(true);
            let settings = slot.settings();
            release_asked(&mut guard, request.block);
            let limits = guard.limit_count();
            let current: Vec<WindowKey> = (0..limits)
                .map(|at| slot.limit_window_key(&settings.limit(at).window, guard.count(at).window))
                .collect();
            let unchanged = std::ptr::eq(settings, asked.settings)
                && !settings.removed
                && !settings.more.is_empty()
                && matches!(settings.config.admission, Admission::Leased { .. });
            let raised = guard.lease.forfeits != asked.forfeits;
            let joined = !raised && unchanged && current == keys;
            let mut totals: Vec<u64> = std::iter::once(reply.total)
                .chain(reply.also.iter().map(|w| w.total))
                .collect();
            if joined {
                if guard.lease.window.is_some() && !guard.block_is_current() {
                    // A block of windows that moved on: back to them, never dropped.
                    let (back, step) = guard.give_lease_back(slot, self, now);
                    guard.sync.queued.give_backs.extend(back);
                    self.queue_transitions(slot, &step);
                }
                let raise_counts: Vec<u64> = std::iter::once(reply.raise_count)
                    .chain(reply.also.iter().map(|w| w.raise_count))
                    .collect();
                // The oldest grant's counts (the store's only rise): a block merged from grants
                // is forfeited in a window if any raise came after any of them.
                if guard.lease.left == 0 || !guard.block_is_current() {
                    guard.lease.raise_count = raise_counts[0];
                    guard.lease.more = (1..limits)
                        .map(|at| (guard.count(at).window, raise_counts[at]))
                        .collect();
                } else {
                    guard.lease.raise_count = guard.lease.raise_count.min(raise_counts[0]);
                    for (at, (_, raise_count)) in guard.lease.more.iter_mut().enumerate() {
                        *raise_count = (*raise_count).min(raise_counts[at + 1]);
                    }
                }
                guard.lease.window = Some(guard.service.window);
                guard.lease.left = guard.lease.left.saturating_add(granted);
                // A floor not acknowledged carries the whole block too (see `take_lease`).
                for at in 0..limits {
                    let window = guard.count(at).window;
                    let (_, ledger) = guard.limit_mut(at);
                    ledger.after_raise(window, granted);
                }
            } else if granted > 0 {
                // A window moved while asking, the service changed, or a raise came (the
                // provider says less is left than the grant assumed): the block goes back to
                // the windows it was granted in, each forfeiting it if the raise reached it
                // after the grant.
                let mut back =
                    self.give_back_of(request.window.clone(), granted, reply.raise_count);
                back.also = request
                    .also
                    .iter()
                    .zip(&reply.also)
                    .map(|(asked, got)| GiveBackWindow {
                        window: asked.window.clone(),
                        raise_count: got.raise_count,
                    })
                    .collect();
                // (Queued: the totals below leave it out with the others not sent yet.)
                guard.sync.queued.give_backs.push(back);
            }
            // Calls given back but not sent yet: the store's totals still count them, this
            // view no longer does.
            for (total, key) in totals.iter_mut().zip(keys) {
                let pending: u64 = guard
                    .sync
                    .queued
                    .give_backs
                    .iter()
                    .filter(|back| back.windows().any(|w| w == key))
                    .map(|back| back.unused)
                    .sum();
                *total = total.saturating_sub(pending);
            }
            let mut transitions = Vec::new();
            for (at, now_key) in current.iter().enumerate() {
                let rules = settings.limit(at);
                let (state, ledger) = guard.limit_mut(at);
                let Some(total) = keys
                    .iter()
                    .position(|key| key == now_key)
                    .and_then(|i| totals.get(i))
                else {
                    continue;
                };
                let mut view = total.saturating_add(ledger.unacked);
                if let Some(floor) = ledger.after_raise(state.window, 0) {
                    view = view.max(floor);
                }
                let step = rules.observe(state, view, now);
                transitions.extend(step.recorded.map(|change| slot.transition(change)));
            }
            let epoch = self.observers.epoch();
            for transition in &transitions {
                slot.outbox.push(transition.clone(), epoch);
            }
            (if joined { granted } else { 0 }, transitions)
        };
        self.deliver(position, &transitions, now);
        joined
    }
}
