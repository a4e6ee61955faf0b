//! The fast path alone: what it counts, where it stops, when its epoch moves.

use super::*;
use crate::config::ServiceConfig;
use crate::window::Period;

const T0: u64 = 1_718_000_000_000 / 86_400_000 * 86_400_000;

fn rules(limit: u64) -> ServiceRules {
    let config = ServiceConfig::builder("s", limit, Period::Day)
        .warn_threshold(0.5)
        .critical_threshold(0.8)
        .reserve_fraction(0.1)
        .build()
        .unwrap();
    ServiceRules::new(&config, 0.25)
}

fn state(used: u64) -> ServiceState {
    let mut state = ServiceState::new(&Period::Day.into(), T0);
    state.used = used;
    state.total = used + 7;
    state
}

fn released_with(rules: &ServiceRules, used: u64) -> (FastPath, Published) {
    let fast = FastPath::new();
    let (taken, _) = fast.take(None);
    let published = fast
        .release(taken, &state(used), rules, true, None)
        .unwrap();
    assert_eq!(published.used, used);
    (fast, published)
}

fn released(rules: &ServiceRules, used: u64) -> FastPath {
    released_with(rules, used).0
}

#[test]
fn a_new_fast_path_counts_nothing() {
    let fast = FastPath::new();
    assert!(fast.try_count(T0, Request::record(1)).is_none());
    assert_eq!(fast.take(None).1, 0);
}

#[test]
fn counts_below_the_next_threshold_and_never_crosses_it() {
    let rules = rules(100);
    let (fast, published) = released_with(&rules, 10);
    let counted = fast.try_count(T0 + 5, Request::record(39)).unwrap();
    assert_eq!((counted.used, counted.total), (49, 56));
    assert_eq!(counted.window, Period::Day.window_at(T0));
    // 49 + 1 = 50 is the warn threshold: a level change, so the lock's.
    assert!(fast.try_count(T0, Request::record(1)).is_none());
    let (taken, counted) = fast.take(Some(published));
    assert_eq!(
        counted, 39,
        "the lock holder gets exactly what the fast path counted"
    );
    assert_eq!(taken & TAKEN, 0, "free until this take");
    assert!(fast.try_count(T0, Request::record(1)).is_none(), "taken");
}

#[test]
fn admission_stops_at_the_normal_cap_and_the_limit() {
    let rules = rules(100); // normal cap: min(80, 100 - 10) = 80
    let fast = released(&rules, 85);
    assert!(fast.try_count(T0, Request::normal(1, false)).is_none());
    assert_eq!(
        fast.try_count(T0, Request::priority(14, false))
            .unwrap()
            .used,
        99
    );
    assert!(
        fast.try_count(T0, Request::priority(1, false)).is_none(),
        "100 is Exhausted"
    );
    let fast = released(&rules, 100);
    assert!(fast.try_count(T0, Request::priority(1, false)).is_none());
    assert_eq!(fast.try_count(T0, Request::record(5)).unwrap().used, 105);
}

#[test]
fn readings_outside_the_window_take_the_lock() {
    let rules = rules(100);
    let fast = released(&rules, 0);
    let window = Period::Day.window_at(T0);
    assert!(fast
        .try_count(window.reset_at_ms, Request::record(1))
        .is_none());
    assert!(fast
        .try_count(T0 - Period::Day.max_ms() - 1, Request::record(1))
        .is_none());
    // A small step back counts in the window, as the step's clock sanity says.
    assert!(fast.try_count(T0 - 1_000, Request::record(1)).is_some());
}

#[test]
fn counts_the_word_cannot_hold_take_the_lock() {
    let rules = rules(u64::MAX / 2);
    let fast = released(&rules, COUNT_MASK - 2);
    assert!(fast.try_count(T0, Request::record(3)).is_none());
    assert_eq!(
        fast.try_count(T0, Request::record(2)).unwrap().used,
        COUNT_MASK
    );
    assert!(fast.try_count(T0, Request::record(u64::MAX)).is_none());
    let fast = FastPath::new();
    let (taken, _) = fast.take(None);
    assert_eq!(
        fast.release(taken, &state(COUNT_MASK + 1), &rules, true, None),
        None
    );
    assert!(fast.try_count(T0, Request::record(1)).is_none());
}

#[test]
fn the_epoch_moves_when_the_parameters_change_or_the_count_goes_back() {
    let rules = rules(100);
    let (fast, mut published) = released_with(&rules, 3);
    let mut release = |state: ServiceState| {
        let before = fast.word.load(Ordering::Relaxed);
        let (taken, _) = fast.take(Some(published));
        published = fast
            .release(taken, &state, &rules, true, Some(published))
            .unwrap();
        let after = fast.word.load(Ordering::Relaxed);
        assert_eq!(after & COUNT_MASK, state.used);
        before & EPOCH_MASK != after & EPOCH_MASK
    };
    // A read (nothing changed) and a count in the same level keep the epoch: a fast call
    // that loaded the word before them is still right, or fails on the count.
    assert!(!release(state(3)));
    assert!(!release(state(4)));
    // A level change (50 is Warning), a window change, and a count that goes back move it.
    assert!(release(state(50)));
    let mut next_day = state(50);
    next_day.window = Period::Day.window_at(T0 + 86_400_000);
    assert!(release(next_day));
    let mut fewer = next_day;
    fewer.used = 49;
    fewer.total = next_day.total;
    assert!(release(fewer));
}
