//! Hostile review of `Leased` admission of several limits against reconfigures: one landing
//! exactly while a lease is in flight (the store runs it from inside `lease`, no tracker lock
//! held), or while a block is in hand. The block, or the grant, must go back to the windows it
//! was granted in, exactly once, and never be spent past the limits in force.

#[path = "support/hook_store.rs"]
mod hook_store;
#[path = "support/two_limits.rs"]
mod two_limits;

use hook_store::HookStore;
use quota_core::{
    Admission, Limit, ManualClock, MemoryStore, Period, QuotaTracker, ServiceConfig, Store,
    TrackerConfig,
};
use std::sync::Arc;
use two_limits::{both, stored, tracker};

/// Noon, 10 June 2024 (UTC), a second in: the minute and the hour start together.
const NOON: u64 = 1_718_020_800_000;

fn service(per_minute: u64, per_hour: u64, admission: Admission) -> ServiceConfig {
    ServiceConfig::builder("api", per_minute, Period::Minute)
        .and_limit(Limit::new(per_hour, Period::Hour))
        .warn_threshold(0.5)
        .critical_threshold(1.0)
        .reserve_fraction(0.0)
        .admission(admission)
        .build()
        .unwrap()
}

fn config(per_minute: u64, per_hour: u64, block: u64) -> TrackerConfig {
    TrackerConfig::new([service(per_minute, per_hour, Admission::Leased { block })])
}

fn with(services: impl IntoIterator<Item = ServiceConfig>) -> TrackerConfig {
    TrackerConfig::new(services)
}

/// A tracker whose next lease lands `reconfigure` (from inside the store, before the store
/// grants), and the store.
fn racing(
    first: TrackerConfig,
    then: TrackerConfig,
    clock: &ManualClock,
) -> (Arc<QuotaTracker>, HookStore) {
    let store = HookStore::new();
    let a = Arc::new(tracker(first, store.clone(), clock));
    let during = Arc::clone(&a);
    store.on_lease(move |inner, request| {
        during.reconfigure(then).unwrap();
        inner.lease(request)
    });
    (a, store)
}

/// A grant asked under the old limits goes back when it comes after a reconfigure lowered one
/// (same windows): it was asked under other settings. The call is decided again under the new
/// ones: never past the hour's new limit of 10.
#[test]
fn a_grant_asked_under_a_higher_limit_is_not_spent_past_the_lowered_one() {
    let clock = ManualClock::new(NOON + 1_000);
    let (a, store) = racing(config(1_000, 100, 50), config(1_000, 10, 50), &clock);
    let admitted = (0..100).filter(|_| a.try_record("api", 1).is_ok()).count() as u64;
    a.flush().unwrap();
    assert_eq!(both(&store.inner), (admitted, admitted));
    assert!(
        admitted <= 10,
        "the hour's limit is 10 since the reconfigure; {admitted} admitted"
    );
}

/// A one-limit lease (an hour's block) in flight while a reconfigure makes the service
/// [minute, hour]: the grant goes back to the hour it was granted in (never joined as the
/// minute's block, which would take it off the minute and leave the hour holding it).
#[test]
fn a_one_limit_grant_in_flight_across_a_change_to_several_limits_goes_back_to_its_window() {
    let clock = ManualClock::new(NOON + 1_000);
    let one = TrackerConfig::new([ServiceConfig::builder("api", 100, Period::Hour)
        .warn_threshold(0.5)
        .critical_threshold(1.0)
        .reserve_fraction(0.0)
        .admission(Admission::Leased { block: 10 })
        .build()
        .unwrap()]);
    let (a, store) = racing(one, config(100, 100, 10), &clock);
    a.try_record("api", 1).unwrap();
    a.flush().unwrap();
    // One call admitted: the store holds it in every window, nothing else.
    assert_eq!(both(&store.inner), (1, 1));
}

/// The service removed while its lease is in flight: the grant goes back to both windows.
#[test]
fn a_grant_for_a_service_removed_meanwhile_goes_back_to_every_window() {
    let clock = ManualClock::new(NOON + 1_000);
    let other = ServiceConfig::new("other", 10, Period::Day);
    let (a, store) = racing(
        with([
            service(100, 100, Admission::Leased { block: 10 }),
            other.clone(),
        ]),
        with([other]),
        &clock,
    );
    assert!(a.try_record("api", 1).is_err());
    a.flush().unwrap();
    assert_eq!(both(&store.inner), (0, 0));
}

/// Each change that leaves the windows or the admission different while the lease is in
/// flight: the grant goes back to the windows it was granted in (exactly once), and what
/// the tracker admits afterwards under the new config is all the store holds.
#[test]
fn a_grant_whose_service_changed_meanwhile_goes_back_once() {
    let leased = Admission::Leased { block: 10 };
    // Each change, and the windows of its config (the others must end at 0).
    let changes: Vec<(&str, TrackerConfig, &[&str])> = vec![
        (
            "to exact",
            with([service(100, 100, Admission::Exact)]),
            &["minute", "hour"],
        ),
        (
            "to local",
            with([service(100, 100, Admission::Local)]),
            &["minute", "hour"],
        ),
        (
            "hour to day",
            with([ServiceConfig::builder("api", 100, Period::Minute)
                .and_limit(Limit::new(100, Period::Day))
                .reserve_fraction(0.0)
                .critical_threshold(1.0)
                .admission(leased)
                .build()
                .unwrap()]),
            &["minute", "day"],
        ),
        (
            "a third limit",
            with([ServiceConfig::builder("api", 100, Period::Minute)
                .and_limit(Limit::new(100, Period::Hour))
                .and_limit(Limit::new(100, Period::Day))
                .reserve_fraction(0.0)
                .critical_threshold(1.0)
                .admission(leased)
                .build()
                .unwrap()]),
            &["minute", "hour", "day"],
        ),
        (
            "the minute dropped",
            with([ServiceConfig::builder("api", 100, Period::Hour)
                .reserve_fraction(0.0)
                .critical_threshold(1.0)
                .admission(leased)
                .build()
                .unwrap()]),
            &["hour"],
        ),
        (
            "limits swapped",
            with([ServiceConfig::builder("api", 100, Period::Hour)
                .and_limit(Limit::new(100, Period::Minute))
                .reserve_fraction(0.0)
                .critical_threshold(1.0)
                .admission(leased)
                .build()
                .unwrap()]),
            &["minute", "hour"],
        ),
    ];
    for (name, then, kept) in changes {
        let clock = ManualClock::new(NOON + 1_000);
        let (a, store) = racing(config(100, 100, 10), then, &clock);
        // Decided under the new config, either way; nothing of the grant stays.
        let first = a.try_record("api", 1).is_ok() as u64;
        let later = (0..5).filter(|_| a.try_record("api", 1).is_ok()).count() as u64;
        a.flush().unwrap();
        let admitted = first + later;
        assert!(admitted >= 5, "{name}: {admitted} admitted");
        for spec in ["minute", "hour", "day"] {
            let expected = if kept.contains(&spec) { admitted } else { 0 };
            assert_eq!(stored(&store.inner, spec), expected, "{name}: the {spec}");
        }
    }
}

/// Only the block size changes while the lease is in flight: same windows, same limits; the
/// grant joins (or goes back), and the store ends holding exactly what was admitted.
#[test]
fn a_block_size_change_meanwhile_loses_nothing() {
    let clock = ManualClock::new(NOON + 1_000);
    let (a, store) = racing(config(100, 100, 10), config(100, 100, 3), &clock);
    let admitted = (0..20).filter(|_| a.try_record("api", 1).is_ok()).count() as u64;
    assert_eq!(admitted, 20);
    a.flush().unwrap();
    assert_eq!(both(&store.inner), (20, 20));
}

/// A block in hand through every kind of change, one after another: each change that takes
/// the service off this block gives it back to both windows exactly once.
#[test]
fn a_block_in_hand_goes_back_once_through_a_chain_of_reconfigures() {
    let clock = ManualClock::new(NOON + 1_000);
    let store = MemoryStore::new();
    let a = tracker(config(100, 100, 10), store.clone(), &clock);
    let configs = [
        with([service(100, 100, Admission::Exact)]),
        config(100, 100, 10),
        config(100, 100, 4),
        with([service(100, 100, Admission::Local)]),
        config(100, 100, 7),
        config(90, 100, 7),
        with([ServiceConfig::builder("api", 100, Period::Hour)
            .reserve_fraction(0.0)
            .critical_threshold(1.0)
            .admission(Admission::Leased { block: 5 })
            .build()
            .unwrap()]),
        config(100, 100, 6),
    ];
    let mut admitted = 0;
    for (round, next) in configs.into_iter().enumerate() {
        for _ in 0..3 {
            a.try_record("api", 1).unwrap();
            admitted += 1;
        }
        a.reconfigure(next).unwrap();
        // The give-back a reconfigure makes is synced by it: the hour holds what was admitted.
        a.flush().unwrap();
        assert_eq!(stored(&store, "hour"), admitted, "after change {round}");
    }
    a.flush().unwrap();
    // Three calls were made while the service had the hour only.
    assert_eq!(both(&store), (admitted - 3, admitted));
}

/// A reconfigure removing the service while another thread spends and leases: every call is
/// admitted once or refused, and the store holds what was admitted.
#[test]
fn removing_the_service_while_threads_lease_strands_nothing() {
    for round in 0..20 {
        let clock = ManualClock::new(NOON + 1_000);
        let store = MemoryStore::new();
        let a = Arc::new(tracker(config(1_000, 1_000, 5), store.clone(), &clock));
        let workers: Vec<_> = (0..2)
            .map(|_| {
                let a = Arc::clone(&a);
                std::thread::spawn(move || {
                    (0..200).filter(|_| a.try_record("api", 1).is_ok()).count() as u64
                })
            })
            .collect();
        std::thread::yield_now();
        a.reconfigure(with([ServiceConfig::new("other", 10, Period::Day)]))
            .unwrap();
        let admitted: u64 = workers.into_iter().map(|w| w.join().unwrap()).sum();
        a.flush().unwrap();
        assert_eq!(both(&store), (admitted, admitted), "round {round}");
    }
}
