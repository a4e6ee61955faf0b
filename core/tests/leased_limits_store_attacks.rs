//! Hostile stores and observers against `Leased` admission of several limits: a store that
//! panics after granting, answers a lease with a window left out, or hangs mid-lease; a raise
//! landing while a lease is in flight; observers calling back into the tracker while a grant
//! or a give-back moves a limit's level; priority calls falling through to `Exact`.

#[path = "support/hook_store.rs"]
mod hook_store;
#[path = "support/timeout.rs"]
mod timeout;
#[path = "support/two_limits.rs"]
mod two_limits;

use hook_store::HookStore;
use quota_core::{
    Admission, Limit, ManualClock, MemoryStore, Period, QuotaTracker, ServiceConfig, Store,
    TrackerConfig,
};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{mpsc, Arc};
use std::thread;
use two_limits::{both, stored, tracker};

/// Noon, 10 June 2024 (UTC), a second in.
const NOON: u64 = 1_718_020_800_000 + 1_000;
const MINUTE_ENDS: u64 = 1_718_020_800_000 + 60_000;

fn config(per_minute: u64, per_hour: u64, block: u64) -> TrackerConfig {
    TrackerConfig::new([ServiceConfig::builder("api", per_minute, Period::Minute)
        .and_limit(Limit::new(per_hour, Period::Hour))
        .warn_threshold(0.5)
        .critical_threshold(1.0)
        .reserve_fraction(0.0)
        .admission(Admission::Leased { block })
        .build()
        .unwrap()])
}

/// Calls until `n` are admitted or `tries` made, the clock past any back-off between tries.
fn admit(a: &QuotaTracker, clock: &ManualClock, n: u64, tries: u64) -> u64 {
    let mut admitted = 0;
    for _ in 0..tries {
        if admitted == n {
            break;
        }
        if a.try_record("api", 1).is_ok() {
            admitted += 1;
        } else {
            clock.advance(2_000);
        }
    }
    admitted
}

/// A store that grants (applied) and then panics, and one that answers a grant leaving a
/// window out: each is a maybe-applied failure, resent by the next sync and given back; the
/// store ends holding exactly what was admitted in both windows.
#[test]
fn a_store_panicking_after_granting_or_answering_a_window_short_strands_nothing() {
    let store = HookStore::new();
    let clock = ManualClock::new(NOON);
    let a = tracker(config(1_000, 1_000, 10), store.clone(), &clock);
    store.on_lease(|inner, request| {
        inner.lease(request).unwrap();
        panic!("the store dies after granting");
    });
    assert!(a.try_record("api", 1).is_err());
    assert_eq!(both(&store.inner), (10, 10), "granted, never received");
    store.on_lease(|inner, request| {
        let mut reply = inner.lease(request)?;
        reply.also.clear();
        Ok(reply)
    });
    let mut admitted = admit(&a, &clock, 3, 20);
    // And one answering an extra window.
    store.on_lease(|inner, request| {
        let mut reply = inner.lease(request)?;
        reply.also.push(reply.also[0]);
        Ok(reply)
    });
    admitted += admit(&a, &clock, 30, 60);
    a.flush().unwrap();
    assert_eq!(a.stats().unresolved_ops, 0);
    assert_eq!(both(&store.inner), (admitted, admitted));
}

/// A give-back the store panics on after applying, and one it answers with nothing taken
/// off (as after a forfeit): counted once, and the flush resolves everything.
#[test]
fn a_store_panicking_on_a_give_back_counts_it_once() {
    let store = HookStore::new();
    let clock = ManualClock::new(NOON);
    let a = tracker(config(1_000, 1_000, 10), store.clone(), &clock);
    a.try_record("api", 2).unwrap();
    store.on_give_back(|inner, request| {
        inner.give_back(request).unwrap();
        panic!("the store dies after taking the calls off");
    });
    assert!(a.flush().is_err());
    assert_eq!(both(&store.inner), (2, 2));
    clock.advance(2_000);
    a.flush().unwrap();
    assert_eq!(
        both(&store.inner),
        (2, 2),
        "the resend takes nothing off again"
    );
    assert_eq!(a.stats().unresolved_ops, 0);
}

/// A store hanging mid-lease: the tracker holds no lock across it, so other threads read,
/// snapshot, and lease through the same tracker meanwhile.
#[test]
fn a_store_hanging_mid_lease_blocks_no_other_call() {
    timeout::within(20, || {
        let store = HookStore::new();
        let clock = ManualClock::new(NOON);
        let a = Arc::new(tracker(config(1_000, 1_000, 10), store.clone(), &clock));
        let (entered, wait_entered) = mpsc::channel();
        let (release, released) = mpsc::channel::<()>();
        store.on_lease(move |inner, request| {
            entered.send(()).unwrap();
            released.recv().unwrap();
            inner.lease(request)
        });
        let hung = {
            let a = Arc::clone(&a);
            thread::spawn(move || a.try_record("api", 1).is_ok())
        };
        wait_entered.recv().unwrap();
        // Meanwhile, on this thread: every call answers.
        assert_eq!(a.usage_limits("api").unwrap().len(), 2);
        let _ = a.snapshot();
        assert!(a.can_call("api").unwrap());
        for _ in 0..5 {
            a.try_record("api", 1).unwrap();
        }
        release.send(()).unwrap();
        let first = hung.join().unwrap() as u64;
        a.flush().unwrap();
        assert_eq!(both(&store.inner), (5 + first, 5 + first));
    });
}

/// `raise_used` forfeits the block in hand (the provider says more is used than this tracker
/// knows); a grant in flight during the raise goes back when it comes, never spent: the
/// provider said 35 of the minute's 40 are used, so at most 5 more are admitted.
#[test]
fn a_grant_in_flight_across_a_raise_is_not_spent_past_the_limit() {
    let store = HookStore::new();
    let clock = ManualClock::new(NOON);
    let a = Arc::new(tracker(config(40, 1_000, 10), store.clone(), &clock));
    let during = Arc::clone(&a);
    // Granted first (the store's minute was empty), then the provider's report lands.
    store.on_lease(move |inner, request| {
        let reply = inner.lease(request);
        during.raise_used("api", 35, Some(MINUTE_ENDS)).unwrap();
        reply
    });
    let admitted = (0..20).filter(|_| a.try_record("api", 1).is_ok()).count();
    assert!(admitted <= 5, "35 of 40 used, then {admitted} admitted");
}

/// A raise landing while a lease is in flight, the store learning it before the grant is
/// taken in: the minute never ends below what the provider said plus the calls made, the
/// hour holds exactly the calls made.
#[test]
fn a_raise_synced_while_a_lease_is_in_flight_loses_no_call() {
    let store = HookStore::new();
    let clock = ManualClock::new(NOON);
    let a = Arc::new(tracker(config(1_000, 1_000, 10), store.clone(), &clock));
    let during = Arc::clone(&a);
    store.on_lease(move |inner, request| {
        let reply = inner.lease(request);
        during.raise_used("api", 5, Some(MINUTE_ENDS)).unwrap();
        during.flush().unwrap();
        reply
    });
    a.try_record("api", 1).unwrap();
    a.try_record("api", 1).unwrap();
    a.flush().unwrap();
    let (minute, hour) = both(&store.inner);
    assert_eq!(hour, 2);
    assert!(minute >= 5 + 2, "the minute holds {minute}");
}

/// Observers that call back into the tracker (read every limit, record, flush, can_call)
/// on every level change, while grants raise a limit's level and give-backs lower it: no
/// lock is taken twice, and the store ends holding what was admitted.
#[test]
fn observers_calling_back_during_grants_and_give_backs_never_deadlock() {
    timeout::within(30, || {
        let store = MemoryStore::new();
        let clock = ManualClock::new(NOON);
        let a = Arc::new(tracker(config(20, 1_000, 8), store.clone(), &clock));
        let extra = Arc::new(AtomicU64::new(0));
        let seen = Arc::new(AtomicU64::new(0));
        {
            let (weak, extra, seen) = (Arc::downgrade(&a), Arc::clone(&extra), Arc::clone(&seen));
            a.on_transition(move |_| {
                let Some(a) = weak.upgrade() else { return };
                seen.fetch_add(1, Ordering::SeqCst);
                let _ = a.usage_limits("api");
                let _ = a.snapshot();
                let _ = a.can_call("api");
                if a.try_record("api", 1).is_ok() {
                    extra.fetch_add(1, Ordering::SeqCst);
                }
                let _ = a.flush();
            });
        }
        let workers: Vec<_> = (0..3)
            .map(|_| {
                let (a, clock) = (Arc::clone(&a), clock.clone());
                thread::spawn(move || {
                    let mut admitted = 0u64;
                    for i in 0..60 {
                        if a.try_record("api", 1).is_ok() {
                            admitted += 1;
                        }
                        if i % 20 == 19 {
                            clock.advance(20_000);
                        }
                    }
                    admitted
                })
            })
            .collect();
        let admitted: u64 = workers.into_iter().map(|w| w.join().unwrap()).sum();
        a.flush().unwrap();
        let admitted = admitted + extra.load(Ordering::SeqCst);
        assert!(seen.load(Ordering::SeqCst) > 0, "no transition observed");
        assert_eq!(stored(&store, "hour"), admitted);
    });
}

/// A priority call past the normal ceiling (which blocks never pass) is one `Exact`
/// admission in every window, and one the block covers is spent from it; a flush leaves the
/// store holding what was admitted.
#[test]
fn priority_calls_fall_through_to_exact_in_every_window() {
    let store = MemoryStore::new();
    let clock = ManualClock::new(NOON);
    let config = TrackerConfig::new([ServiceConfig::builder("api", 10, Period::Minute)
        .and_limit(Limit::new(100, Period::Hour))
        .critical_threshold(0.8)
        .reserve_fraction(0.0)
        .admission(Admission::Leased { block: 3 })
        .build()
        .unwrap()]);
    let a = tracker(config, store.clone(), &clock);
    let normal = (0..12).filter(|_| a.try_record("api", 1).is_ok()).count() as u64;
    assert_eq!(normal, 8, "normal calls stop at 80 % of the minute");
    a.try_record_priority("api", 1).unwrap();
    a.try_record_priority("api", 1).unwrap();
    assert!(
        a.try_record_priority("api", 1).is_err(),
        "the minute is full"
    );
    assert!(a.try_record_priority("api", 5).is_err());
    a.flush().unwrap();
    assert_eq!(both(&store), (10, 10));
}
