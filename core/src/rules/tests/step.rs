//! The step: counting, refusals, small steps back and bogus readings.

use super::*;
use crate::window::Period;

const DAY: u64 = 86_400_000;
const T0: u64 = 1_718_000_000_000 / DAY * DAY; // a midnight, UTC

fn rules(limit: u64) -> ServiceRules {
    ServiceRules::new(&ServiceConfig::new("s", limit, Period::Day), 0.25)
}

fn record(rules: &ServiceRules, state: &mut ServiceState, now: u64, n: u64) -> Step {
    rules.step(state, now, Request::record(n))
}

#[test]
fn try_record_counts_only_what_is_admitted() {
    let rules = rules(10);
    let mut state = ServiceState::new(&Period::Day.into(), T0);
    let try_record = |count| admit(count, false, false);
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
    let mut state = ServiceState::new(&Period::Day.into(), T0 + DAY);
    record(&rules, &mut state, T0 + DAY, 5);
    // One second before the window (an NTP correction): counted in the current window.
    record(&rules, &mut state, T0 + DAY - 1_000, 3);
    assert_eq!((state.used, state.window.start_ms), (8, T0 + DAY));
}

#[test]
fn a_reading_a_year_ahead_never_lowers_the_real_windows_count() {
    let rules = rules(100);
    let mut state = ServiceState::new(&Period::Day.into(), T0);
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
    let mut state = ServiceState::new(&Period::Day.into(), T0);
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
    let mut state = ServiceState::new(&Period::Day.into(), T0);
    record(&rules, &mut state, T0, 40);
    record(&rules, &mut state, 0, 2); // bogus: 1970
    assert_eq!(state.used, 42, "never lowered");
    record(&rules, &mut state, T0 + 1, 1);
    assert_eq!((state.used, state.window.start_ms), (43, T0));
}
