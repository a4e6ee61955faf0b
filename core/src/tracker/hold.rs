//! Holds: calls admitted at an estimate and settled later at what they really cost (an LLM
//! call's tokens, known from its response). Admission is `try_record`'s (`many.rs`); settling
//! takes the difference back, or adds the excess, in the windows the hold was counted in.

use super::many::local;
use super::{QuotaTracker, Service, Settings, SlotState, SHARED};
use crate::error::QuotaError;
use crate::rules::{Refusal, Request, Step};
use crate::store::Delta;
use crate::usage::Recorded;
use crate::window::{Window, WindowSpec};
use std::fmt;
use std::sync::Arc;

/// What a hold counted, and where: its service, its estimate and each limit's window then
/// (by spec: a reconfigure may reorder, add or drop limits before it settles).
#[derive(Debug, Clone)]
pub(crate) struct Held {
    position: usize,
    estimate: u64,
    /// Each limit's spec, the window the hold was counted in, and the raises its ledger had
    /// seen then ([`Ledger::raises`](crate::persistence::Ledger)).
    windows: Vec<(WindowSpec, Window, u64)>,
    /// The lease's forfeits when it was counted (`Leased`: a block forfeited since is not the
    /// one it was spent from).
    forfeits: u64,
    /// Whether the windows are surely those it was counted in. Shared admission counts a call
    /// outside this module's lock: its windows are read before and after, and a window that
    /// moved in between leaves it unsure (nothing is given back then: an over-count only).
    sure: bool,
}

impl Held {
    /// The hold of `estimate` calls just counted in the locked `state`.
    pub(super) fn of(
        position: usize,
        estimate: u64,
        settings: &Settings,
        state: &SlotState,
    ) -> Self {
        let windows = (0..state.limit_count())
            .map(|at| {
                let raises = match at {
                    0 => state.sync.raises,
                    more => state.more[more - 1].sync.raises,
                };
                (
                    settings.limit(at).window.clone(),
                    state.count(at).window,
                    raises,
                )
            })
            .collect();
        Held {
            position,
            estimate,
            windows,
            forfeits: state.lease.forfeits,
            sure: true,
        }
    }

    /// A hold of a service whose admission is in a store (`Exact`, `Leased`), counted by its
    /// shared path between two reads of its windows.
    pub(super) fn shared(
        tracker: &QuotaTracker,
        position: usize,
        request: Request,
    ) -> Result<(Recorded<'_>, Held), QuotaError> {
        let read = |tracker: &QuotaTracker| {
            tracker.read_limits(position, |_, settings, state| {
                Held::of(position, request.count, settings, state)
            })
        };
        let slot = tracker.slot(position);
        if slot.settings().removed {
            return Err(slot.removed());
        }
        let before = read(tracker);
        let recorded = tracker.shared_update(position, request)?;
        let mut held = read(tracker);
        held.sure = before.windows == held.windows && before.forfeits == held.forfeits;
        Ok((recorded, held))
    }
}

/// What settling a hold did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct Settlement {
    /// The calls the hold was admitted for.
    pub estimate: u64,
    /// The calls settled (0 for [`Hold::cancel`]).
    pub actual: u64,
    /// Calls taken off the windows the hold was counted in: `estimate - actual`, or 0 when
    /// the settlement gave nothing back (above the estimate; or forfeited: the hold's windows
    /// are unsure, or a raise lifted the count since, see
    /// [`StoreStats::forfeited_calls`](crate::StoreStats::forfeited_calls)). With a store,
    /// those it holds already are given back through it, which forfeits them if it has a raise
    /// in that window.
    pub given_back: u64,
    /// Calls added past the estimate (`actual - estimate`, or 0), even past the limit (past
    /// the counter's end, what fits).
    pub added: u64,
    /// The service's count after (its binding limit's, as [`usage`](QuotaTracker::usage)
    /// reports it).
    pub used: u64,
}

/// Calls admitted at an estimate, from [`QuotaTracker::hold`]: [`settle`](Self::settle) them
/// at what they cost once that is known, or [`cancel`](Self::cancel) them if the call was never
/// made. Dropping a hold unsettled keeps the estimate counted: a call that may have been made
/// is never under-counted.
#[must_use = "a hold dropped unsettled keeps its estimate counted: settle or cancel it"]
pub struct Hold<'t> {
    tracker: &'t QuotaTracker,
    held: Held,
}

/// A [`Hold`] that owns a reference to its tracker, from [`QuotaTracker::hold_owned`]: it can
/// move into a spawned task or thread.
#[must_use = "a hold dropped unsettled keeps its estimate counted: settle or cancel it"]
pub struct OwnedHold {
    pub(super) tracker: Arc<QuotaTracker>,
    pub(super) held: Held,
}

impl QuotaTracker {
    /// Admits `estimate` calls to `service` as [`try_record`](Self::try_record) does (the same
    /// rules, counted at once) and returns a [`Hold`] to settle them at what they really cost.
    ///
    /// ```
    /// use quota_core::{Period, QuotaTracker, ServiceConfig, TrackerConfig};
    /// let config = TrackerConfig::new([ServiceConfig::new("llm-tokens", 100_000, Period::Day)]);
    /// let tracker = QuotaTracker::new(config)?;
    /// let hold = tracker.hold("llm-tokens", 2_000)?; // counted: 2,000
    /// // ... the response reports 1,234 tokens:
    /// let settled = hold.settle(1_234)?;
    /// assert_eq!(settled.given_back, 766);
    /// assert_eq!(tracker.usage("llm-tokens")?.used, 1_234);
    /// # Ok::<(), quota_core::QuotaError>(())
    /// ```
    ///
    /// Any admission: `Exact` asks the store, `Leased` spends the block in hand, as
    /// `try_record` does.
    ///
    /// Errors: those of `try_record`.
    pub fn hold(&self, service: &str, estimate: u64) -> Result<Hold<'_>, QuotaError> {
        let held = self.hold_at(self.position(service)?, estimate, false, false)?;
        Ok(Hold {
            tracker: self,
            held,
        })
    }

    /// [`hold`](Self::hold) with priority admission (the reserve too, up to the limit).
    pub fn hold_priority(&self, service: &str, estimate: u64) -> Result<Hold<'_>, QuotaError> {
        let held = self.hold_at(self.position(service)?, estimate, true, false)?;
        Ok(Hold {
            tracker: self,
            held,
        })
    }

    /// [`hold`](Self::hold) on a tracker shared by an `Arc`: the hold keeps the tracker alive
    /// and can move into a spawned task.
    pub fn hold_owned(
        self: &Arc<Self>,
        service: &str,
        estimate: u64,
    ) -> Result<OwnedHold, QuotaError> {
        let held = self.hold_at(self.position(service)?, estimate, false, false)?;
        Ok(OwnedHold {
            tracker: Arc::clone(self),
            held,
        })
    }

    /// Holds of several services in one step, all admitted or none: the rules and errors of
    /// [`try_record_many`](Self::try_record_many). Each hold settles on its own.
    pub fn hold_many(&self, calls: &[(&str, u64)]) -> Result<Vec<Hold<'_>>, QuotaError> {
        let positions = self.positions_of(calls)?;
        let (_, held) = self.admit_many(&positions, false)?;
        Ok(held
            .into_iter()
            .map(|held| Hold {
                tracker: self,
                held,
            })
            .collect())
    }

    /// A hold of `estimate` calls of the service at `position`: one step under its lock
    /// (`Local`), or its shared path. `served`: a call `until_ready` queued, in its turn.
    pub(super) fn hold_at(
        &self,
        position: usize,
        estimate: u64,
        priority: bool,
        served: bool,
    ) -> Result<Held, QuotaError> {
        let slot = self.slot(position);
        if estimate == 0 {
            return Err(slot.invalid_count(estimate, "count must be at least 1"));
        }
        let mut request = self.admission(estimate, priority);
        request.served = served;
        if slot.queued_ahead(request) {
            return Err(self.queued_refusal(position, estimate));
        }
        if !local(slot.settings().config.admission) {
            return Held::shared(self, position, request).map(|(_, held)| held);
        }
        let now = self.now();
        let mut guard = slot.lock(self.persistence.is_some());
        let settings = slot.settings();
        if settings.removed {
            drop(guard);
            return Err(slot.removed());
        }
        if !local(settings.config.admission) {
            // Reconfigured to shared admission since the settings were read.
            drop(guard);
            return self.hold_at(position, estimate, priority, served);
        }
        let done = self.step_limits(slot, &mut guard, settings, now, request);
        let held = Held::of(position, estimate, settings, &guard);
        let limit = settings.limit(done.refused_by).limit;
        drop(guard);
        self.after_limits_step(slot, &done, now);
        if let Some(reason) = done.step.shadow {
            slot.shadow_denied(reason);
        }
        match done.step.refused {
            None => Ok(held),
            Some(Refusal::Denied { used, reason }) => {
                Err(slot.denied(estimate, used, limit, reason))
            }
            Some(refusal) => Err(slot.refused(refusal, estimate)),
        }
    }

    /// Settles `held` at `actual` calls, under the service's lock: every limit rolls over
    /// first; then in each window the hold was counted in, the calls under the estimate come
    /// off (the view, and with a store what it was not sent yet; the rest is given back
    /// through it), or the calls past it are added (to that window even if it ended: a store
    /// gets them as that window's).
    pub(crate) fn settle_held(&self, held: &Held, actual: u64) -> Result<Settlement, QuotaError> {
        let slot = self.slot(held.position);
        let booking = self.persistence.is_some();
        let (back, more) = (
            held.estimate.saturating_sub(actual),
            actual.saturating_sub(held.estimate),
        );
        let now = self.now();
        let mut guard = slot.lock(booking);
        let settings = slot.settings();
        if settings.removed {
            // Its ledger was detached with the estimate in it: that stays counted.
            drop(guard);
            return Err(slot.removed());
        }
        let mut done = self.step_limits(slot, &mut guard, settings, now, Request::READ);
        // Calls to give back that stay counted (an over-count only).
        let mut forfeited = 0;
        // Whether the difference came off (or the excess went into) some window.
        let (mut given_back, mut added) = (0, 0);
        for (spec, window, raises) in &held.windows {
            let (window, raises) = (*window, *raises);
            let key = || slot.limit_window_key(spec, window);
            let Some(at) = (0..guard.limit_count()).find(|&at| settings.limit(at).window == *spec)
            else {
                // No limit counts in these windows any more (a reconfigure changed the spec):
                // only a store still holds the window.
                if booking && back > 0 && SHARED {
                    let op = self.give_back_of(key(), back, 0);
                    guard.sync.queued.give_backs.push(op);
                    given_back = back;
                } else if booking && more > 0 {
                    guard.sync.detached.push(Delta {
                        window: key(),
                        calls: more,
                    });
                    added = more;
                }
                continue;
            };
            let rules = settings.limit(at);
            let (count, ledger) = guard.limit_mut(at);
            let current = count.window == window;
            let mut through_store = 0;
            let step = if back > 0 {
                if !held.sure || ledger.raises != raises {
                    // Unsure where it was counted, or a raise lifted the count since (its
                    // floor may hold these calls): forfeited, as lease give-backs are.
                    forfeited = forfeited.max(back);
                    Step::default()
                } else {
                    let mut lowered = back;
                    if booking {
                        through_store = back - ledger.take_back(window, current, back);
                        if !SHARED {
                            // No give-back operation in this build (the JS module): what the
                            // store has stays counted, here too (the next sync would bring
                            // it back anyway).
                            forfeited = forfeited.max(through_store);
                            lowered -= through_store;
                            through_store = 0;
                        }
                        // A floor raised before the hold and not synced yet holds it too.
                        ledger.lower_floor(window, lowered);
                    }
                    given_back = given_back.max(lowered);
                    count.total = count.total.saturating_sub(lowered);
                    match current {
                        true => rules.lower(count, lowered, now),
                        false => Step::default(),
                    }
                }
            } else if more > 0 && current {
                // Past the counter's end nothing more can be counted.
                let fits = more.min(u64::MAX - count.used.max(count.total));
                let old_window = count.window;
                let step = rules.step(count, now, Request::record(fits));
                if step.refused.is_none() {
                    added = added.max(fits);
                    if booking && step.changed {
                        ledger.book(old_window, &step, fits);
                    }
                }
                step
            } else {
                if more > 0 && booking {
                    ledger.book_ended(window, more);
                    added = more;
                }
                Step::default()
            };
            if through_store > 0 {
                // Its raise count then is not known here: 0, so that the store forfeits it if
                // any raise reached the window (a floor may hold these calls), an over-count
                // only.
                let op = self.give_back_of(key(), through_store, 0);
                guard.sync.queued.give_backs.push(op);
            }
            if let Some(change) = step.recorded {
                let transition = slot.transition(change);
                slot.outbox.push(transition.clone(), self.observers.epoch());
                done.entered_critical |= step.entered_critical();
                done.transitions.push(transition);
                done.step.queued = true;
            }
        }
        let used = slot.usage_locked(settings, &guard).used;
        drop(guard);
        if forfeited > 0 {
            if let Some(persistence) = &self.persistence {
                persistence.forfeit(forfeited);
            }
        }
        #[cfg(feature = "metrics")]
        crate::metrics::given_back(&slot.name, given_back);
        if (back > 0 || more > 0) && booking {
            if let Some(persistence) = &self.persistence {
                persistence.sync_soon();
            }
        }
        self.after_limits_step(slot, &done, now);
        if given_back > 0 {
            self.calls_freed(held.position);
        }
        Ok(Settlement {
            estimate: held.estimate,
            actual,
            given_back,
            added,
            used,
        })
    }
}

impl Service<'_> {
    /// [`QuotaTracker::hold`] on this service.
    pub fn hold(&self, estimate: u64) -> Result<Hold<'_>, QuotaError> {
        let tracker = self.tracker();
        let held = tracker.hold_at(self.position(), estimate, false, false)?;
        Ok(Hold { tracker, held })
    }

    /// What a hold of `estimate` calls counted, for a binding that keeps it beside its own
    /// handle on the tracker (the JS module's `Hold`), to settle with
    /// [`QuotaTracker::settle_held`].
    #[cfg(feature = "js")]
    pub(crate) fn held(&self, estimate: u64) -> Result<Held, QuotaError> {
        self.tracker()
            .hold_at(self.position(), estimate, false, false)
    }
}

impl<'t> Hold<'t> {
    /// The service held.
    pub fn service(&self) -> &'t str {
        &self.tracker.slot(self.held.position).name
    }

    /// The calls admitted.
    pub fn estimate(&self) -> u64 {
        self.held.estimate
    }

    /// Settles the hold at `actual` calls, what the call really cost: below the estimate the
    /// difference is given back (the level may go down: a transition, delivered once); above
    /// it the excess is added, even past the limit (the provider has charged it already). A
    /// hold settled after its window ended corrects that window (with a store; without one
    /// the ended window's count is gone, and nothing changes).
    ///
    /// Errors: [`QuotaError::UnknownService`] if a reconfigure removed the service since (the
    /// estimate stays counted).
    pub fn settle(self, actual: u64) -> Result<Settlement, QuotaError> {
        self.tracker.settle_held(&self.held, actual)
    }

    /// Gives the whole estimate back: the call was never made. [`settle`](Self::settle) at 0.
    pub fn cancel(self) -> Result<Settlement, QuotaError> {
        self.tracker.settle_held(&self.held, 0)
    }
}

#[cfg(not(target_arch = "wasm32"))]
impl Held {
    /// The position of the service held.
    pub(super) fn position(&self) -> usize {
        self.position
    }
}

impl OwnedHold {
    /// The service held.
    pub fn service(&self) -> &str {
        &self.tracker.slot(self.held.position).name
    }

    /// The calls admitted.
    pub fn estimate(&self) -> u64 {
        self.held.estimate
    }

    /// [`Hold::settle`].
    pub fn settle(self, actual: u64) -> Result<Settlement, QuotaError> {
        self.tracker.settle_held(&self.held, actual)
    }

    /// [`Hold::cancel`].
    pub fn cancel(self) -> Result<Settlement, QuotaError> {
        self.tracker.settle_held(&self.held, 0)
    }
}

impl fmt::Debug for Hold<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Hold")
            .field("service", &self.service())
            .field("estimate", &self.held.estimate)
            .finish()
    }
}

impl fmt::Debug for OwnedHold {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OwnedHold")
            .field("service", &self.service())
            .field("estimate", &self.held.estimate)
            .finish()
    }
}
