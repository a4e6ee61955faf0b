//! Shared admission: `Exact` (every decision in the store) and `Leased` (blocks of calls taken
//! from the store, spent in process). See [`Admission`](crate::Admission).
//!
//! Store calls here run with no tracker lock held; the service's lock is taken before (to roll
//! the window over and read it) and after (to take in the answer), never across.

use super::{QuotaTracker, ServiceSlot, SlotState, StepResult};
use crate::error::{DenyReason, QuotaError};
use crate::level::Level;
use crate::persistence::HeldAdmit;
use crate::rules::{Request, Step};
use crate::store::{AdmitReply, AdmitRequest, GiveBack, LeaseRequest, StoreError, WindowKey};
use crate::usage::Recorded;
use crate::window::Window;

/// What a shared-admission call asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Ask {
    /// `record_call`: count, without asking.
    Force,
    /// `try_record`: normal admission (stops at the Critical level or at `limit - reserve`).
    Normal,
    /// `try_record_priority`: priority admission (up to the limit).
    Priority,
}

/// The block a `Leased` service holds.
#[derive(Debug, Default)]
pub(super) struct LeaseState {
    /// Granted calls not spent yet.
    pub(super) left: u64,
    /// The window they were granted in.
    pub(super) window: Option<Window>,
    /// The window's raise count when the oldest of them was granted (a give-back of them is
    /// forfeited if the window was raised since).
    pub(super) raise_count: u64,
    /// A lease whose answer was lost: the next sync asks it again, as it is, until the store
    /// answers (a retry gets the same grant, counted once), then gives its grant back (or
    /// forfeits it after a raise): never stranded, never granted twice.
    pub(super) unanswered: Vec<LeaseRequest>,
}

impl SlotState {
    /// Takes the unspent leased calls back out, as a give-back of their window numbered by
    /// `seq`; in the current window they leave this tracker's view too (it counted them).
    pub(super) fn give_lease_back(
        &mut self,
        slot: &ServiceSlot,
        tracker: &QuotaTracker,
        now: u64,
    ) -> (Option<GiveBack>, Step) {
        let Some(window) = self.lease.window else {
            return (None, Step::default());
        };
        let unused = std::mem::take(&mut self.lease.left);
        if unused == 0 {
            return (None, Step::default());
        }
        // A block in hand while a floor of its window is not acknowledged was added to that
        // floor whole when granted (a raise forfeits the block it finds): its unused calls come
        // off the floor too, or the floor would put back what the give-back takes off.
        let sync = &mut self.sync;
        for (raised, floor) in sync.raise.iter_mut().chain(sync.ended_raises.iter_mut()) {
            if *raised == window {
                *floor = floor.saturating_sub(unused);
            }
        }
        let step = if window == self.service.window {
            slot.rules.lower(&mut self.service, unused, now)
        } else {
            Step::default()
        };
        let back = tracker.give_back_of(slot.window_key(window), unused, self.lease.raise_count);
        (Some(back), step)
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
    /// A new give-back of `calls` counted in `window` when its raise count was `raise_count`, numbered
    /// (pending until answered).
    pub(super) fn give_back_of(&self, window: WindowKey, calls: u64, raise_count: u64) -> GiveBack {
        let (seq, done_below) = self.issue();
        GiveBack {
            instance: self.instance(),
            seq,
            done_below,
            window,
            unused: calls,
            raise_count,
        }
    }

    /// A new operation number and the `done_below` to send with it (none without a store).
    pub(super) fn issue(&self) -> (u64, u64) {
        self.persistence.as_ref().map_or((0, 0), |p| p.issue())
    }

    /// Operation `seq` was answered, or dropped unsent.
    pub(super) fn answered(&self, seq: u64) {
        if let Some(persistence) = &self.persistence {
            persistence.answered(seq);
        }
    }

    /// `record_call`, `try_record` or `try_record_priority` on an `Exact` service (and a
    /// priority call on a `Leased` one that its block does not cover).
    pub(super) fn exact_update(
        &self,
        position: usize,
        count: u64,
        ask: Ask,
    ) -> Result<Recorded<'_>, QuotaError> {
        let slot = &self.services[position];
        let (force, priority) = (ask == Ask::Force, ask == Ask::Priority);
        let now = self.now();
        let read = self.step_at(position, now, Request::Read, true);
        if self.backing_off(now) {
            // The store failed a moment ago: no round trip per call while it backs off.
            return self.exact_unavailable(position, read, count, force, now);
        }
        let reduced = self.is_reduced_rate();
        let asked;
        {
            // Booked while asked; and a floor the store has not seen yet, which it cannot hold
            // against the call, is applied here (`record_call` is only booked: it counts
            // whatever the floor).
            let cap = if force {
                u64::MAX
            } else {
                slot.rules.cap(reduced, priority)
            };
            match self.ask_under_floor(position, read.state.window, count, cap) {
                Ok(booked) => asked = booked,
                Err(seen) => {
                    let reason = slot
                        .rules
                        .denies(seen, count, reduced, priority)
                        .unwrap_or(DenyReason::Limit);
                    self.after_call(now, false);
                    return Err(self.denied(slot, count, seen, reason));
                }
            }
        }
        let request = self.admit_request(slot, position, read.state.window, count, reduced, ask);
        let answer = self.admit_twice(&request);
        match &answer {
            Err(error) if error.maybe_applied() => {}
            _ => self.answered(request.seq),
        }
        let result = match answer {
            Ok(AdmitReply::Admitted { total, .. }) => {
                let learned =
                    self.take_total(position, read.state.window, total, count, asked, now);
                Ok(self.recorded_after(slot, read, learned))
            }
            Ok(AdmitReply::Denied { total }) => {
                let learned = self.take_total(position, read.state.window, total, 0, asked, now);
                let unsynced = self.unsynced(position);
                let reason = slot
                    .rules
                    .denies(total.saturating_add(unsynced), count, reduced, priority)
                    .unwrap_or(DenyReason::Limit);
                Err(self.denied(slot, count, learned.state.used, reason))
            }
            Err(error) if force && error.maybe_applied() => {
                // Maybe applied, maybe not: the same request goes again with the next sync,
                // and the store applies it once. Counted in this tracker's view meanwhile.
                let recorded = self.hold_admit(position, request, count, asked, now);
                self.after_call(now, false);
                return Ok(self.recorded_after(slot, read, recorded));
            }
            Err(_) if force => {
                // Not applied: counted here, synced later as a delta (exactly once).
                self.release_asked(position, asked);
                return self.exact_unavailable(position, read, count, true, now);
            }
            Err(error) => {
                if error.maybe_applied() {
                    // The caller is told it was refused; if the store applied it, the next
                    // sync learns it and gives the calls back. Booked until then.
                    let held = HeldAdmit {
                        request,
                        counted: false,
                    };
                    let mut guard = self.services[position].lock(self.persistence.is_some());
                    guard.sync.admits.push(held);
                } else {
                    self.release_asked(position, asked);
                }
                Err(self.denied(slot, count, read.state.used, DenyReason::StoreUnavailable))
            }
        };
        self.after_call(now, false);
        result
    }

    /// Books `count` calls about to be asked of the store (until their answer is taken in, a
    /// reply does not acknowledge a floor: the store may add them before it applies the
    /// floor, which would absorb them). And while a floor of `window` has not reached the store
    /// (a raise not synced yet), the store's admission cannot apply it, so it is applied here
    /// first: the calls are refused (`Err` with the floor seen, nothing booked) if the floor
    /// plus the calls asked of the store meanwhile plus `count` would pass `cap`. Returns the
    /// calls booked. One lock acquisition, so two threads cannot both take the last calls
    /// under the floor.
    fn ask_under_floor(
        &self,
        position: usize,
        window: Window,
        count: u64,
        cap: u64,
    ) -> Result<u64, u64> {
        let mut guard = self.services[position].lock(self.persistence.is_some());
        if let Some(seen) = guard.sync.floor_seen(window) {
            if seen.saturating_add(count.max(1)) > cap {
                return Err(seen);
            }
        }
        guard.sync.floor_asked = guard.sync.floor_asked.saturating_add(count);
        Ok(count)
    }

    /// Calls booked by [`ask_under_floor`](Self::ask_under_floor) whose answer came (or
    /// failed).
    fn release_asked(&self, position: usize, asked: u64) {
        if asked > 0 {
            let mut guard = self.services[position].lock(self.persistence.is_some());
            guard.sync.floor_asked = guard.sync.floor_asked.saturating_sub(asked);
        }
    }

    /// An `Exact` call while the store backs off: `try_record` denies, `record_call` counts
    /// here and syncs later (as a delta, exactly once).
    fn exact_unavailable(
        &self,
        position: usize,
        read: StepResult,
        count: u64,
        force: bool,
        now: u64,
    ) -> Result<Recorded<'_>, QuotaError> {
        let slot = &self.services[position];
        if !force {
            return Err(self.denied(slot, count, read.state.used, DenyReason::StoreUnavailable));
        }
        let recorded = self.step_at(position, now, Request::Record(count), true);
        self.after_call(now, false);
        match recorded.step.refused {
            None => Ok(self.recorded_after(slot, read, recorded)),
            Some(_) => Err(slot.invalid_count(count, "the counter would overflow")),
        }
    }

    /// The admission request for `count` calls: the step's rule (normal or priority), less
    /// what this tracker counted and has not synced yet (the store does not know those calls).
    fn admit_request(
        &self,
        slot: &ServiceSlot,
        position: usize,
        window: Window,
        count: u64,
        reduced: bool,
        ask: Ask,
    ) -> AdmitRequest {
        let force = ask == Ask::Force;
        let (below, cap) = slot.rules.shared_rule(reduced, ask == Ask::Priority);
        let unsynced = self.unsynced(position);
        let (seq, done_below) = self.issue();
        AdmitRequest {
            instance: self.instance(),
            seq,
            done_below,
            window: slot.window_key(window),
            count,
            below: below.saturating_sub(unsynced),
            cap: cap.saturating_sub(unsynced),
            force,
        }
    }

    /// Asks the store, and once more with the same request if the answer was lost. A failure
    /// starts the back-off (no round trip per call to a store that is down). If the first try
    /// may have been applied, so may the request, whatever the second try says.
    fn admit_twice(&self, request: &AdmitRequest) -> Result<AdmitReply, StoreError> {
        let answer = match self.store_call(|store| store.admit(request)) {
            Err(lost) if lost.maybe_applied() => {
                match self.store_call(|store| store.admit(request)) {
                    Err(error) if !error.maybe_applied() => Err(lost),
                    other => other,
                }
            }
            other => other,
        };
        if answer.is_err() {
            self.store_failed();
        }
        answer
    }

    /// A shared-admission call failed: back off as after a failed sync (the next sync, due
    /// after the back-off, tells when the store is back).
    fn store_failed(&self) {
        if let Some(persistence) = &self.persistence {
            persistence.back_off(self.now());
        }
    }

    /// Keeps an admission whose answer was lost for the next sync, and counts it in the view.
    fn hold_admit(
        &self,
        position: usize,
        request: AdmitRequest,
        count: u64,
        asked: u64,
        now: u64,
    ) -> StepResult {
        let slot = &self.services[position];
        let (step, state, reset, recorded) = {
            let mut guard = slot.lock(self.persistence.is_some());
            guard.sync.floor_asked = guard.sync.floor_asked.saturating_sub(asked);
            let used = guard.service.used.saturating_add(count);
            let step = slot.rules.observe(&mut guard.service, used, now);
            guard.service.total = guard.service.total.saturating_add(count);
            let window = guard.service.window;
            guard.sync.after_raise(window, count);
            guard.sync.admits.push(HeldAdmit {
                request,
                counted: true,
            });
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

    /// Calls this tracker counted in the current window that the store has not acknowledged
    /// (unsynced deltas, and admissions whose answer was lost).
    fn unsynced(&self, position: usize) -> u64 {
        let guard = self.services[position].lock(self.persistence.is_some());
        let window = guard.service.window.start_ms;
        let held: u64 = guard
            .sync
            .admits
            .iter()
            .filter(|a| a.counted && a.request.window.start_ms == window)
            .map(|a| a.request.count)
            .sum();
        guard.sync.unacked.saturating_add(held)
    }

    fn instance(&self) -> crate::InstanceId {
        self.persistence
            .as_ref()
            .map_or(crate::InstanceId::from_u128(0), |p| p.instance)
    }

    /// Whether the store failed recently and its back-off has not passed.
    fn backing_off(&self, now: u64) -> bool {
        self.persistence
            .as_ref()
            .is_some_and(|p| p.backing_off(now))
    }

    /// `can_call` on an `Exact` service: the store's rule on the shared count (adds nothing).
    pub(super) fn exact_can_call(&self, position: usize) -> bool {
        let slot = &self.services[position];
        let now = self.now();
        let read = self.step_at(position, now, Request::Read, true);
        if self.backing_off(now) {
            return false;
        }
        let reduced = self.is_reduced_rate();
        let floor = slot
            .lock(self.persistence.is_some())
            .sync
            .floor_seen(read.state.window);
        if floor.is_some_and(|seen| slot.rules.denies(seen, 1, reduced, false).is_some()) {
            return false;
        }
        let request =
            self.admit_request(slot, position, read.state.window, 0, reduced, Ask::Normal);
        // Asks for 0 calls: applied or not, it changes no total, so it is never resent.
        let answer = self.admit_twice(&request);
        self.answered(request.seq);
        match answer {
            Ok(AdmitReply::Admitted { total, .. }) => {
                self.take_total(position, read.state.window, total, 0, 0, now);
                true
            }
            Ok(AdmitReply::Denied { total }) => {
                self.take_total(position, read.state.window, total, 0, 0, now);
                false
            }
            Err(_) => false,
        }
    }

    /// `record_call`, `try_record` or `try_record_priority` on a `Leased` service.
    ///
    /// Blocks are leased under the normal ceiling only, so a block never holds calls of the
    /// reserve (nor past the Critical threshold) for normal calls to spend. A priority call
    /// spends the block in hand like any call; what the block does not cover it asks of the
    /// store as one `Exact` admission under the priority rule (nothing is left over).
    pub(super) fn leased_update(
        &self,
        position: usize,
        count: u64,
        ask: Ask,
        block: u64,
    ) -> Result<Recorded<'_>, QuotaError> {
        let slot = &self.services[position];
        let force = ask == Ask::Force;
        let now = self.now();
        if let Some(spent) = self.spend_lease(position, now, count) {
            return Ok(spent);
        }
        // Not enough in hand: ask for a block (or as many as this call needs), unless the
        // headroom below the ceiling seen cannot cover the call (the shared total only falls
        // by other instances giving blocks back, which this instance learns at the next
        // window: it may under-admit until then, never over-admit).
        let reduced = self.is_reduced_rate();
        let read = self.step_at(position, now, Request::Read, true);
        let in_hand = self.lease_left(position, read.state.window);
        let asked = block.max(count.saturating_sub(in_hand));
        let (_, ceiling) = slot.rules.shared_rule(reduced, false);
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
        if force {
            let recorded = self.step_at(position, now, Request::Record(count), true);
            self.after_call(now, false);
            return match recorded.step.refused {
                None => Ok(self.recorded_after(slot, read, recorded)),
                Some(_) => Err(slot.invalid_count(count, "the counter would overflow")),
            };
        }
        if ask == Ask::Priority && granted.is_ok() {
            return self.exact_update(position, count, Ask::Priority);
        }
        let state = self.step_at(position, now, Request::Read, true).state;
        let reason = match granted {
            Err(_) => DenyReason::StoreUnavailable,
            // Refused by the view, or else by the shared total at the ceiling.
            Ok(_) => slot
                .rules
                .denies(state.used, count, reduced, false)
                .or_else(|| slot.rules.denies(ceiling, count, reduced, false))
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
        if self.backing_off(now) {
            return false;
        }
        let reduced = self.is_reduced_rate();
        matches!(self.take_lease(position, window, block, reduced, now), Ok(granted) if granted > 0)
    }

    fn lease_left(&self, position: usize, window: Window) -> u64 {
        let guard = self.services[position].lock(self.persistence.is_some());
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
            let mut guard = slot.lock(self.persistence.is_some());
            let old_window = guard.service.window;
            let step = slot.rules.step(&mut guard.service, now, Request::Read);
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
                guard.sync.give_backs.extend(back);
            }
            let (reset, recorded) = self.queue_transitions(slot, &step);
            let covered =
                guard.lease.window == Some(guard.service.window) && guard.lease.left >= count;
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
        let state = state?;
        self.after_call(now, false);
        Some(Recorded {
            usage: slot.usage(&state),
            reset,
            recorded,
        })
    }

    /// Asks the store for `asked` calls of `window`; the grant joins the block in hand. A lease
    /// whose answer is lost is left to the next sync (see [`LeaseState::unanswered`]).
    fn take_lease(
        &self,
        position: usize,
        window: Window,
        asked: u64,
        reduced: bool,
        now: u64,
    ) -> Result<u64, StoreError> {
        let slot = &self.services[position];
        let (_, ceiling) = slot.rules.shared_rule(reduced, false);
        let asked = {
            let mut guard = slot.lock(self.persistence.is_some());
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
            asked
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
        };
        let reply = match self.store_call(|store| store.lease(&request)) {
            Ok(reply) => {
                self.answered(request.seq);
                reply
            }
            Err(error) => {
                let mut guard = slot.lock(self.persistence.is_some());
                if error.maybe_applied() {
                    // Maybe granted: booked, and asked again by the next sync until answered.
                    guard.lease.unanswered.push(request);
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
        {
            let mut guard = slot.lock(self.persistence.is_some());
            guard.sync.floor_asked = guard.sync.floor_asked.saturating_sub(booked);
            let current = guard.service.window;
            if current.start_ms == requested_window {
                if guard.lease.window.is_some_and(|w| w != current) {
                    // A block of an ended window: back to that window, never dropped.
                    let (back, _) = guard.give_lease_back(slot, self, now);
                    guard.sync.give_backs.extend(back);
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
                // The window moved while asking: that block is for a window that ended.
                let back =
                    self.give_back_of(request.window.clone(), reply.granted, reply.raise_count);
                guard.sync.give_backs.push(back);
            }
        }
        if requested_window == window.start_ms {
            self.take_total(position, window, reply.total, 0, 0, now);
        }
        Ok(reply.granted)
    }

    /// Takes in a total the store answered for `window` (plus `count` calls this instance just
    /// had counted there): `used` rises to it and what this instance has not synced yet. The
    /// `asked` calls booked by [`ask_under_floor`](Self::ask_under_floor) are released under
    /// the same lock that adds the admitted ones to the floor.
    fn take_total(
        &self,
        position: usize,
        window: Window,
        total: u64,
        count: u64,
        asked: u64,
        now: u64,
    ) -> StepResult {
        let slot = &self.services[position];
        let (step, state, reset, recorded) = {
            let mut guard = slot.lock(self.persistence.is_some());
            guard.sync.floor_asked = guard.sync.floor_asked.saturating_sub(asked);
            let mut step = Step::default();
            if guard.service.window == window {
                let mut view = total.saturating_add(guard.sync.unacked);
                // Admitted after a raise not synced yet: on top of the floor, not under it.
                if let Some(floor) = guard.sync.after_raise(window, count) {
                    view = view.max(floor);
                }
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
        slot.denied(count, used, reason)
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
