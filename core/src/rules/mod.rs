//! The per-service step: roll the window over, check, count, see the level change.
//!
//! [`ServiceRules::step`] is the one place these rules are written. It is pure: it reads no
//! clock, takes no lock and does no I/O; it gets a service's state and a request and leaves
//! the new state and the outcome. The tracker runs it under the service's lock; the racy
//! demonstration (`sim::RacyCounts`) runs the very same step on an unguarded copy, so the two
//! differ only in how the state is held, which is the lesson the demonstration teaches.
//!
//! The rules the step applies live beside it: `admission` (what a call asks for, and the rule
//! that admits it or names why not) and `align` (clock sanity). Clock sanity lives here, so it
//! holds for every [`Clock`](crate::Clock): a reading a little before the window (up to one
//! period, say an NTP correction, or a thread that read the clock and then waited for the
//! lock) counts in the current window; a reading far before it means the current window came
//! from a bogus reading, so the service goes back to the reading's window and never lowers
//! `used` (see [`ServiceRules::align`]).

use crate::config::{LimitRule, ServiceConfig};
use crate::error::DenyReason;
use crate::level::{calls_at_most, Level, Thresholds};
use crate::window::{Window, WindowSpec};

pub(crate) use admission::{Ask, Request};

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
    pub(crate) fn new(window: &WindowSpec, now_ms: u64) -> Self {
        ServiceState {
            used: 0,
            total: 0,
            window: window.window_at(now_ms),
            left: None,
        }
    }
}

/// A level change, without the service's name (the caller adds it only when there is one).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Change {
    pub(crate) from: Level,
    pub(crate) to: Level,
    /// Which of the service's limits changed level (0: its own; see
    /// [`ServiceRules::index`]).
    pub(crate) limit: u8,
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
    /// The service was removed from the tracker (`QuotaTracker::reconfigure`): nothing is
    /// counted there any more.
    Removed,
    /// The service's admission is in a shared store now (a reconfigure landed between the
    /// hot path's reading of the settings and its lock): nothing counted locally; the caller
    /// takes the shared path.
    Shared,
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
    /// Shadow mode (`enforce = false`): the rule that would have denied this request, which
    /// was counted instead.
    pub(crate) shadow: Option<DenyReason>,
    /// Transitions the step queued itself (a service of several limits has one per limit
    /// whose level changed, not `reset` and `recorded`): deliver them too.
    pub(crate) queued: bool,
}

impl Step {
    /// A step that only moved the window, carrying `carried` calls into the new one.
    pub(crate) fn moved_by(carried: u64) -> Self {
        Step {
            moved: Some(carried),
            changed: true,
            ..Step::default()
        }
    }

    /// Whether the counting took the service from below Critical to Critical or beyond (a
    /// forced save, with a store that asks for one).
    pub(crate) fn entered_critical(&self) -> bool {
        self.recorded
            .is_some_and(|c| c.from < Level::Critical && c.to >= Level::Critical)
    }
}

/// One service's fixed rules, computed once from its config.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct ServiceRules {
    /// Which of the service's limits these are (0: the service's own `limit` per `window`;
    /// 1 and on: its `more_limits`, in order).
    pub(crate) index: u8,
    pub(crate) limit: u64,
    /// The window spec (its windows and their longest length).
    pub(crate) window: WindowSpec,
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
    /// Whether admission denies (`false`: shadow mode, see [`ServiceConfig::enforce`]).
    pub(crate) enforce: bool,
}

impl ServiceRules {
    /// The rules of `config`'s own limit, with `reduced_fraction` of the limit allowed in
    /// reduced rate.
    pub(crate) fn new(config: &ServiceConfig, reduced_fraction: f64) -> Self {
        Self::of_limit(config.limit_rule(0), 0, reduced_fraction)
    }

    /// The rules of one limit of a service (`index`: its place, 0 for the service's own; at
    /// most `ServiceConfig::MAX_LIMITS`, validated).
    pub(crate) fn of_limit(rule: LimitRule<'_>, index: u8, reduced_fraction: f64) -> Self {
        let limit = rule.count;
        let thresholds = Thresholds::new(limit, rule.warn_threshold, rule.critical_threshold);
        let reserve = calls_at_most(limit, rule.reserve_fraction);
        let unreserved = limit.saturating_sub(reserve);
        ServiceRules {
            index,
            limit,
            window: rule.window.clone(),
            thresholds,
            reserve,
            normal_cap: thresholds.critical_at.min(unreserved),
            reserve_first: unreserved < thresholds.critical_at,
            reduced_allowance: calls_at_most(limit, reduced_fraction),
            normal_below: thresholds.warn_at.min(thresholds.critical_at).min(limit),
            enforce: rule.enforce,
        }
    }

    #[inline]
    pub(crate) fn level(&self, used: u64) -> Level {
        Level::of(used, self.limit, self.thresholds)
    }

    /// The level is the same for every count from `used` up to (not including) this: the
    /// next of the warn threshold, the critical threshold and the limit above `used`
    /// (`u64::MAX` past them all).
    #[inline]
    pub(crate) fn level_holds_below(&self, used: u64) -> u64 {
        [
            self.thresholds.warn_at,
            self.thresholds.critical_at,
            self.limit,
        ]
        .into_iter()
        .filter(|&at| at > used)
        .min()
        .unwrap_or(u64::MAX)
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
        if request.ask == Ask::Read {
            return step;
        }
        let count = request.count;
        let Some(after) = state.used.checked_add(count) else {
            step.refused = Some(Refusal::Overflow);
            return step;
        };
        // A record is never refused (but for the overflow above).
        if request.ask != Ask::Record {
            if let Some(reason) = self.denies(state.used, request) {
                if self.enforce {
                    step.refused = Some(Refusal::Denied {
                        used: state.used,
                        reason,
                    });
                    return step;
                }
                step.shadow = Some(reason);
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
            limit: self.index,
            used,
            at_ms,
        })
    }
}

mod admission;
mod align;

#[cfg(test)]
mod tests;
