//! `Leased` admission: blocks of calls taken from the store and spent in process; the block
//! in hand, and giving its unused calls back.

use crate::config::Admission;
use crate::error::{DenyReason, QuotaError};
use crate::rules::{Ask, Request, Step};
use crate::store::{GiveBack, GiveBackWindow, LeaseRequest, StoreError};
use crate::tracker::{QuotaTracker, ServiceSlot, Settings, SlotState};
use crate::usage::Recorded;
use crate::window::Window;

/// The block a `Leased` service holds.
#[derive(Debug, Default)]
pub(in crate::tracker) struct LeaseState {
    /// Granted calls not spent yet.
    pub(in crate::tracker) left: u64,
    /// The window they were granted in.
    pub(in crate::tracker) window: Option<Window>,
    /// The window's raise count when the oldest of them was granted (a give-back of them is
    /// forfeited if the window was raised since).
    pub(in crate::tracker) raise_count: u64,
    /// A service of several limits: the block holds its calls in every limit's window; here,
    /// each other limit's (in order) and its raise count, as `window` and `raise_count` hold
    /// the first's. Empty for a service of one limit.
    pub(in crate::tracker) more: Vec<(Window, u64)>,
    /// How many times a raise forfeited the block: a grant asked before one goes back when it
    /// comes, never spent (the provider's count says less is left than it assumed).
    pub(in crate::tracker) forfeits: u64,
    /// The background syncer was asked to lease the next block (the one in hand fell below
    /// half a block); cleared when it has.
    pub(in crate::tracker) prefetching: bool,
    /// How many blocks a lease ahead asks for (0 and 1: one): doubled, up to [`MOST_AHEAD`],
    /// each time the block in hand ran out before the lease ahead came, so that a lease
    /// ahead lasts longer than the store takes to answer.
    pub(in crate::tracker) ahead: u64,
}

/// The most blocks one lease ahead asks for.
const MOST_AHEAD: u64 = 64;

impl LeaseState {
    /// A raise: the block in hand is forfeited, not spent nor given back (a give-back
    /// subtracts, and could take the stored total below the floor); a grant asked before it
    /// goes back when it comes. The store keeps counting the block's calls: an
    /// under-admission, never an over-admission.
    pub(in crate::tracker) fn forfeit(&mut self) {
        self.left = 0;
        self.more.clear();
        self.forfeits = self.forfeits.wrapping_add(1);
    }
}

impl SlotState {
    /// Whether the block in hand was granted in every limit's window now.
    pub(in crate::tracker) fn block_is_current(&self) -> bool {
        self.lease.window == Some(self.service.window)
            && self.lease.more.len() == self.more.len()
            && self
                .lease
                .more
                .iter()
                .zip(&self.more)
                .all(|((window, _), limit)| *window == limit.service.window)
    }

    /// Takes the unspent leased calls back out, as a give-back of their windows numbered by
    /// `seq`; in a limit's current window they leave this tracker's view too (it counted them).
    pub(in crate::tracker) fn give_lease_back(
        &mut self,
        slot: &ServiceSlot,
        tracker: &QuotaTracker,
        now: u64,
    ) -> (Option<GiveBack>, Step) {
        self.give_lease_back_keeping(slot, tracker, now, None)
    }

    /// [`give_lease_back`](Self::give_lease_back), but the limit at `kept` (one a raise just
    /// reached) keeps the unspent calls counted in its window: its floor may hold them, so
    /// they are forfeited there, as a raise forfeits the block of a service of one limit.
    pub(in crate::tracker) fn give_lease_back_keeping(
        &mut self,
        slot: &ServiceSlot,
        tracker: &QuotaTracker,
        now: u64,
        kept: Option<usize>,
    ) -> (Option<GiveBack>, Step) {
        let Some(window) = self.lease.window else {
            return (None, Step::default());
        };
        let more = std::mem::take(&mut self.lease.more);
        let unused = std::mem::take(&mut self.lease.left);
        if unused == 0 {
            return (None, Step::default());
        }
        let settings = slot.settings();
        // Each limit the block holds calls in (a reconfigure gives a block back before it
        // changes the limits, so they are the ones it was granted under).
        let held: Vec<(usize, Window, u64)> = std::iter::once((0, window, self.lease.raise_count))
            .chain(
                more.iter()
                    .enumerate()
                    .map(|(at, &(w, rc))| (at + 1, w, rc)),
            )
            .filter(|&(at, ..)| at < self.limit_count() && Some(at) != kept)
            .collect();
        let mut first_step = Step::default();
        for &(at, held_window, _) in &held {
            let rules = settings.limit(at);
            let (state, sync) = self.limit_mut(at);
            // A block in hand while a floor of its window is not acknowledged was added to
            // that floor whole when granted (a raise forfeits the block it finds): its unused
            // calls come off the floor too, or the floor would put back what the give-back
            // takes off.
            for (raised, floor) in sync.raise.iter_mut().chain(sync.ended_raises.iter_mut()) {
                if *raised == held_window {
                    *floor = floor.saturating_sub(unused);
                }
            }
            if held_window == state.window {
                let step = rules.lower(state, unused, now);
                if at == 0 {
                    first_step = step;
                } else {
                    tracker.queue_transitions(slot, &step);
                }
            }
        }
        let mut windows = held.iter().map(|&(at, w, raise_count)| GiveBackWindow {
            window: slot.limit_window_key(&settings.limit(at).window, w),
            raise_count,
        });
        let Some(first) = windows.next() else {
            return (None, first_step);
        };
        let mut back = tracker.give_back_of(first.window, unused, first.raise_count);
        back.also = windows.collect();
        (Some(back), first_step)
    }
}

impl QuotaTracker {
    /// `record_call`, `try_record` or `try_record_priority` on a `Leased` service.
    ///
    /// Blocks are leased under the normal ceiling only, so a block never holds calls of the
    /// reserve (nor past the Critical threshold) for normal calls to spend. A priority call
    /// spends the block in hand like any call; what the block does not cover it asks of the
    /// store as one `Exact` admission under the priority rule (nothing is left over).
    pub(in crate::tracker) fn leased_update(
        &self,
        position: usize,
        call: Request,
        block: u64,
    ) -> Result<Recorded<'_>, QuotaError> {
        let slot = self.slot(position);
        let settings = slot.settings();
        if !settings.more.is_empty() {
            // Reconfigured to several limits since the caller looked.
            return self.leased_limits_update(position, call, block);
        }
        let (count, force) = (call.count, call.ask == Ask::Record);
        let now = self.now();
        if let Some(spent) = self.spend_lease(position, now, count) {
            return Ok(spent);
        }
        let forfeits = self.lease_forfeits(position);
        // Not enough in hand: ask for a block (or as many as this call needs), unless the
        // headroom below the ceiling seen cannot cover the call (the shared total only falls
        // by other instances giving blocks back, which this instance learns at the next
        // window: it may under-admit until then, never over-admit).
        let reduced = self.is_reduced_rate();
        let read = self.step_at(position, now, Request::READ, true);
        let in_hand = self.lease_left(position, read.state.window);
        let asked = block.max(count.saturating_sub(in_hand));
        let ceiling = slot.settings().rules.lease_ceiling(reduced);
        let granted = if self.backing_off(now) {
            Err(StoreError::Unavailable(
                "the store failed; backing off".into(),
            ))
        } else if !force && count.saturating_sub(in_hand) > ceiling.saturating_sub(read.state.used)
        {
            // No block could cover it (at the ceiling already, or a count larger than the
            // headroom seen): take none, rather than hold the headroom for nothing.
            Ok(0)
        } else {
            self.take_lease(position, read.state.window, asked, reduced, now)
        };
        if let Some(spent) = self.spend_lease(position, now, count) {
            return Ok(spent);
        }
        if !std::ptr::eq(slot.settings(), settings) || self.lease_forfeits(position) != forfeits {
            // Reconfigured while the store was asked (the grant went back), or a raise forfeited
            // the grant: decided again, under the settings and the count in force.
            return self.update(position, call);
        }
        if !force && matches!(granted, Ok(got) if got >= count) {
            // The block granted covered this call, and other threads spent it first: asked
            // again (a refusal here would be one with room to spare).
            return self.update(position, call);
        }
        if force {
            let recorded = self.step_at(position, now, Request::record(count), true);
            self.after_call(now, false);
            return match recorded.step.refused {
                None => Ok(self.recorded_after(slot, read, recorded)),
                Some(refusal) => Err(slot.refused(refusal, count)),
            };
        }
        if call.ask == Ask::Priority && granted.is_ok() {
            return self.exact_update(position, call);
        }
        let state = self.step_at(position, now, Request::READ, true).state;
        let reason = match granted {
            Err(_) => DenyReason::StoreUnavailable,
            // Refused by the view, or else by the shared total at the ceiling.
            Ok(_) => slot
                .settings()
                .rules
                .denies(state.used, Request::normal(count, reduced))
                .or_else(|| {
                    slot.settings()
                        .rules
                        .denies(ceiling, Request::normal(count, reduced))
                })
                .unwrap_or(DenyReason::Critical),
        };
        Err(self.denied(slot, count, state.used, reason))
    }

    /// `can_call` on a `Leased` service: calls in hand, or a block granted now.
    pub(in crate::tracker) fn leased_can_call(&self, position: usize, block: u64) -> bool {
        let now = self.now();
        let window = self
            .step_at(position, now, Request::READ, true)
            .state
            .window;
        if self.lease_left(position, window) > 0 {
            return true;
        }
        if self.backing_off(now) {
            return false;
        }
        let reduced = self.is_reduced_rate();
        matches!(self.take_lease(position, window, block, reduced, now), Ok(granted) if granted > 0)
    }

    /// How many times a raise forfeited the service's block (see [`LeaseState::forfeit`]).
    pub(in crate::tracker) fn lease_forfeits(&self, position: usize) -> u64 {
        self.slot(position)
            .lock(self.persistence.is_some())
            .lease
            .forfeits
    }

    pub(in crate::tracker) fn lease_left(&self, position: usize, window: Window) -> u64 {
        let guard = self.slot(position).lock(self.persistence.is_some());
        if guard.lease.window == Some(window) {
            guard.lease.left
        } else {
            0
        }
    }

    /// Spends `count` leased calls if the block in hand covers them (one lock acquisition).
    pub(in crate::tracker) fn spend_lease(
        &self,
        position: usize,
        now: u64,
        count: u64,
    ) -> Option<Recorded<'_>> {
        let slot = self.slot(position);
        let prefetch;
        let (state, reset, recorded) = {
            let mut guard = slot.lock(self.persistence.is_some());
            let old_window = guard.service.window;
            let step = slot
                .settings()
                .rules
                .step(&mut guard.service, now, Request::READ);
            if step.changed {
                guard.sync.book(old_window, &step, 0);
            }
            // A block of a window that has ended goes back, whichever call rolled the window
            // over (this one, or a read or sync before it).
            if guard
                .lease
                .window
                .is_some_and(|w| w != guard.service.window)
            {
                let (back, _) = guard.give_lease_back(slot, self, now);
                guard.sync.queued.give_backs.extend(back);
            }
            let (reset, recorded) = self.queue_transitions(slot, &step);
            let covered =
                guard.lease.window == Some(guard.service.window) && guard.lease.left >= count;
            let block = match slot.settings().config.admission {
                Admission::Leased { block } => block,
                _ => 0,
            };
            if !covered && guard.lease.prefetching {
                // The lease ahead came too late: the next asks for more.
                guard.lease.ahead = (guard.lease.ahead.max(1) * 2).min(MOST_AHEAD);
            }
            prefetch = covered && self.prefetches(&mut guard.lease, count, block);
            if covered {
                guard.lease.left -= count;
                guard.service.total = guard.service.total.saturating_add(count);
                // Not added to a floor here: a block leased after a raise was added to it
                // whole when it was granted (see `take_lease`), and a raise forfeits the block
                // it finds in hand.
            }
            (covered.then_some(guard.service), reset, recorded)
        };
        if reset.is_some() || recorded.is_some() {
            self.pump(&[position]);
        }
        #[cfg(not(target_arch = "wasm32"))]
        if prefetch {
            self.syncer.prefetch(position);
        }
        #[cfg(target_arch = "wasm32")]
        let _ = prefetch;
        let state = state?;
        self.after_call(now, false);
        Some(Recorded {
            usage: slot.usage(&state),
            reset,
            recorded,
            shadow_denied: None,
        })
    }

    /// Whether spending `count` of the block in hand (`lease`, under its lock) should have the
    /// background syncer lease the next one: it runs, the block falls below half a `block`,
    /// and no such lease is asked already (marked asked, if so).
    fn prefetches(&self, lease: &mut LeaseState, count: u64, block: u64) -> bool {
        let ahead = block.saturating_mul(lease.ahead.max(1));
        if !self.syncs_in_background()
            || lease.prefetching
            || lease.left - count >= ahead.div_ceil(2)
        {
            return false;
        }
        lease.prefetching = true;
        true
    }

    /// Leases the next block of the `Leased` service at `position` ahead of need, on the
    /// background syncer's thread (no lock held while the store answers; the grant joins the
    /// block in hand, under the same ceiling as any lease: never an over-admission).
    #[cfg(not(target_arch = "wasm32"))]
    pub(in crate::tracker) fn prefetch_lease(&self, position: usize) {
        let slot = self.slot(position);
        let settings = slot.settings();
        let now = self.now();
        if let Admission::Leased { block } = settings.config.admission {
            if settings.more.is_empty() && !settings.removed && !self.backing_off(now) {
                let reduced = self.is_reduced_rate();
                let state = self.step_at(position, now, Request::READ, true).state;
                let headroom = settings
                    .rules
                    .lease_ceiling(reduced)
                    .saturating_sub(state.used);
                let ahead = slot.lock(self.persistence.is_some()).lease.ahead.max(1);
                // More blocks at once only while they are a small part of what is left (other
                // instances must not be refused for calls held here), never less than one.
                let asked = block.saturating_mul(ahead).min(headroom / 8).max(block);
                if headroom > 0 {
                    // A failure is the store's (counted, backed off); the caller whose block
                    // runs out asks again itself.
                    let _ = self.take_lease(position, state.window, asked, reduced, now);
                }
            }
        }
        slot.lock(self.persistence.is_some()).lease.prefetching = false;
    }

    /// Asks the store for `asked` calls of `window`; the grant joins the block in hand. A lease
    /// whose answer is lost is left to the next sync (see [`Queued::leases`](crate::persistence::Queued::leases)).
    pub(in crate::tracker) fn take_lease(
        &self,
        position: usize,
        window: Window,
        asked: u64,
        reduced: bool,
        now: u64,
    ) -> Result<u64, StoreError> {
        let slot = self.slot(position);
        let ceiling = slot.settings().rules.lease_ceiling(reduced);
        let (asked, asked_under, forfeits, backs_sent) = {
            let mut guard = slot.lock(self.persistence.is_some());
            let backs_sent = guard.sync.backs_sent;
            // The settings and forfeits when asked: a grant that comes after a change or a
            // raise is not spent (see below).
            let asked_under: *const Settings = slot.settings();
            let forfeits = guard.lease.forfeits;
            // A floor the store has not seen yet: no block past it (the store cannot hold it
            // against the block). The block asked is booked until the answer is taken in (see
            // `ask_under_floor`).
            let mut asked = asked;
            if let Some(seen) = guard.sync.floor_seen(window) {
                asked = asked.min(ceiling.saturating_sub(seen));
                if asked == 0 {
                    return Ok(0);
                }
            }
            guard.sync.floor_asked = guard.sync.floor_asked.saturating_add(asked);
            (asked, asked_under, forfeits, backs_sent)
        };
        let booked = asked;
        // The store does not know this tracker's unsynced calls: they come off the ceiling.
        // Blocks are normal admission: they never hold the reserve.
        let (seq, done_below) = self.issue();
        let request = LeaseRequest {
            instance: self.instance(),
            seq,
            done_below,
            window: slot.window_key(window),
            block: asked,
            ceiling: ceiling.saturating_sub(self.unsynced(position)),
            also: Vec::new(),
        };
        let reply = match self.store_call(|store| store.lease(&request)?.answering(&request)) {
            Ok(reply) => {
                self.answered(request.seq);
                reply
            }
            Err(error) => {
                let mut guard = slot.lock(self.persistence.is_some());
                if error.maybe_applied() {
                    // Maybe granted: booked, and asked again by the next sync until answered.
                    guard.sync.queued.leases.push(request);
                } else {
                    guard.sync.floor_asked = guard.sync.floor_asked.saturating_sub(booked);
                    self.answered(request.seq);
                }
                drop(guard);
                self.store_failed();
                return Err(error);
            }
        };
        let requested_window = request.window.start_ms;
        // The store's total without a grant that went straight back (it counts the block,
        // which nobody here holds: the view must not).
        let mut total = reply.total;
        {
            let mut guard = slot.lock(self.persistence.is_some());
            guard.sync.floor_asked = guard.sync.floor_asked.saturating_sub(booked);
            let current = guard.service.window;
            // A reconfigure may have changed the service while the store was asked (removed
            // it, changed its admission, lowered its limit, given it more limits), or a raise
            // may have come (the provider's count says less is left than the grant assumed):
            // then the grant goes back at once, never held (the store forfeits it if the raise
            // reached it after the grant: its raise count moved on).
            let settings = slot.settings();
            let unchanged = std::ptr::eq(settings, asked_under)
                && !settings.removed
                && settings.more.is_empty()
                && matches!(settings.config.admission, Admission::Leased { .. });
            let raised = guard.lease.forfeits != forfeits;
            if !raised && slot.window_key(current) == request.window && unchanged {
                if guard.lease.window.is_some_and(|w| w != current) {
                    // A block of an ended window: back to that window, never dropped.
                    let (back, _) = guard.give_lease_back(slot, self, now);
                    guard.sync.queued.give_backs.extend(back);
                }
                // The oldest grant's count (the store's only rises): a block merged from grants
                // whose replies came in any order is forfeited if any raise came after any of
                // them.
                if guard.lease.left == 0 || guard.lease.window != Some(current) {
                    guard.lease.raise_count = reply.raise_count;
                } else {
                    guard.lease.raise_count = guard.lease.raise_count.min(reply.raise_count);
                }
                guard.lease.window = Some(current);
                guard.lease.left = guard.lease.left.saturating_add(reply.granted);
                // The store added the block to its total, maybe before it applied a floor
                // not acknowledged yet, which would absorb it: the floor carries it too (the
                // whole block, as the store counts it), so the view counts the block in hand
                // on top of the floor, and giving its unused calls back never takes the total
                // below the floor.
                guard.sync.after_raise(current, reply.granted);
            } else if reply.granted > 0 {
                // The window moved while asking (or the service changed, or a raise came): that
                // block goes back to the window it was granted in.
                let back =
                    self.give_back_of(request.window.clone(), reply.granted, reply.raise_count);
                guard.sync.queued.give_backs.push(back);
                total = total.saturating_sub(reply.granted);
            }
        }
        if requested_window == window.start_ms {
            let answer = super::Answered { total, backs_sent };
            self.take_total(position, window, answer, 0, 0, now);
        }
        Ok(reply.granted)
    }
}
