//! Jumps of the clock: every call counted in the window it returns to.

use super::*;
use crate::window::Period;

const DAY: u64 = 86_400_000;
const T0: u64 = 1_718_000_000_000 / DAY * DAY;
const YEAR: u64 = 365 * DAY;

fn rules() -> ServiceRules {
    ServiceRules::new(&ServiceConfig::new("s", 1_000, Period::Day), 0.25)
}

fn at(rules: &ServiceRules, state: &mut ServiceState, now: u64, n: u64) -> u64 {
    rules.step(state, now, Request::record(n));
    state.used
}

#[test]
fn two_bogus_readings_ahead_return_with_every_call() {
    let rules = rules();
    let mut state = ServiceState::new(&Period::Day.into(), T0);
    at(&rules, &mut state, T0, 30);
    at(&rules, &mut state, T0 + YEAR, 1);
    at(&rules, &mut state, T0 + 2 * YEAR, 2);
    assert_eq!(at(&rules, &mut state, T0 + 5, 1), 34);
}

#[test]
fn back_then_ahead_then_right_again_keeps_every_call() {
    let rules = rules();
    let mut state = ServiceState::new(&Period::Day.into(), T0);
    at(&rules, &mut state, T0, 40);
    at(&rules, &mut state, 0, 1); // 1970: keeps its 41
    at(&rules, &mut state, T0 + YEAR, 2);
    assert_eq!(at(&rules, &mut state, T0 + 5, 1), 44);
}

#[test]
fn days_passing_after_a_jump_still_return_to_the_window_left() {
    let rules = rules();
    let mut state = ServiceState::new(&Period::Day.into(), T0);
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
    let mut state = ServiceState::new(&Period::Day.into(), T0);
    let try_record = |count| admit(count, true, false);
    assert!(rules.step(&mut state, T0, try_record(26)).refused.is_some());
    assert!(rules.step(&mut state, T0, try_record(25)).refused.is_none());
    assert!(rules.step(&mut state, T0, try_record(1)).refused.is_some());
    assert_eq!(state.used, 25);
}
