//! `Exact` admission: every decision is one store call (an admission asked twice if its
//! answer was lost, then held and resent by the next sync).

use super::Answered;
use crate::error::{DenyReason, QuotaError};
use crate::persistence::HeldAdmit;
use crate::rules::{Ask, Request};
use crate::store::{AdmitReply, AdmitRequest, StoreError};
use crate::tracker::{QuotaTracker, ServiceSlot, StepResult};
use crate::usage::Recorded;
use crate::window::Window;

impl QuotaTracker {
    /// `record_call`, `try_record` or `try_record_priority` on an `Exact` service (and a
    /// priority call on a `Leased` one that its block does not cover).
    pub(in crate::tracker) fn exact_update(
        &self,
        position: usize,
        call: Request,
    ) -> Result<Recorded<'_>, QuotaError> {
        let slot = self.slot(position);
        let (count, force) = (call.count, call.ask == Ask::Record);
        let now = self.now();
        let read = self.step_at(position, now, Request::READ, true);
        if self.backing_off(now) {
            // The store failed a moment ago: no round trip per call while it backs off.
            return self.exact_unavailable(position, read, count, force, now);
        }
        let call = call.with_reduced_rate(self.is_reduced_rate());
        let (asked, backs_sent);
        {
            // Booked while asked; and a floor the store has not seen yet, which it cannot hold
            // against the call, is applied here (`record_call` is only booked: it counts
            // whatever the floor).
            let cap = if force {
                u64::MAX
            } else {
                slot.settings().rules.cap(call)
            };
            match self.ask_under_floor(position, read.state.window, count, cap) {
                Ok(booking) => (asked, backs_sent) = booking,
                Err(seen) => {
                    let reason = slot
                        .settings()
                        .rules
                        .denies(seen, call)
                        .unwrap_or(DenyReason::Limit);
                    self.after_call(now, false);
                    return Err(self.denied(slot, count, seen, reason));
                }
            }
        }
        let request = self.admit_request(slot, position, read.state.window, call);
        let answer = self.admit_twice(&request);
        match &answer {
            Err(error) if error.maybe_applied() => {}
            _ => self.answered(request.seq),
        }
        let result = match answer {
            Ok(AdmitReply::Admitted { total, .. }) => {
                let answer = Answered { total, backs_sent };
                let learned =
                    self.take_total(position, read.state.window, answer, count, asked, now);
                Ok(self.recorded_after(slot, read, learned))
            }
            Ok(AdmitReply::Denied { total, .. }) => {
                let answer = Answered { total, backs_sent };
                let learned = self.take_total(position, read.state.window, answer, 0, asked, now);
                let unsynced = self.unsynced(position);
                let reason = slot
                    .settings()
                    .rules
                    .denies(total.saturating_add(unsynced), call)
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
                    let mut guard = self.slot(position).lock(self.persistence.is_some());
                    guard.sync.queued.admits.push(held);
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
    pub(in crate::tracker) fn ask_under_floor(
        &self,
        position: usize,
        window: Window,
        count: u64,
        cap: u64,
    ) -> Result<(u64, u64), u64> {
        let mut guard = self.slot(position).lock(self.persistence.is_some());
        if let Some(seen) = guard.sync.floor_seen(window) {
            if seen.saturating_add(count.max(1)) > cap {
                return Err(seen);
            }
        }
        guard.sync.floor_asked = guard.sync.floor_asked.saturating_add(count);
        Ok((count, guard.sync.backs_sent))
    }

    /// Calls booked by [`ask_under_floor`](Self::ask_under_floor) whose answer came (or
    /// failed).
    pub(in crate::tracker) fn release_asked(&self, position: usize, asked: u64) {
        if asked > 0 {
            let mut guard = self.slot(position).lock(self.persistence.is_some());
            guard.sync.floor_asked = guard.sync.floor_asked.saturating_sub(asked);
        }
    }

    /// An `Exact` call while the store backs off: `try_record` denies, `record_call` counts
    /// here and syncs later (as a delta, exactly once).
    pub(in crate::tracker) fn exact_unavailable(
        &self,
        position: usize,
        read: StepResult,
        count: u64,
        force: bool,
        now: u64,
    ) -> Result<Recorded<'_>, QuotaError> {
        let slot = self.slot(position);
        if !force {
            return Err(self.denied(slot, count, read.state.used, DenyReason::StoreUnavailable));
        }
        let recorded = self.step_at(position, now, Request::record(count), true);
        self.after_call(now, false);
        match recorded.step.refused {
            None => Ok(self.recorded_after(slot, read, recorded)),
            Some(refusal) => Err(slot.refused(refusal, count)),
        }
    }

    /// The admission request for `call`: the step's rule (normal or priority), less what
    /// this tracker counted and has not synced yet (the store does not know those calls).
    pub(in crate::tracker) fn admit_request(
        &self,
        slot: &ServiceSlot,
        position: usize,
        window: Window,
        call: Request,
    ) -> AdmitRequest {
        let force = call.ask == Ask::Record;
        let (below, cap) = slot.settings().rules.shared_rule(call);
        let unsynced = self.unsynced(position);
        let (seq, done_below) = self.issue();
        AdmitRequest {
            instance: self.instance(),
            seq,
            done_below,
            window: slot.window_key(window),
            count: call.count,
            below: below.saturating_sub(unsynced),
            cap: cap.saturating_sub(unsynced),
            force,
            also: Vec::new(),
        }
    }

    /// Asks the store, and once more with the same request if the answer was lost. A failure
    /// starts the back-off (no round trip per call to a store that is down). If the first try
    /// may have been applied, so may the request, whatever the second try says.
    pub(in crate::tracker) fn admit_twice(
        &self,
        request: &AdmitRequest,
    ) -> Result<AdmitReply, StoreError> {
        let ask = || self.store_call(|store| store.admit(request)?.answering(request));
        let answer = match ask() {
            Err(lost) if lost.maybe_applied() => match ask() {
                Err(error) if !error.maybe_applied() => Err(lost),
                other => other,
            },
            other => other,
        };
        if answer.is_err() {
            self.store_failed();
        }
        answer
    }

    /// Keeps an admission whose answer was lost for the next sync, and counts it in the view.
    pub(in crate::tracker) fn hold_admit(
        &self,
        position: usize,
        request: AdmitRequest,
        count: u64,
        asked: u64,
        now: u64,
    ) -> StepResult {
        self.take_in(position, asked, |slot, state| {
            let used = state.service.used.saturating_add(count);
            let step = slot.settings().rules.observe(&mut state.service, used, now);
            state.service.total = state.service.total.saturating_add(count);
            let window = state.service.window;
            state.sync.after_raise(window, count);
            state.sync.queued.admits.push(HeldAdmit {
                request,
                counted: true,
            });
            step
        })
    }

    /// `can_call` on an `Exact` service: the store's rule on the shared count (adds nothing).
    pub(in crate::tracker) fn exact_can_call(&self, position: usize) -> bool {
        let slot = self.slot(position);
        let now = self.now();
        let read = self.step_at(position, now, Request::READ, true);
        if self.backing_off(now) {
            return false;
        }
        // One call asked about (a count of 0), none counted.
        let call = Request::normal(0, self.is_reduced_rate());
        let (floor, backs_sent) = {
            let guard = slot.lock(self.persistence.is_some());
            (
                guard.sync.floor_seen(read.state.window),
                guard.sync.backs_sent,
            )
        };
        if floor.is_some_and(|seen| slot.settings().rules.denies(seen, call).is_some()) {
            return false;
        }
        let request = self.admit_request(slot, position, read.state.window, call);
        // Asks for 0 calls: applied or not, it changes no total, so it is never resent.
        let answer = self.admit_twice(&request);
        self.answered(request.seq);
        match answer {
            Ok(AdmitReply::Admitted { total, .. }) => {
                let answer = Answered { total, backs_sent };
                self.take_total(position, read.state.window, answer, 0, 0, now);
                true
            }
            Ok(AdmitReply::Denied { total, .. }) => {
                let answer = Answered { total, backs_sent };
                self.take_total(position, read.state.window, answer, 0, 0, now);
                false
            }
            Err(_) => false,
        }
    }
}
