//! `Exact` admission of a service of several limits (Tiingo: 50 an hour *and* 1,000 a day): one
//! store call asks every limit's window at once ([`AdmitRequest::also`]); the store counts the
//! calls in all of them or in none. Each limit keeps its own ledger (floors, calls asked, unsynced
//! calls), as for `Local` admission; the answer is taken into every limit under one acquisition
//! of the service's lock.

use super::{held_in, release_asked};
use crate::config::Admission;
use crate::error::{DenyReason, QuotaError};
use crate::persistence::HeldAdmit;
use crate::rules::{Ask, Request};
use crate::store::{AdmitReply, AdmitRequest, AdmitWindow, WindowKey};
use crate::tracker::{QuotaTracker, Settings};
use crate::usage::{Recorded, Transition};

/// An admission about to be asked of the store, built under the service's lock.
struct Asking<'t> {
    /// The settings it was built under (a reconfigure may change the limits meanwhile).
    settings: &'t Settings,
    request: AdmitRequest,
    /// Each limit's window when asked (the request's window, then each of `also`).
    keys: Vec<WindowKey>,
    /// Each limit's calls the store does not know yet (unsynced, held), when asked.
    unsynced: Vec<u64>,
    /// The reset the read before the call performed.
    reset: Option<Transition>,
}

/// What taking an answer in did: the result, and each limit's `used` after.
struct TakenIn<'t> {
    recorded: Recorded<'t>,
    used: Vec<u64>,
}

impl QuotaTracker {
    /// `record_call`, `try_record` or `try_record_priority` on an `Exact` service of several
    /// limits.
    pub(in crate::tracker) fn exact_limits_update(
        &self,
        position: usize,
        call: Request,
    ) -> Result<Recorded<'_>, QuotaError> {
        let slot = self.slot(position);
        let (count, force) = (call.count, call.ask == Ask::Record);
        let now = self.now();
        if self.backing_off(now) {
            // The store failed a moment ago: no round trip per call while it backs off.
            return self.exact_limits_unavailable(position, call, 0);
        }
        let rules_call = call.with_reduced_rate(self.is_reduced_rate());
        let Some(asking) = self.ask_limits(position, rules_call, now)? else {
            // Not an `Exact` service of several limits any more (a reconfigure landed).
            return self.update(position, call);
        };
        let answer = self.admit_twice(&asking.request);
        let seq = asking.request.seq;
        match &answer {
            Err(error) if error.maybe_applied() && count > 0 => {}
            _ => self.answered(seq),
        }
        let settings = asking.settings;
        let result = match answer {
            Ok(AdmitReply::Admitted { total, also, .. }) => {
                let totals: Vec<u64> = std::iter::once(total)
                    .chain(also.iter().map(|w| w.total))
                    .collect();
                Ok(self
                    .take_limit_totals(position, &asking, &totals, count, now)
                    .recorded)
            }
            Ok(AdmitReply::Denied { total, also }) => {
                let totals: Vec<u64> = std::iter::once(total)
                    .chain(also.iter().map(|w| w.total))
                    .collect();
                let taken = self.take_limit_totals(position, &asking, &totals, 0, now);
                // The first limit whose rule refuses the shared count (with what the store does
                // not know of this instance's calls).
                let refusal = totals.iter().enumerate().find_map(|(at, total)| {
                    let seen = total.saturating_add(*asking.unsynced.get(at)?);
                    let reason = settings.limit(at).denies(seen, rules_call)?;
                    Some((at, reason))
                });
                let (at, reason) = refusal.unwrap_or((0, DenyReason::Limit));
                let used = taken.used.get(at).copied().unwrap_or_default();
                Err(slot.denied(count, used, settings.limit(at).limit, reason))
            }
            Err(error) if force && error.maybe_applied() => {
                // Maybe applied, maybe not: the same request goes again with the next sync,
                // and the store applies it once. Counted in this tracker's view meanwhile.
                let recorded = self.hold_limits_admit(position, asking, count, now);
                self.after_call(now, false);
                return Ok(recorded);
            }
            Err(_) if force => {
                // Not applied: counted here, synced later as deltas (exactly once).
                return self.exact_limits_unavailable(position, call, count);
            }
            Err(error) => {
                let held = error.maybe_applied() && count > 0;
                let used = {
                    let mut guard = slot.lock(true);
                    if held {
                        // The caller is told it was refused; if the store applied it, the next
                        // sync learns it and gives the calls back. Booked until then.
                        guard.sync.queued.admits.push(HeldAdmit {
                            request: asking.request,
                            counted: false,
                        });
                    } else {
                        release_asked(&mut guard, count);
                    }
                    guard.service.used
                };
                Err(slot.denied(
                    count,
                    used,
                    settings.rules.limit,
                    DenyReason::StoreUnavailable,
                ))
            }
        };
        self.after_call(now, false);
        result
    }

    /// `can_call` on an `Exact` service of several limits: the store's rule on every limit's
    /// shared count (adds nothing).
    pub(in crate::tracker) fn exact_limits_can_call(&self, position: usize) -> bool {
        let call = Request::normal(0, self.is_reduced_rate());
        self.exact_limits_update(position, call).is_ok()
    }

    /// Rolls every limit over, applies the floors the store has not seen yet (it cannot hold
    /// them against the call: a call past one is refused here), books the calls asked on every
    /// limit's ledger and builds the request, under one acquisition of the service's lock.
    /// `None`: the service is not a shared one of several limits (any more).
    fn ask_limits(
        &self,
        position: usize,
        call: Request,
        now: u64,
    ) -> Result<Option<Asking<'_>>, QuotaError> {
        let slot = self.slot(position);
        let mut guard = slot.lock(true);
        let settings = slot.settings();
        // `Exact`, or `Leased` asking for a priority call its block does not cover.
        if settings.removed
            || settings.more.is_empty()
            || settings.config.admission == Admission::Local
        {
            return Ok(None);
        }
        let done = self.step_limits(slot, &mut guard, settings, now, Request::READ);
        let limits = guard.limit_count();
        // `record_call` is only booked: it counts whatever the floors.
        let mut past_floor = None;
        for at in (0..limits).filter(|_| call.ask != Ask::Record) {
            let rules = settings.limit(at);
            let window = guard.count(at).window;
            let (_, ledger) = guard.limit_mut(at);
            if let Some(seen) = ledger.floor_seen(window) {
                if seen.saturating_add(call.count.max(1)) > rules.cap(call) {
                    let reason = rules.denies(seen, call).unwrap_or(DenyReason::Limit);
                    past_floor = Some((at, seen, reason));
                    break;
                }
            }
        }
        let asking = match past_floor {
            Some(refused) => Err(refused),
            None => {
                let mut keys = Vec::with_capacity(limits);
                let mut unsynced = Vec::with_capacity(limits);
                for at in 0..limits {
                    let window = guard.count(at).window;
                    let key = slot.limit_window_key(&settings.limit(at).window, window);
                    let held = held_in(&guard, &key);
                    let (_, ledger) = guard.limit_mut(at);
                    ledger.floor_asked = ledger.floor_asked.saturating_add(call.count);
                    unsynced.push(ledger.unacked.saturating_add(held));
                    keys.push(key);
                }
                Ok((keys, unsynced))
            }
        };
        drop(guard);
        self.after_limits_step(slot, &done, now);
        // The refusal is built with no lock held (it reports to a metrics recorder, which may
        // read the tracker).
        let (keys, unsynced) = asking.map_err(|(at, seen, reason)| {
            slot.denied(call.count, seen, settings.limit(at).limit, reason)
        })?;
        // Each limit's rule (normal or priority), less what this tracker counted and has not
        // synced yet (the store does not know those calls).
        let rule = |at: usize| {
            let (below, cap) = settings.limit(at).shared_rule(call);
            (
                below.saturating_sub(unsynced[at]),
                cap.saturating_sub(unsynced[at]),
            )
        };
        let (below, cap) = rule(0);
        let (seq, done_below) = self.issue();
        let request = AdmitRequest {
            instance: self.instance(),
            seq,
            done_below,
            window: keys[0].clone(),
            count: call.count,
            below,
            cap,
            force: call.ask == Ask::Record,
            also: (1..keys.len())
                .map(|at| {
                    let (below, cap) = rule(at);
                    AdmitWindow {
                        window: keys[at].clone(),
                        below,
                        cap,
                    }
                })
                .collect(),
        };
        Ok(Some(Asking {
            settings,
            request,
            keys,
            unsynced,
            reset: done.reported().0,
        }))
    }

    /// Takes the store's totals of the asked windows (plus `count` calls this instance just had
    /// counted in each) into every limit still counting in its window, under one acquisition of
    /// the service's lock, and releases the calls booked when asking.
    fn take_limit_totals(
        &self,
        position: usize,
        asking: &Asking<'_>,
        totals: &[u64],
        count: u64,
        now: u64,
    ) -> TakenIn<'_> {
        let slot = self.slot(position);
        let asked = asking.request.count;
        let (usage, used, transitions) = {
            let mut guard = slot.lock(true);
            let settings = slot.settings();
            let mut transitions = Vec::new();
            for at in 0..guard.limit_count() {
                let rules = settings.limit(at);
                let (state, ledger) = guard.limit_mut(at);
                ledger.floor_asked = ledger.floor_asked.saturating_sub(asked);
                // The answer for this limit's window as it is now (not one the clock or a
                // reconfigure moved on from).
                let key = slot.limit_window_key(&rules.window, state.window);
                let Some(total) = asking
                    .keys
                    .iter()
                    .position(|asked| *asked == key)
                    .and_then(|i| totals.get(i))
                else {
                    continue;
                };
                let mut view = total.saturating_add(ledger.unacked);
                // Admitted after a raise not synced yet: on top of the floor, not under it.
                if let Some(floor) = ledger.after_raise(state.window, count) {
                    view = view.max(floor);
                }
                let step = rules.observe(state, view, now);
                state.total = state.total.saturating_add(count);
                transitions.extend(step.recorded.map(|change| slot.transition(change)));
            }
            let epoch = self.observers.epoch();
            for transition in &transitions {
                slot.outbox.push(transition.clone(), epoch);
            }
            let used = (0..guard.limit_count())
                .map(|at| guard.count(at).used)
                .collect();
            (slot.usage_locked(settings, &guard), used, transitions)
        };
        self.deliver(position, &transitions, now);
        TakenIn {
            recorded: Recorded {
                usage,
                reset: asking.reset.clone(),
                recorded: transitions.into_iter().max_by_key(|t| t.to),
                shadow_denied: None,
            },
            used,
        }
    }

    /// Keeps an admission whose answer was lost for the next sync, and counts it in every
    /// limit's view.
    fn hold_limits_admit(
        &self,
        position: usize,
        asking: Asking<'_>,
        count: u64,
        now: u64,
    ) -> Recorded<'_> {
        let slot = self.slot(position);
        let (usage, transitions) = {
            let mut guard = slot.lock(true);
            let settings = slot.settings();
            let mut transitions = Vec::new();
            for at in 0..guard.limit_count() {
                let rules = settings.limit(at);
                let (state, ledger) = guard.limit_mut(at);
                ledger.floor_asked = ledger.floor_asked.saturating_sub(count);
                let key = slot.limit_window_key(&rules.window, state.window);
                if !asking.keys.contains(&key) {
                    continue;
                }
                let used = state.used.saturating_add(count);
                let step = rules.observe(state, used, now);
                state.total = state.total.saturating_add(count);
                ledger.after_raise(state.window, count);
                transitions.extend(step.recorded.map(|change| slot.transition(change)));
            }
            guard.sync.queued.admits.push(HeldAdmit {
                request: asking.request,
                counted: true,
            });
            let epoch = self.observers.epoch();
            for transition in &transitions {
                slot.outbox.push(transition.clone(), epoch);
            }
            (slot.usage_locked(settings, &guard), transitions)
        };
        self.deliver(position, &transitions, now);
        Recorded {
            usage,
            reset: asking.reset,
            recorded: transitions.into_iter().max_by_key(|t| t.to),
            shadow_denied: None,
        }
    }

    /// An `Exact` call of several limits the store cannot take: `try_record` denies,
    /// `record_call` counts here and syncs later (as deltas, exactly once). `asked`: calls
    /// booked when asking, released first.
    fn exact_limits_unavailable(
        &self,
        position: usize,
        call: Request,
        asked: u64,
    ) -> Result<Recorded<'_>, QuotaError> {
        let slot = self.slot(position);
        let used = {
            let mut guard = slot.lock(true);
            release_asked(&mut guard, asked);
            guard.service.used
        };
        if call.ask != Ask::Record {
            let limit = slot.settings().rules.limit;
            return Err(slot.denied(call.count, used, limit, DenyReason::StoreUnavailable));
        }
        self.limits_step_here(position, call, Admission::Exact)
    }

    /// Delivers queued transitions once the lock is released; a sync soon if one entered
    /// Critical.
    pub(super) fn deliver(&self, position: usize, transitions: &[Transition], now: u64) {
        if transitions.is_empty() {
            return;
        }
        self.pump(&[position]);
        if transitions
            .iter()
            .any(|t| t.from < crate::Level::Critical && t.to >= crate::Level::Critical)
        {
            self.after_call(now, true);
        }
    }
}
