//! The per-service step: roll the window over, check, count, see the level change.
//!
//! [`ServiceRules::step`] is the one place these rules are written. It is pure: it reads no
//! clock, takes no lock and does no I/O; it gets a service's state and a request and leaves
//! the new state and the outcome. The tracker runs it under the service's lock; the racy
//! demonstration (`sim::RacyCounts`) runs the very same step on an unguarded copy, so the two
//! differ only in how the state is held, which is the lesson the demonstration teaches.
//!
//! Clock sanity lives here too, so it holds for every [`Clock`](crate::Clock): a reading a
//! little before the window (up to one period, say an NTP correction, or a thread that read the
//! clock and then waited for the lock) counts in the current window; a reading far before it
//! means the current window came from a bogus reading, so the service goes back to the
//! reading's window and never lowers `used` (see [`ServiceRules::align`]).

use crate::error::DenyReason;
use crate::level::{calls_at_most, Level, Thresholds};
use crate::service::ServiceConfig;
use crate::window::{Period, Window};

/// What a service's lock guards (and what a racy copy holds).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct ServiceState {
    /// Calls counted in `window`.
    pub(crate) used: u64,
    /// Calls counted since the state was created, across all windows.
    pub(crate) total: u64,
    /// The current window.
    pub(crate) window: Window,
    /// The window the first jump (a move other than a roll-over into the next window) left,
    /// with the calls it owns there: if that reading was bogus, a later reading in that window
    /// returns to it (see [`ServiceRules::align`]).
    pub(crate) left: Option<Left>,
}

/// A window a service jumped away from, and the calls to carry back if it returns there.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Left {
    pub(crate) window: Window,
    /// What `used` becomes on return, before adding the current window's count.
    pub(crate) used: u64,
    /// The window's own count when it was left (a shared store holds those already).
    pub(crate) own: u64,
}

impl ServiceState {
    /// A fresh state: nothing counted, in the window of `now_ms`.
    pub(crate) fn new(period: Period, now_ms: u64) -> Self {
        ServiceState {
            used: 0,
            total: 0,
            window: period.window_at(now_ms),
            left: None,
        }
    }
}

/// What a call asks of a service.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Request {
    /// Only roll over if due (reads: `usage`, `can_call`, snapshots).
    Read,
    /// Count `n` calls, always (`record_call`).
    Record(u64),
    /// Count `n` calls only if admitted (`try_record`, `try_record_priority`): see
    /// [`ServiceRules::denies`].
    TryRecord {
        count: u64,
        reduced_rate: bool,
        priority: bool,
    },
}

/// A level change, without the service's name (the caller adds it only when there is one).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Change {
    pub(crate) from: Level,
    pub(crate) to: Level,
    pub(crate) used: u64,
    pub(crate) at_ms: u64,
}

/// Why a request counted nothing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Refusal {
    /// The count would overflow the counter.
    Overflow,
    /// `try_record` was not admitted; `used` is the count it saw.
    Denied { used: u64, reason: DenyReason },
}

/// What one step did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) struct Step {
    /// The level change of the window moving (a reset downwards, or a return to a window a
    /// bogus reading left).
    pub(crate) reset: Option<Change>,
    /// The level change the counting made.
    pub(crate) recorded: Option<Change>,
    /// Set when nothing was counted although a count was asked for.
    pub(crate) refused: Option<Refusal>,
    /// Set when the window moved: how much of the new window's `used` a shared store does not
    /// hold under that window yet (0 for a roll-over; the calls carried by a jump).
    pub(crate) moved: Option<u64>,
    /// The state changed in a way a store should see (counted, or the window moved).
    pub(crate) changed: bool,
}

impl Step {
    /// Whether the counting took the service from below Critical to Critical or beyond (a
    /// forced save, with a store that asks for one).
    pub(crate) fn entered_critical(&self) -> bool {
        self.recorded
            .is_some_and(|c| c.from < Level::Critical && c.to >= Level::Critical)
    }
}

/// One service's fixed rules, computed once from its config.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct ServiceRules {
    pub(crate) limit: u64,
    pub(crate) period: Period,
    pub(crate) thresholds: Thresholds,
    /// `floor(limit x reserve_fraction)`.
    pub(crate) reserve: u64,
    /// Where normal admission stops: `min(critical threshold, limit - reserve)`, in calls.
    pub(crate) normal_cap: u64,
    /// Whether the reserve stops normal admission before the Critical threshold does
    /// (`limit - reserve < critical threshold`): then a refusal below Critical names the
    /// reserve.
    pub(crate) reserve_first: bool,
    /// What reduced-rate mode still allows: `floor(limit x fraction)`.
    pub(crate) reduced_allowance: u64,
    /// Counts below this are `Normal` (the least of the thresholds and the limit).
    pub(crate) normal_below: u64,
}

impl ServiceRules {
    /// The rules of `config`, with `reduced_fraction` of the limit allowed in reduced rate.
    pub(crate) fn new(config: &ServiceConfig, reduced_fraction: f64) -> Self {
        let thresholds = Thresholds::new(
            config.limit,
            config.warn_threshold,
            config.critical_threshold,
        );
        let reserve = calls_at_most(config.limit, config.reserve_fraction);
        let unreserved = config.limit.saturating_sub(reserve);
        ServiceRules {
            limit: config.limit,
            period: config.period,
            thresholds,
            reserve,
            normal_cap: thresholds.critical_at.min(unreserved),
            reserve_first: unreserved < thresholds.critical_at,
            reduced_allowance: calls_at_most(config.limit, reduced_fraction),
            normal_below: thresholds
                .warn_at
                .min(thresholds.critical_at)
                .min(config.limit),
        }
    }

    #[inline]
    pub(crate) fn level(&self, used: u64) -> Level {
        Level::of(used, self.limit, self.thresholds)
    }

    /// Whether one more call is admitted at `used` (`can_call`: normal admission).
    pub(crate) fn allows(&self, used: u64, reduced_rate: bool) -> bool {
        self.denies(used, 1, reduced_rate, false).is_none()
    }

    /// The most calls admission lets the window's count reach: the limit for a priority call,
    /// `min(critical threshold, limit - reserve)` for a normal one, and in reduced rate no more
    /// than the reduced allowance either way.
    #[inline]
    pub(crate) fn cap(&self, reduced_rate: bool, priority: bool) -> u64 {
        let cap = if priority {
            self.limit
        } else {
            self.normal_cap
        };
        if reduced_rate {
            cap.min(self.reduced_allowance)
        } else {
            cap
        }
    }

    /// The admission rule, the one place it is written (the tracker's step, `can_call`, and
    /// shared admission through [`shared_rule`](Self::shared_rule) all apply it): `count`
    /// more calls at `used` are admitted if `used + count` is at most
    /// [`cap`](Self::cap). A count of 0 asks about one call.
    ///
    /// The rule that refuses, if one does, naming first the rules that refuse priority calls
    /// too: [`Limit`](DenyReason::Limit) (past the limit), then
    /// [`ReducedRate`](DenyReason::ReducedRate) (past the reduced allowance); then, for a
    /// normal call only, [`Critical`](DenyReason::Critical) (at the Critical level, or the
    /// call would pass it) or [`Reserve`](DenyReason::Reserve) (the call would take calls of
    /// the reserve, and the reserve comes before the Critical threshold). So `Critical` and
    /// `Reserve` mean: a priority call would be admitted.
    #[inline]
    pub(crate) fn denies(
        &self,
        used: u64,
        count: u64,
        reduced_rate: bool,
        priority: bool,
    ) -> Option<DenyReason> {
        let after = used.saturating_add(count.max(1));
        if after <= self.cap(reduced_rate, priority) {
            return None;
        }
        Some(self.refusing(used, after, reduced_rate))
    }

    /// The reason [`denies`](Self::denies) names for a refused count that brings `used` to
    /// `after`.
    #[cold]
    fn refusing(&self, used: u64, after: u64, reduced_rate: bool) -> DenyReason {
        if after > self.limit {
            DenyReason::Limit
        } else if reduced_rate && after > self.reduced_allowance {
            DenyReason::ReducedRate
        } else if self.reserve_first && used < self.thresholds.critical_at {
            DenyReason::Reserve
        } else {
            DenyReason::Critical
        }
    }

    /// `(below, cap)` for a shared store's admission ([`AdmitRequest`](crate::AdmitRequest)):
    /// admit while the total is below `below` and total + count is at most `cap`. Both are
    /// [`cap`](Self::cap): for a count of at least 1 that is the rule of
    /// [`denies`](Self::denies), and for a count of 0 (`can_call`) it asks about one call. A
    /// lease's ceiling is the normal `cap`: a block never holds calls of the reserve.
    pub(crate) fn shared_rule(&self, reduced_rate: bool, priority: bool) -> (u64, u64) {
        let cap = self.cap(reduced_rate, priority);
        (cap, cap)
    }

    /// Applies `request` at `now_ms` to `state`. On a refusal nothing is counted (a due
    /// roll-over still happens: it would have happened on any call).
    ///
    /// Always inlined: the tracker's hot path keeps the step in registers. What is rare (a
    /// window that moves) is out of line, in [`realign`](Self::realign).
    #[cfg_attr(not(target_arch = "wasm32"), inline(always))]
    pub(crate) fn step(&self, state: &mut ServiceState, now_ms: u64, request: Request) -> Step {
        let mut step = Step::default();
        (step.reset, step.moved) = self.align(state, now_ms);
        step.changed = step.moved.is_some();
        let (count, admit) = match request {
            Request::Read => return step,
            Request::Record(count) => (count, None),
            Request::TryRecord {
                count,
                reduced_rate,
                priority,
            } => (count, Some((reduced_rate, priority))),
        };
        let Some(after) = state.used.checked_add(count) else {
            step.refused = Some(Refusal::Overflow);
            return step;
        };
        if let Some((reduced_rate, priority)) = admit {
            if let Some(reason) = self.denies(state.used, count, reduced_rate, priority) {
                step.refused = Some(Refusal::Denied {
                    used: state.used,
                    reason,
                });
                return step;
            }
        }
        // `used` only grows here, so a count still below every threshold after it was Normal
        // before it too: no level change, and neither level needs computing.
        if after >= self.normal_below {
            step.recorded = self.change(self.level(state.used), after, now_ms);
        }
        state.used = after;
        state.total = state.total.saturating_add(count);
        step.changed = true;
        step
    }

    /// Moves `state` to the window `now_ms` belongs in, if it is not the current one.
    ///
    /// - At or past the window's end, into the next window: a roll-over, `used` from 0.
    /// - Before the window's start by at most one period: stays (a small step back, such as
    ///   an NTP correction or a thread that read the clock and then waited for the lock).
    /// - Anything else is a *jump*, maybe on a bogus reading. The first jump remembers the
    ///   window it left (`left`); the calls counted after it, in whatever windows, are added
    ///   there, so that a reading back in that window returns to it with its count plus the
    ///   calls counted meanwhile: `used` never drops. A jump forward starts at 0 in the new
    ///   window; a jump far back keeps its count.
    ///
    /// Returns the level change, if any, and (when the window moved) the calls of the new
    /// window's `used` that a shared store does not hold under it yet.
    #[cfg_attr(not(target_arch = "wasm32"), inline(always))]
    pub(crate) fn align(
        &self,
        state: &mut ServiceState,
        now_ms: u64,
    ) -> (Option<Change>, Option<u64>) {
        let forward = now_ms >= state.window.reset_at_ms;
        let far_back = now_ms < state.window.start_ms.saturating_sub(self.period.max_ms());
        if !forward && !far_back {
            return (None, None);
        }
        self.realign(state, now_ms, forward)
    }

    /// [`align`](Self::align) when `now_ms` is not in the current window (`forward`: at or
    /// past its end).
    #[cold]
    #[inline(never)]
    fn realign(
        &self,
        state: &mut ServiceState,
        now_ms: u64,
        forward: bool,
    ) -> (Option<Change>, Option<u64>) {
        let window = self.period.window_at(now_ms);
        if window == state.window {
            // Only the last window, past the calendar's range, ends at u64::MAX itself.
            return (None, None);
        }
        let before = self.level(state.used);
        let (used, left, carried) = match state.left {
            // Back (or on) to the window a jump left: its count and everything since.
            Some(left) if left.window == window => {
                let used = left.used.saturating_add(state.used);
                (used, None, used.saturating_sub(left.own))
            }
            // Moving on after a jump: what was counted here belongs to the window left too.
            Some(left) if forward => (
                0,
                Some(Left {
                    used: left.used.saturating_add(state.used),
                    ..left
                }),
                0,
            ),
            // Far back again: the count comes along (so it is not added to `left` as well).
            Some(left) => (state.used, Some(left), state.used),
            // A plain roll-over into the next window.
            None if forward && window.start_ms == state.window.reset_at_ms => (0, None, 0),
            // A first jump forward.
            None if forward => (
                0,
                Some(Left {
                    window: state.window,
                    used: state.used,
                    own: state.used,
                }),
                0,
            ),
            // A first jump far back: keep the count, carried back (not twice) on return.
            None => (
                state.used,
                Some(Left {
                    window: state.window,
                    used: 0,
                    own: state.used,
                }),
                state.used,
            ),
        };
        state.used = used;
        state.window = window;
        state.left = left;
        (self.change(before, used, now_ms), Some(carried))
    }

    /// Takes in a count seen in a shared store (every instance's calls): `used` rises to it,
    /// never falls (a store that lost data does not lower what this tracker knows).
    pub(crate) fn observe(&self, state: &mut ServiceState, used: u64, now_ms: u64) -> Step {
        if used <= state.used {
            return Step::default();
        }
        let before = self.level(state.used);
        state.used = used;
        Step {
            recorded: self.change(before, used, now_ms),
            changed: true,
            ..Step::default()
        }
    }

    /// A count reported from outside (a provider's remaining-calls header, a 429): rolls the
    /// window over if due, then, if the report belongs to the current window, raises `used` to
    /// `at_least` (never lowers it). `resets_at_ms` is when the reporter's count resets: the
    /// report belongs to the current window when `start < resets_at_ms <= reset_at` (`None`:
    /// it is taken to). Returns the step and, if the report belonged to the window, whether
    /// `used` rose.
    pub(crate) fn raise(
        &self,
        state: &mut ServiceState,
        now_ms: u64,
        at_least: u64,
        resets_at_ms: Option<u64>,
    ) -> (Step, Option<bool>) {
        let mut step = Step::default();
        (step.reset, step.moved) = self.align(state, now_ms);
        step.changed = step.moved.is_some();
        let window = state.window;
        let belongs =
            resets_at_ms.is_none_or(|at| window.start_ms < at && at <= window.reset_at_ms);
        if !belongs {
            return (step, None);
        }
        let raised = self.observe(state, at_least, now_ms);
        step.recorded = raised.recorded;
        step.changed |= raised.changed;
        (step, Some(raised.changed))
    }

    /// Takes `by` calls off `used` (leased calls given back unspent, which the view counted).
    pub(crate) fn lower(&self, state: &mut ServiceState, by: u64, now_ms: u64) -> Step {
        if by == 0 {
            return Step::default();
        }
        let before = self.level(state.used);
        state.used = state.used.saturating_sub(by);
        Step {
            recorded: self.change(before, state.used, now_ms),
            changed: true,
            ..Step::default()
        }
    }

    #[inline]
    fn change(&self, before: Level, used: u64, at_ms: u64) -> Option<Change> {
        let to = self.level(used);
        (before != to).then_some(Change {
            from: before,
            to,
            used,
            at_ms,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const DAY: u64 = 86_400_000;
    const T0: u64 = 1_718_000_000_000 / DAY * DAY; // a midnight, UTC

    fn rules(limit: u64) -> ServiceRules {
        ServiceRules::new(&ServiceConfig::new("s", limit, Period::Day), 0.25)
    }

    fn record(rules: &ServiceRules, state: &mut ServiceState, now: u64, n: u64) -> Step {
        rules.step(state, now, Request::Record(n))
    }

    #[test]
    fn try_record_counts_only_what_is_admitted() {
        let rules = rules(10);
        let mut state = ServiceState::new(Period::Day, T0);
        let try_record = |count| Request::TryRecord {
            count,
            reduced_rate: false,
            priority: false,
        };
        assert_eq!(rules.step(&mut state, T0, try_record(7)).refused, None);
        let too_many = rules.step(&mut state, T0, try_record(4)); // 7 + 4 > 10
        assert_eq!(
            too_many.refused,
            Some(Refusal::Denied {
                used: 7,
                reason: DenyReason::Limit
            })
        );
        assert_eq!(rules.step(&mut state, T0, try_record(1)).refused, None);
        let critical = rules.step(&mut state, T0, try_record(1)); // 8 of 10 is Critical
        assert_eq!(
            critical.refused,
            Some(Refusal::Denied {
                used: 8,
                reason: DenyReason::Critical
            })
        );
        let overflow = record(&rules, &mut state, T0, u64::MAX);
        assert_eq!(overflow.refused, Some(Refusal::Overflow));
        assert_eq!((state.used, state.total), (8, 8));
    }

    #[test]
    fn a_small_step_back_keeps_the_later_window() {
        let rules = rules(100);
        let mut state = ServiceState::new(Period::Day, T0 + DAY);
        record(&rules, &mut state, T0 + DAY, 5);
        // One second before the window (an NTP correction): counted in the current window.
        record(&rules, &mut state, T0 + DAY - 1_000, 3);
        assert_eq!((state.used, state.window.start_ms), (8, T0 + DAY));
    }

    #[test]
    fn a_reading_a_year_ahead_never_lowers_the_real_windows_count() {
        let rules = rules(100);
        let mut state = ServiceState::new(Period::Day, T0);
        record(&rules, &mut state, T0 + 10, 30);
        record(&rules, &mut state, T0 + 365 * DAY, 1); // bogus: a year ahead
        assert_eq!(state.used, 1);
        // The clock is right again: back to today's window, 30 + the 1 counted meanwhile.
        let back = record(&rules, &mut state, T0 + 20, 1);
        assert_eq!((state.used, state.window.start_ms), (32, T0));
        assert_eq!(
            back.reset.map(|c| c.to),
            None,
            "1 -> 31 is no level change at 100"
        );
        // Tomorrow is a real new window.
        record(&rules, &mut state, T0 + DAY + 5, 1);
        assert_eq!((state.used, state.window.start_ms), (1, T0 + DAY));
        assert_eq!(state.total, 33);
    }

    #[test]
    fn a_u64_max_reading_does_not_freeze_the_window() {
        let rules = rules(100);
        let mut state = ServiceState::new(Period::Day, T0);
        record(&rules, &mut state, T0, 10);
        record(&rules, &mut state, u64::MAX, 1);
        record(&rules, &mut state, T0 + 1, 1);
        assert_eq!((state.used, state.window.start_ms), (12, T0));
        record(&rules, &mut state, T0 + DAY, 1);
        assert_eq!((state.used, state.window.start_ms), (1, T0 + DAY));
    }

    #[test]
    fn a_reading_far_back_keeps_the_count_and_returns_without_double_counting() {
        let rules = rules(100);
        let mut state = ServiceState::new(Period::Day, T0);
        record(&rules, &mut state, T0, 40);
        record(&rules, &mut state, 0, 2); // bogus: 1970
        assert_eq!(state.used, 42, "never lowered");
        record(&rules, &mut state, T0 + 1, 1);
        assert_eq!((state.used, state.window.start_ms), (43, T0));
    }
}

#[cfg(test)]
mod admission_tests {
    use super::*;
    use crate::store::{AdmitReply, AdmitRequest, InstanceId, StoredState, WindowKey};

    const T0: u64 = 1_718_000_000_000 / 86_400_000 * 86_400_000;

    fn rules(limit: u64, critical: f64, reserve: f64) -> ServiceRules {
        let config = ServiceConfig::builder("s", limit, Period::Day)
            .warn_threshold(critical.min(0.5))
            .critical_threshold(critical)
            .reserve_fraction(reserve)
            .build()
            .unwrap();
        ServiceRules::new(&config, 0.25)
    }

    fn try_record(count: u64, priority: bool) -> Request {
        Request::TryRecord {
            count,
            reduced_rate: false,
            priority,
        }
    }

    /// The refusal of one step, or `None` when it counted.
    fn refusal(
        rules: &ServiceRules,
        state: &mut ServiceState,
        request: Request,
    ) -> Option<(u64, DenyReason)> {
        match rules.step(state, T0, request).refused {
            None => None,
            Some(Refusal::Denied { used, reason }) => Some((used, reason)),
            Some(Refusal::Overflow) => panic!("no overflow here"),
        }
    }

    #[test]
    fn the_reserve_stops_normal_calls_and_priority_calls_take_it() {
        // Critical at the limit: only the reserve (10 of 100) stops normal admission.
        let rules = rules(100, 1.0, 0.1);
        assert_eq!((rules.reserve, rules.normal_cap), (10, 90));
        let mut state = ServiceState::new(Period::Day, T0);
        assert_eq!(refusal(&rules, &mut state, try_record(89, false)), None);
        assert_eq!(
            refusal(&rules, &mut state, try_record(2, false)),
            Some((89, DenyReason::Reserve)),
            "89 + 2 would take a call of the reserve"
        );
        assert_eq!(refusal(&rules, &mut state, try_record(1, false)), None);
        assert_eq!(
            refusal(&rules, &mut state, try_record(1, false)),
            Some((90, DenyReason::Reserve))
        );
        assert!(!rules.allows(90, false));
        // A priority call may use the reserve, up to the limit and no further.
        assert_eq!(
            refusal(&rules, &mut state, try_record(11, true)),
            Some((90, DenyReason::Limit))
        );
        assert_eq!(refusal(&rules, &mut state, try_record(10, true)), None);
        assert_eq!(
            refusal(&rules, &mut state, try_record(1, true)),
            Some((100, DenyReason::Limit))
        );
        assert_eq!(
            refusal(&rules, &mut state, try_record(1, false)),
            Some((100, DenyReason::Limit))
        );
        assert_eq!(state.used, 100);
    }

    #[test]
    fn the_critical_level_stops_normal_calls_when_it_comes_first() {
        // The defaults: Critical at 80, reserve 10 (from 90): Critical comes first.
        let rules = rules(100, 0.8, 0.1);
        assert_eq!(rules.normal_cap, 80);
        let mut state = ServiceState::new(Period::Day, T0);
        assert_eq!(refusal(&rules, &mut state, try_record(79, false)), None);
        // A normal call may reach the Critical level, not pass it.
        assert_eq!(
            refusal(&rules, &mut state, try_record(2, false)),
            Some((79, DenyReason::Critical))
        );
        assert_eq!(refusal(&rules, &mut state, try_record(1, false)), None);
        assert_eq!(
            refusal(&rules, &mut state, try_record(1, false)),
            Some((80, DenyReason::Critical))
        );
        assert_eq!(refusal(&rules, &mut state, try_record(20, true)), None);
        assert_eq!(state.used, 100);
    }

    #[test]
    fn past_the_critical_level_the_reason_is_critical_even_where_the_reserve_comes_first() {
        // Critical at 95, the reserve from 90.
        let rules = rules(100, 0.95, 0.1);
        let mut state = ServiceState::new(Period::Day, T0);
        assert_eq!(refusal(&rules, &mut state, try_record(90, false)), None);
        assert_eq!(
            refusal(&rules, &mut state, try_record(1, false)),
            Some((90, DenyReason::Reserve))
        );
        assert_eq!(refusal(&rules, &mut state, try_record(5, true)), None);
        assert_eq!(
            refusal(&rules, &mut state, try_record(1, false)),
            Some((95, DenyReason::Critical))
        );
    }

    #[test]
    fn reduced_rate_caps_priority_calls_too() {
        let rules = rules(100, 0.8, 0.1);
        let mut state = ServiceState::new(Period::Day, T0);
        let reduced = |count, priority| Request::TryRecord {
            count,
            reduced_rate: true,
            priority,
        };
        assert_eq!(refusal(&rules, &mut state, reduced(25, true)), None);
        for priority in [false, true] {
            assert_eq!(
                refusal(&rules, &mut state, reduced(1, priority)),
                Some((25, DenyReason::ReducedRate))
            );
        }
        // Past the limit is named first.
        assert_eq!(
            refusal(&rules, &mut state, reduced(76, true)),
            Some((25, DenyReason::Limit))
        );
    }

    #[test]
    fn a_reserve_of_zero_lets_normal_calls_reach_the_limit() {
        let rules = rules(10, 1.0, 0.0);
        let mut state = ServiceState::new(Period::Day, T0);
        assert_eq!(refusal(&rules, &mut state, try_record(10, false)), None);
        assert_eq!(
            refusal(&rules, &mut state, try_record(1, false)),
            Some((10, DenyReason::Limit))
        );
    }

    /// A store's admission (the real `StoredState::admit`) with `shared_rule` decides as
    /// `denies` does, for every count, level, reserve, mode and priority of small services.
    #[test]
    fn shared_admission_applies_the_same_rule() {
        let key = WindowKey {
            service: "s".into(),
            period: Period::Day,
            start_ms: T0,
            end_ms: T0 + 86_400_000,
        };
        let request = |seq, count, (below, cap): (u64, u64), force| AdmitRequest {
            instance: InstanceId::from_u128(1),
            seq,
            done_below: 0,
            window: key.clone(),
            count,
            below,
            cap,
            force,
        };
        for limit in [1, 2, 3, 7, 10, 20] {
            for critical in [0.5, 0.8, 0.9, 1.0] {
                for reserve in [0.0, 0.1, 0.3, 0.5] {
                    let rules = rules(limit, critical, reserve);
                    for used in 0..=limit + 1 {
                        for count in 0..=limit + 1 {
                            for reduced in [false, true] {
                                for priority in [false, true] {
                                    let mut store = StoredState::new();
                                    if used > 0 {
                                        store.admit(&request(1, used, (0, 0), true));
                                    }
                                    let rule = rules.shared_rule(reduced, priority);
                                    let reply = store.admit(&request(2, count, rule, false));
                                    let admitted = matches!(reply, AdmitReply::Admitted { .. });
                                    let denies = rules.denies(used, count, reduced, priority);
                                    assert_eq!(
                                        admitted,
                                        denies.is_none(),
                                        "limit {limit} critical {critical} reserve {reserve} \
                                         used {used} count {count} reduced {reduced} \
                                         priority {priority}: {denies:?}"
                                    );
                                }
                            }
                        }
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod jump_tests {
    use super::*;

    const DAY: u64 = 86_400_000;
    const T0: u64 = 1_718_000_000_000 / DAY * DAY;
    const YEAR: u64 = 365 * DAY;

    fn rules() -> ServiceRules {
        ServiceRules::new(&ServiceConfig::new("s", 1_000, Period::Day), 0.25)
    }

    fn at(rules: &ServiceRules, state: &mut ServiceState, now: u64, n: u64) -> u64 {
        rules.step(state, now, Request::Record(n));
        state.used
    }

    #[test]
    fn two_bogus_readings_ahead_return_with_every_call() {
        let rules = rules();
        let mut state = ServiceState::new(Period::Day, T0);
        at(&rules, &mut state, T0, 30);
        at(&rules, &mut state, T0 + YEAR, 1);
        at(&rules, &mut state, T0 + 2 * YEAR, 2);
        assert_eq!(at(&rules, &mut state, T0 + 5, 1), 34);
    }

    #[test]
    fn back_then_ahead_then_right_again_keeps_every_call() {
        let rules = rules();
        let mut state = ServiceState::new(Period::Day, T0);
        at(&rules, &mut state, T0, 40);
        at(&rules, &mut state, 0, 1); // 1970: keeps its 41
        at(&rules, &mut state, T0 + YEAR, 2);
        assert_eq!(at(&rules, &mut state, T0 + 5, 1), 44);
    }

    #[test]
    fn days_passing_after_a_jump_still_return_to_the_window_left() {
        let rules = rules();
        let mut state = ServiceState::new(Period::Day, T0);
        at(&rules, &mut state, T0, 10);
        at(&rules, &mut state, T0 + YEAR, 1);
        at(&rules, &mut state, T0 + YEAR + DAY, 2); // a roll-over within the bogus time
        assert_eq!(at(&rules, &mut state, T0 + 5, 1), 14);
        // Plain roll-overs remember nothing.
        at(&rules, &mut state, T0 + DAY, 1);
        assert_eq!(state.left, None);
    }

    #[test]
    fn reduced_rate_caps_the_count_not_only_the_level() {
        let rules = ServiceRules::new(&ServiceConfig::new("s", 100, Period::Day), 0.25);
        let mut state = ServiceState::new(Period::Day, T0);
        let try_record = |count| Request::TryRecord {
            count,
            reduced_rate: true,
            priority: false,
        };
        assert!(rules.step(&mut state, T0, try_record(26)).refused.is_some());
        assert!(rules.step(&mut state, T0, try_record(25)).refused.is_none());
        assert!(rules.step(&mut state, T0, try_record(1)).refused.is_some());
        assert_eq!(state.used, 25);
    }
}
