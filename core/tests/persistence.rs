//! Persistence: every fault path, the first read, write-behind triggers and back-off, reduced-rate
//! mode, lost replies, trackers sharing one store, and syncs that never run inside a lock nor
//! lose a call.

use quota_core::{
    FileStore, Level, ManualClock, MemoryStore, Period, QuotaTracker, ServiceConfig, Store,
    StoreError, StoreEvent, StoredState, SyncBatch, SyncPolicy, TrackerConfig, WindowKey,
};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{mpsc, Arc, Condvar, Mutex, OnceLock, Weak};
use std::thread;
use std::time::Duration;

const JUNE_10: u64 = 1_718_000_000_000;
const JULY_1: u64 = 1_719_792_000_000;

fn config() -> TrackerConfig {
    TrackerConfig::new([
        ServiceConfig::new("a", 100, Period::Month),
        ServiceConfig::new("b", 1_000, Period::Month),
    ])
}

fn policy(interval_ms: u64) -> SyncPolicy {
    SyncPolicy {
        interval_ms,
        // One try per flush: these tests fail syncs on purpose and look at each.
        flush_timeout_ms: 0,
        ..SyncPolicy::default()
    }
}

fn build(store: &MemoryStore, clock: &ManualClock, interval_ms: u64) -> QuotaTracker {
    QuotaTracker::builder(config())
        .clock(clock.clone())
        .store(store.clone())
        .sync_policy(policy(interval_ms))
        .build()
        .unwrap()
}

/// A tracker of [`config`] on a file store.
fn file_tracker(store: &FileStore, clock: &ManualClock) -> QuotaTracker {
    QuotaTracker::builder(config())
        .clock(clock.clone())
        .store(store.clone())
        .build()
        .unwrap()
}

/// The key of `name`'s month window at `at_ms`.
fn month(name: &str, at_ms: u64) -> WindowKey {
    let window = Period::Month.window_at(at_ms);
    WindowKey {
        service: name.into(),
        spec: Period::Month.into(),
        start_ms: window.start_ms,
        end_ms: window.reset_at_ms,
    }
}

/// `name`'s stored total for June.
fn june(state: StoredState, name: &str) -> u64 {
    state.total(&month(name, JUNE_10))
}

/// `name`'s June total in a memory store (peeks at the text: no sync, no injected failure
/// consumed).
fn stored(store: &MemoryStore, name: &str) -> u64 {
    june(store.state().unwrap(), name)
}

/// A version 1 document (one tracker's snapshot), as the previous format wrote it.
fn version_1(a_used: u64) -> String {
    let june_1 = Period::Month.window_at(JUNE_10).start_ms;
    format!(
        r#"{{"version": 1, "updated_at_ms": {JUNE_10}, "services": [
            {{"name": "a", "used": {a_used}, "window_start_ms": {june_1},
              "config": {{"name": "a", "limit": 100, "period": "month",
                         "warn_threshold": 0.5, "critical_threshold": 0.8,
                         "reserve_fraction": 0.1}}}}
        ]}}"#
    )
}

#[test]
fn counts_survive_a_restart_within_the_window_only() {
    let (store, clock) = (MemoryStore::new(), ManualClock::new(JUNE_10));
    let tracker = build(&store, &clock, 60_000);
    tracker.record_call("a", 30).unwrap();
    tracker.record_call("b", 5).unwrap();
    tracker.flush().unwrap();
    let restarted = build(&store, &clock, 60_000);
    assert_eq!(restarted.usage("a").unwrap().used, 30);
    assert_eq!(restarted.usage("b").unwrap().used, 5);
    let stats = restarted.stats();
    assert_eq!((stats.loads, stats.load_failures, stats.saves), (1, 0, 0));
    // Next month the stored window is over: counts start at 0.
    clock.set(JULY_1);
    let next_month = build(&store, &clock, 60_000);
    assert_eq!(next_month.snapshot().total_used(), 0);
    // June's totals are still stored, under June.
    assert_eq!(stored(&store, "a"), 30);
}

#[test]
fn two_trackers_on_one_store_share_counts() {
    let (store, clock) = (MemoryStore::new(), ManualClock::new(JUNE_10));
    let (one, two) = (build(&store, &clock, 60_000), build(&store, &clock, 60_000));
    one.record_call("a", 10).unwrap();
    two.record_call("a", 5).unwrap();
    // Until a sync, each sees its own calls only.
    assert_eq!(one.usage("a").unwrap().used, 10);
    assert_eq!(two.usage("a").unwrap().used, 5);
    one.flush().unwrap();
    assert_eq!(one.usage("a").unwrap().used, 10);
    two.flush().unwrap();
    assert_eq!(two.usage("a").unwrap().used, 15);
    two.record_call("a", 1).unwrap();
    assert_eq!(two.usage("a").unwrap().used, 16);
    one.flush().unwrap();
    assert_eq!(
        one.usage("a").unwrap().used,
        15,
        "the other's unsynced call is not seen"
    );
    two.flush().unwrap();
    one.flush().unwrap();
    assert_eq!(one.usage("a").unwrap().used, 16);
    assert_eq!(stored(&store, "a"), 16);
    assert_eq!(stored(&store, "b"), 0);
}

#[test]
fn a_shared_total_can_take_a_tracker_to_critical() {
    let (store, clock) = (MemoryStore::new(), ManualClock::new(JUNE_10));
    let (one, two) = (build(&store, &clock, 60_000), build(&store, &clock, 60_000));
    let seen = Arc::new(Mutex::new(Vec::new()));
    let sink = Arc::clone(&seen);
    two.on_transition(move |t| sink.lock().unwrap().push((t.to, t.used)));
    one.record_call("a", 79).unwrap();
    one.flush().unwrap();
    two.record_call("a", 1).unwrap();
    assert!(two.can_call("a").unwrap());
    two.flush().unwrap();
    assert_eq!(two.usage("a").unwrap().level(), Level::Critical);
    assert!(!two.can_call("a").unwrap());
    assert!(two.try_record("a", 1).is_err());
    assert_eq!(*seen.lock().unwrap(), [(Level::Critical, 80)]);
}

#[test]
fn fault_table_load_paths_start_fresh_and_report() {
    let valid = {
        let (store, clock) = (MemoryStore::new(), ManualClock::new(JUNE_10));
        let tracker = build(&store, &clock, 60_000);
        tracker.record_call("a", 3).unwrap();
        tracker.flush().unwrap();
        store.raw().unwrap()
    };
    assert!(valid.contains("\"version\": 2"), "{valid}");
    let wrong_version = valid.replacen("\"version\": 2", "\"version\": 3", 1);
    let truncated = valid[..valid.len() / 2].to_owned();
    // (case, stored text or None for an injected failure, message)
    let cases: [(&str, Option<String>, &str); 6] = [
        ("load fails", None, "injected"),
        ("corrupt JSON", Some("{not json".into()), "not valid JSON"),
        (
            "wrong version",
            Some(wrong_version),
            "unsupported version 3",
        ),
        ("truncated", Some(truncated), "not valid JSON"),
        ("empty", Some(String::new()), "empty"),
        (
            "no version",
            Some("{\"services\": []}".into()),
            "no numeric \"version\"",
        ),
    ];
    for (name, bad, message) in cases {
        let (store, clock) = (MemoryStore::new(), ManualClock::new(JUNE_10));
        match &bad {
            None => store.fail_next(1),
            Some(text) => store.set_raw(Some(text.clone())),
        }
        let tracker = build(&store, &clock, 60_000);
        let stats = tracker.stats();
        assert_eq!((stats.loads, stats.load_failures), (1, 1), "{name}");
        assert_eq!((stats.saves, stats.save_failures), (0, 0), "{name}");
        let error = stats.last_error.unwrap();
        assert!(error.contains(message), "{name}: {error}");
        assert_eq!(tracker.snapshot().total_used(), 0, "{name}");
        // Bad data is moved aside, kept byte for byte; an injected failure moves nothing.
        assert_eq!(
            store.moved_aside(),
            bad.into_iter().collect::<Vec<_>>(),
            "{name}"
        );
        // It works, and the next sync starts a fresh state.
        tracker.record_call("a", 2).unwrap();
        tracker.flush().unwrap();
        assert_eq!(stored(&store, "a"), 2, "{name}");
        assert_eq!(tracker.usage("a").unwrap().used, 2, "{name}");
        assert!(!tracker.is_reduced_rate(), "{name}");
    }
}

#[test]
fn a_version_1_document_is_read_and_written_back_as_version_2() {
    let (store, clock) = (MemoryStore::new(), ManualClock::new(JUNE_10));
    store.set_raw(Some(version_1(30)));
    let tracker = build(&store, &clock, 60_000);
    assert_eq!(tracker.stats().load_failures, 0);
    assert_eq!(tracker.usage("a").unwrap().used, 30);
    assert!(store.raw().unwrap().contains("\"version\": 2"));
    // Converted once: a second tracker does not add the old count again.
    let second = build(&store, &clock, 60_000);
    assert_eq!(second.usage("a").unwrap().used, 30);
    tracker.record_call("a", 1).unwrap();
    tracker.flush().unwrap();
    assert_eq!(stored(&store, "a"), 31);
    assert!(store.moved_aside().is_empty());
}

#[test]
fn saves_wait_for_the_interval_then_write_behind() {
    let (store, clock) = (MemoryStore::new(), ManualClock::new(JUNE_10));
    let tracker = build(&store, &clock, 1_000);
    assert_eq!(store.syncs(), 1, "the first read");
    tracker.record_call("b", 1).unwrap();
    assert_eq!(stored(&store, "b"), 0, "no sync before the interval");
    assert_eq!(store.syncs(), 1);
    clock.advance(1_000);
    tracker.record_call("b", 1).unwrap();
    assert_eq!(stored(&store, "b"), 2);
    assert_eq!(tracker.stats().saves, 1);
    // Nothing recorded since: an interval trigger still syncs (it reads the other instances'
    // calls) and adds nothing.
    clock.advance(1_000);
    tracker.try_record("a", 1000).unwrap_err();
    assert_eq!(tracker.stats().saves, 2);
    assert_eq!(store.syncs(), 3);
    assert_eq!(stored(&store, "b"), 2);
    assert_eq!(stored(&store, "a"), 0);
}

#[test]
fn entering_critical_forces_a_save() {
    let (store, clock) = (MemoryStore::new(), ManualClock::new(JUNE_10));
    let tracker = build(&store, &clock, 3_600_000);
    tracker.record_call("a", 79).unwrap();
    assert_eq!(stored(&store, "a"), 0);
    assert_eq!(
        tracker.record_call("a", 1).unwrap().usage.level(),
        Level::Critical
    );
    assert_eq!(stored(&store, "a"), 80);
    let stats = tracker.stats();
    assert_eq!((stats.forced_saves, stats.saves), (1, 1));
}

#[test]
fn entering_critical_forces_a_save_during_a_back_off() {
    let (store, clock) = (MemoryStore::new(), ManualClock::new(JUNE_10));
    let tracker = build(&store, &clock, 1_000);
    store.fail_next(1);
    clock.advance(1_000);
    tracker.record_call("a", 10).unwrap(); // the interval sync fails: a back-off starts
    assert_eq!(tracker.stats().save_failures, 1);
    tracker.record_call("a", 10).unwrap(); // backing off: no sync
    assert_eq!(store.syncs(), 2);
    tracker.record_call("a", 60).unwrap(); // 80: Critical, synced at once
    let stats = tracker.stats();
    assert_eq!((stats.forced_saves, stats.saves), (1, 1), "{stats:?}");
    assert_eq!(stored(&store, "a"), 80);
}

#[test]
fn failed_saves_are_retried_after_a_back_off_and_lose_nothing() {
    let (store, clock) = (MemoryStore::new(), ManualClock::new(JUNE_10));
    let tracker = build(&store, &clock, 1_000);
    store.fail_next(2);
    clock.advance(1_000);
    tracker.record_call("b", 1).unwrap(); // fails; next try in 100 ms
    tracker.record_call("b", 1).unwrap(); // not yet
    clock.advance(100);
    tracker.record_call("b", 1).unwrap(); // fails; next try in 200 ms
    clock.advance(199);
    tracker.record_call("b", 1).unwrap(); // not yet
    let stats = tracker.stats();
    assert_eq!((stats.save_failures, stats.saves), (2, 0));
    assert_eq!(stats.consecutive_failures, 2);
    assert_eq!(stats.last_error.as_deref(), Some("injected store failure"));
    clock.advance(1);
    tracker.record_call("b", 1).unwrap(); // succeeds with everything recorded so far
    let stats = tracker.stats();
    assert_eq!((stats.save_failures, stats.saves), (2, 1));
    assert_eq!(stats.consecutive_failures, 0);
    assert_eq!(stored(&store, "b"), 5);
    assert_eq!(tracker.usage("b").unwrap().used, 5);
    assert!(!tracker.is_reduced_rate());
    store.set_failing(true);
    assert_eq!(tracker.flush(), Err(StoreError::Injected));
}

#[test]
fn a_failing_store_is_retried_with_a_doubling_back_off_up_to_30_seconds() {
    let (store, clock) = (MemoryStore::new(), ManualClock::new(JUNE_10));
    let tracker = build(&store, &clock, 1_000);
    store.set_failing(true);
    clock.advance(1_000);
    tracker.record_call("b", 1).unwrap();
    assert_eq!(store.syncs(), 2);
    let mut syncs = 2;
    for failure in 0..12u32 {
        let wait = (100u64 << failure).min(30_000);
        clock.advance(wait - 1);
        for _ in 0..3 {
            tracker.record_call("b", 1).unwrap();
        }
        assert_eq!(store.syncs(), syncs, "after failure {failure}: backing off");
        clock.advance(1);
        tracker.record_call("b", 1).unwrap();
        syncs += 1;
        assert_eq!(
            store.syncs(),
            syncs,
            "after failure {failure}: {wait} ms passed"
        );
    }
    // A flush does not wait for the back-off.
    assert_eq!(tracker.flush(), Err(StoreError::Injected));
    assert_eq!(store.syncs(), syncs + 1);
    // Once the store works, the next sync after the back-off succeeds (two store calls: the
    // first failed batch, resent as it was, then everything recorded since) and the interval
    // is back to normal.
    store.set_failing(false);
    clock.advance(30_000);
    tracker.record_call("b", 1).unwrap();
    assert_eq!(tracker.stats().consecutive_failures, 0);
    assert_eq!(store.syncs(), syncs + 3);
    assert_eq!(stored(&store, "b"), 1 + 12 * 4 + 1);
    clock.advance(999);
    tracker.record_call("b", 1).unwrap();
    assert_eq!(store.syncs(), syncs + 3);
    clock.advance(1);
    tracker.record_call("b", 1).unwrap();
    assert_eq!(store.syncs(), syncs + 4);
}

#[test]
fn reduced_rate_after_three_failures_until_five_successes() {
    let (store, clock) = (MemoryStore::new(), ManualClock::new(JUNE_10));
    let tracker = build(&store, &clock, 1_000);
    let events = Arc::new(Mutex::new(Vec::new()));
    let sink = Arc::clone(&events);
    tracker.on_store_event(move |e| sink.lock().unwrap().push(e.clone()));
    tracker.record_call("a", 24).unwrap();
    store.set_failing(true);
    // 30 s is past any back-off: every call below syncs.
    clock.advance(30_000);
    tracker.record_call("b", 1).unwrap();
    clock.advance(30_000);
    tracker.record_call("b", 1).unwrap();
    assert!(!tracker.is_reduced_rate());
    clock.advance(30_000);
    tracker.record_call("b", 1).unwrap();
    assert!(tracker.is_reduced_rate());
    assert!(tracker.stats().reduced_rate);
    assert_eq!(tracker.stats().save_failures, 3);
    // floor(100 x 0.25) = 25: one more call to "a" only.
    assert!(tracker.can_call("a").unwrap());
    tracker.try_record("a", 1).unwrap();
    assert!(!tracker.can_call("a").unwrap());
    assert!(tracker.try_record("a", 1).is_err());
    assert_eq!(tracker.usage("a").unwrap().used, 25);

    store.set_failing(false);
    for success in 1..=5 {
        clock.advance(1_000);
        tracker.record_call("b", 1).unwrap();
        assert_eq!(
            tracker.is_reduced_rate(),
            success < 5,
            "after {success} successes"
        );
    }
    assert!(tracker.can_call("a").unwrap());
    assert_eq!(stored(&store, "a"), 25);
    assert_eq!(stored(&store, "b"), 8);
    let events = events.lock().unwrap().clone();
    assert_eq!(events.len(), 2);
    assert!(matches!(
        events[0],
        StoreEvent::ReducedRateEntered {
            consecutive_failures: 3,
            ..
        }
    ));
    assert!(matches!(
        events[1],
        StoreEvent::ReducedRateLeft {
            consecutive_successes: 5,
            ..
        }
    ));
}

#[test]
fn a_failed_first_read_does_not_count_towards_reduced_rate() {
    let (store, clock) = (MemoryStore::new(), ManualClock::new(JUNE_10));
    store.fail_next(1);
    let tracker = build(&store, &clock, 1_000);
    let stats = tracker.stats();
    assert_eq!((stats.loads, stats.load_failures), (1, 1));
    assert_eq!((stats.save_failures, stats.consecutive_failures), (0, 0));
    assert!(!tracker.is_reduced_rate());
}

#[test]
fn require_store_fails_the_build_on_a_failed_first_read_and_changes_nothing() {
    let (store, clock) = (MemoryStore::new(), ManualClock::new(JUNE_10));
    let builder = || {
        QuotaTracker::builder(config())
            .clock(clock.clone())
            .store(store.clone())
            .require_store()
    };
    store.set_failing(true);
    let error = builder().build().expect_err("the store is down");
    assert!(
        matches!(error, quota_core::QuotaError::Store(StoreError::Injected)),
        "{error:?}"
    );
    // One read, no sync on the way out (the tracker never existed), nothing written.
    assert_eq!(store.syncs(), 1);
    assert_eq!(store.raw(), None);
    // The store is back: the same builder builds, and reads what others stored.
    store.set_failing(false);
    let other = build(&store, &clock, 60_000);
    other.record_call("a", 7).unwrap();
    other.flush().unwrap();
    let tracker = builder().build().unwrap();
    assert_eq!(tracker.usage("a").unwrap().used, 7);
    assert_eq!(tracker.stats().load_failures, 0);
    // A corrupt document fails it too; the bad data is moved aside, never dropped.
    store.set_raw(Some("{not json".into()));
    let error = builder().build().expect_err("corrupt");
    assert!(
        matches!(error, quota_core::QuotaError::Store(StoreError::Corrupt(_))),
        "{error:?}"
    );
    assert_eq!(store.moved_aside(), ["{not json"]);
}

#[test]
fn store_events_subscribed_on_the_builder_hear_the_first_read() {
    let (store, clock) = (MemoryStore::new(), ManualClock::new(JUNE_10));
    let events = Arc::new(Mutex::new(Vec::new()));
    let seen = Arc::clone(&events);
    store.fail_next(1);
    let tracker = QuotaTracker::builder(config())
        .clock(clock.clone())
        .store(store.clone())
        .sync_policy(policy(1_000))
        .on_store_event(move |event| seen.lock().unwrap().push(event.clone()))
        .build()
        .unwrap();
    assert_eq!(
        *events.lock().unwrap(),
        [StoreEvent::ReadFailed {
            at_ms: JUNE_10,
            error: StoreError::Injected.to_string()
        }]
    );
    // Subscribed for good: later events reach it too (three failed syncs: reduced rate).
    store.set_failing(true);
    for _ in 0..3 {
        clock.advance(60_000);
        tracker.record_call("a", 1).unwrap();
    }
    assert!(tracker.is_reduced_rate());
    let events = events.lock().unwrap();
    assert_eq!(events.len(), 2, "{events:?}");
    assert!(matches!(
        events[1],
        StoreEvent::ReducedRateEntered {
            consecutive_failures: 3,
            ..
        }
    ));
    // Each says what happened in one line.
    let lines: Vec<String> = events.iter().map(ToString::to_string).collect();
    let injected = StoreError::Injected.to_string();
    assert_eq!(
        lines,
        [
            format!("the first read of the store failed: {injected}"),
            format!("reduced rate on after 3 failed syncs in a row: {injected}"),
        ]
    );
    // A good first read is no event.
    let quiet = Arc::new(AtomicUsize::new(0));
    let count = Arc::clone(&quiet);
    store.set_failing(false);
    let _tracker = QuotaTracker::builder(config())
        .store(store.clone())
        .on_store_event(move |_| {
            count.fetch_add(1, Ordering::SeqCst);
        })
        .build()
        .unwrap();
    assert_eq!(quiet.load(Ordering::SeqCst), 0);
}

#[test]
fn invalid_sync_policy_is_refused() {
    let mut policy = SyncPolicy::default();
    policy.reduced_rate.fraction = 0.0;
    let result = QuotaTracker::builder(config()).sync_policy(policy).build();
    assert!(result.unwrap_err().to_string().contains("fraction"));
}

#[test]
fn a_lost_reply_is_resent_and_counted_once() {
    let (store, clock) = (MemoryStore::new(), ManualClock::new(JUNE_10));
    let tracker = build(&store, &clock, 60_000);
    tracker.record_call("a", 5).unwrap();
    store.lose_next_replies(2);
    assert!(matches!(tracker.flush(), Err(StoreError::Io(_))));
    assert_eq!(
        stored(&store, "a"),
        5,
        "applied although the reply was lost"
    );
    tracker.record_call("a", 1).unwrap();
    // The resend (its reply lost again) only holds the 5: the new call waits for a new batch.
    assert!(matches!(tracker.flush(), Err(StoreError::Io(_))));
    assert_eq!(stored(&store, "a"), 5);
    assert_eq!(tracker.usage("a").unwrap().used, 6);
    tracker.flush().unwrap();
    assert_eq!(stored(&store, "a"), 6, "the batch was applied once");
    assert_eq!(tracker.usage("a").unwrap().used, 6);
    let stats = tracker.stats();
    assert_eq!((stats.saves, stats.save_failures), (1, 2));
    // A second tracker sees exactly the calls made.
    assert_eq!(build(&store, &clock, 60_000).usage("a").unwrap().used, 6);
}

#[test]
fn a_failed_load_loses_nothing_deltas_only_add() {
    let (store, clock) = (MemoryStore::new(), ManualClock::new(JUNE_10));
    let first = build(&store, &clock, 1_000);
    first.record_call("a", 40).unwrap();
    first.flush().unwrap();
    drop(first);

    store.fail_next(1); // the restart's read fails: the tracker starts fresh
    let second = build(&store, &clock, 1_000);
    assert_eq!(second.stats().load_failures, 1);
    second.record_call("a", 2).unwrap();
    assert_eq!(second.usage("a").unwrap().used, 2);
    // Its first sync adds 2 to the stored 40 (it never writes counts over the store's) and
    // reads the total back; no second load is needed.
    second.flush().unwrap();
    assert_eq!(second.usage("a").unwrap().used, 42);
    assert_eq!(stored(&store, "a"), 42);
    let stats = second.stats();
    assert_eq!((stats.loads, stats.saves), (1, 1));
}

#[test]
fn dropping_a_tracker_syncs_what_it_recorded() {
    let (store, clock) = (MemoryStore::new(), ManualClock::new(JUNE_10));
    let tracker = build(&store, &clock, 3_600_000);
    tracker.record_call("a", 3).unwrap();
    tracker.record_call("b", 4).unwrap();
    assert_eq!(stored(&store, "a"), 0);
    drop(tracker);
    assert_eq!((stored(&store, "a"), stored(&store, "b")), (3, 4));
    // A drop whose sync fails loses only what was never synced, and does not panic.
    let tracker = build(&store, &clock, 3_600_000);
    tracker.record_call("a", 1).unwrap();
    store.set_failing(true);
    drop(tracker);
    store.set_failing(false);
    assert_eq!(stored(&store, "a"), 3);
}

#[test]
fn calls_after_a_roll_over_are_not_lost_when_an_old_batch_is_resent() {
    for lose_reply in [false, true] {
        let (store, clock) = (MemoryStore::new(), ManualClock::new(JUNE_10));
        let tracker = build(&store, &clock, 60_000);
        tracker.record_call("a", 5).unwrap();
        if lose_reply {
            store.lose_next_replies(1);
        } else {
            store.fail_next(1);
        }
        assert!(tracker.flush().is_err()); // June's 5 are cut into a batch that is resent
        clock.set(JULY_1);
        tracker.record_call("a", 3).unwrap();
        assert_eq!(tracker.usage("a").unwrap().used, 3);
        tracker.flush().unwrap(); // resends June's batch, then July's calls
        let state = store.state().unwrap();
        let (june, july) = (
            state.total(&month("a", JUNE_10)),
            state.total(&month("a", JULY_1)),
        );
        assert_eq!(
            (june, july),
            (5, 3),
            "lose_reply {lose_reply}: July's calls must reach the store"
        );
        drop(tracker);
        let restarted = build(&store, &clock, 60_000);
        assert_eq!(
            restarted.usage("a").unwrap().used,
            3,
            "lose_reply {lose_reply}"
        );
    }
}

/// A store that checks, from another thread, that no tracker lock is held while it syncs,
/// counts syncs in flight, and fails every other sync (half of them after applying it, as a
/// lost reply).
struct WatchingStore {
    inner: MemoryStore,
    tracker: OnceLock<Weak<QuotaTracker>>,
    in_flight: AtomicUsize,
    max_in_flight: AtomicUsize,
    calls: AtomicUsize,
    watched: AtomicUsize,
    flaky: AtomicBool,
    watch: AtomicBool,
    clock: ManualClock,
}

impl Store for WatchingStore {
    fn sync(&self, batch: &SyncBatch) -> Result<Vec<u64>, StoreError> {
        let now = self.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
        self.max_in_flight.fetch_max(now, Ordering::SeqCst);
        let tracker = self.tracker.get().and_then(Weak::upgrade);
        if let Some(tracker) = tracker.filter(|_| self.watch.load(Ordering::SeqCst)) {
            let (done, wait) = mpsc::channel();
            thread::spawn(move || {
                tracker.snapshot();
                tracker.record_call("b", 1).unwrap();
                let _ = done.send(());
            });
            wait.recv_timeout(Duration::from_secs(10))
                .expect("a sync must not hold any tracker lock");
            self.watched.fetch_add(1, Ordering::SeqCst);
        }
        // Let back-offs pass.
        self.clock.advance(100);
        let call = self.calls.fetch_add(1, Ordering::SeqCst);
        let flaky = self.flaky.load(Ordering::SeqCst);
        let result = match call % 4 {
            0 if flaky => Err(StoreError::Io("flaky".into())),
            2 if flaky => self
                .inner
                .sync(batch)
                .and(Err(StoreError::Io("reply lost".into()))),
            _ => self.inner.sync(batch),
        };
        self.in_flight.fetch_sub(1, Ordering::SeqCst);
        result
    }
}

#[test]
fn threads_record_while_saves_run_and_fail() {
    let clock = ManualClock::new(JUNE_10);
    let store = Arc::new(WatchingStore {
        inner: MemoryStore::new(),
        tracker: OnceLock::new(),
        in_flight: AtomicUsize::new(0),
        max_in_flight: AtomicUsize::new(0),
        calls: AtomicUsize::new(0),
        watched: AtomicUsize::new(0),
        flaky: AtomicBool::new(true),
        watch: AtomicBool::new(true),
        clock: clock.clone(),
    });
    let config = TrackerConfig::new([
        ServiceConfig::new("a", 100_000_000, Period::Month),
        ServiceConfig::new("b", 100_000_000, Period::Month),
    ]);
    let tracker = Arc::new(
        QuotaTracker::builder(config)
            .clock(clock.clone())
            .store(Arc::clone(&store))
            .sync_policy(policy(0)) // every call is a sync trigger (outside a back-off)
            .build()
            .unwrap(),
    );
    store.tracker.set(Arc::downgrade(&tracker)).unwrap();
    thread::scope(|scope| {
        for worker in 0..4 {
            let tracker = &tracker;
            scope.spawn(move || {
                for _ in 0..500 {
                    tracker
                        .record_call(if worker % 2 == 0 { "a" } else { "b" }, 1)
                        .unwrap();
                }
            });
        }
    });
    let calls = store.calls.load(Ordering::SeqCst) as u64;
    let watched = store.watched.load(Ordering::SeqCst) as u64;
    let stats = tracker.stats();
    assert_eq!(store.max_in_flight.load(Ordering::SeqCst), 1);
    assert!(stats.coalesced_saves > 0, "{stats:?}");
    assert!(stats.save_failures > 0, "{stats:?}");
    // One sync is one store call, or two when it first resends a batch whose reply was lost.
    let syncs = stats.loads + stats.saves + stats.save_failures;
    assert!(syncs <= calls && calls <= 2 * syncs, "{syncs} {calls}");
    // Each watched sync's thread recorded one call to "b".
    assert_eq!(tracker.usage("a").unwrap().used, 1_000);
    assert_eq!(tracker.usage("b").unwrap().used, 1_000 + watched);
    // Once the store works again, a flush stores every call, each once.
    store.flaky.store(false, Ordering::SeqCst);
    store.watch.store(false, Ordering::SeqCst);
    tracker.flush().unwrap();
    assert_eq!(stored(&store.inner, "a"), 1_000);
    assert_eq!(stored(&store.inner, "b"), 1_000 + watched);
    assert_eq!(tracker.usage("b").unwrap().used, 1_000 + watched);
}

/// A store whose syncs wait at a gate while it is closed.
#[derive(Default)]
struct GatedStore {
    inner: MemoryStore,
    closed: Mutex<bool>,
    opened: Condvar,
    waiting: AtomicUsize,
}

impl Store for GatedStore {
    fn sync(&self, batch: &SyncBatch) -> Result<Vec<u64>, StoreError> {
        self.waiting.fetch_add(1, Ordering::SeqCst);
        let closed = self.closed.lock().unwrap();
        drop(self.opened.wait_while(closed, |closed| *closed).unwrap());
        self.waiting.fetch_sub(1, Ordering::SeqCst);
        self.inner.sync(batch)
    }
}

#[test]
fn flush_waits_for_a_sync_in_flight_then_syncs_its_own_calls() {
    let store = Arc::new(GatedStore::default());
    let tracker = QuotaTracker::builder(config())
        .clock(ManualClock::new(JUNE_10))
        .store(Arc::clone(&store))
        .sync_policy(policy(3_600_000))
        .build()
        .unwrap();
    tracker.record_call("a", 1).unwrap();
    *store.closed.lock().unwrap() = true;
    let second_done = AtomicBool::new(false);
    thread::scope(|scope| {
        let first = scope.spawn(|| tracker.flush());
        while store.waiting.load(Ordering::SeqCst) == 0 {
            thread::yield_now();
        }
        // The first flush is in the store, holding its batch (the 1 call).
        tracker.record_call("a", 2).unwrap();
        let second = scope.spawn(|| {
            let result = tracker.flush();
            second_done.store(true, Ordering::SeqCst);
            result
        });
        thread::sleep(Duration::from_millis(100));
        assert!(
            !second_done.load(Ordering::SeqCst),
            "flush returned while a sync was in flight"
        );
        assert_eq!(
            store.waiting.load(Ordering::SeqCst),
            1,
            "one sync at a time"
        );
        *store.closed.lock().unwrap() = false;
        store.opened.notify_all();
        first.join().unwrap().unwrap();
        second.join().unwrap().unwrap();
    });
    assert_eq!(stored(&store.inner, "a"), 3);
    assert_eq!(tracker.usage("a").unwrap().used, 3);
}

#[test]
fn file_store_round_trip_and_corrupt_files_are_moved_aside() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("quota.json");
    let store = FileStore::new(&path);
    assert_eq!(store.state(), Ok(StoredState::new()));
    let clock = ManualClock::new(JUNE_10);
    let tracker = QuotaTracker::builder(config())
        .clock(clock.clone())
        .store(store.clone())
        .build()
        .unwrap();
    assert!(!path.exists(), "a read-only sync writes nothing");
    tracker.record_call("a", 9).unwrap();
    tracker.flush().unwrap();
    assert_eq!(june(store.state().unwrap(), "a"), 9);

    let good = std::fs::read_to_string(&path).unwrap();
    assert!(good.contains("\"version\": 2"), "{good}");
    let bad_contents: [Vec<u8>; 5] = [
        Vec::new(),
        good.as_bytes()[..good.len() - 7].to_vec(),
        good.replacen("\"version\": 2", "\"version\": 7", 1)
            .into_bytes(),
        "\u{0}\u{1}garbage".as_bytes().to_vec(),
        vec![0xff, 0xfe, b'{'],
    ];
    for bad in bad_contents {
        std::fs::write(&path, &bad).unwrap();
        // Reading does not move it.
        assert!(matches!(store.state(), Err(StoreError::Corrupt(_))));
        assert!(path.exists());
        // A tracker on the bad file moves it aside, reports it, and starts fresh.
        let fresh = QuotaTracker::builder(config())
            .clock(clock.clone())
            .store(store.clone())
            .build()
            .unwrap();
        let stats = fresh.stats();
        assert_eq!((stats.loads, stats.load_failures), (1, 1));
        let message = stats.last_error.unwrap();
        assert!(message.contains("moved aside"), "{message}");
        assert!(!path.exists(), "the bad file is moved, not left in place");
        let aside: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.to_string_lossy().contains(".corrupt-"))
            .collect();
        assert_eq!(aside.len(), 1, "{aside:?}");
        assert_eq!(
            std::fs::read(&aside[0]).unwrap(),
            bad,
            "the bad bytes are kept"
        );
        assert_eq!(fresh.snapshot().total_used(), 0);
        fresh.record_call("b", 4).unwrap();
        fresh.flush().unwrap();
        let state = store.state().unwrap();
        assert_eq!((june(state.clone(), "a"), june(state, "b")), (0, 4));
        drop(fresh);
        std::fs::remove_file(&aside[0]).unwrap();
    }
}

#[test]
fn file_store_keeps_entries_it_skips_and_the_file_permissions() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("quota.json");
    let store = FileStore::new(&path);
    let clock = ManualClock::new(JUNE_10);
    let build = || file_tracker(&store, &clock);
    let tracker = build();
    tracker.record_call("a", 9).unwrap();
    tracker.record_call("b", 5).unwrap();
    tracker.flush().unwrap();
    drop(tracker);
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
    }
    // Someone wrote b's total as a float: that entry does not parse and is skipped.
    let good = std::fs::read_to_string(&path).unwrap();
    let edited = good.replacen("\"total\": 5", "\"total\": 5.0", 1);
    assert_ne!(edited, good, "{good}");
    std::fs::write(&path, &edited).unwrap();
    assert_eq!(store.state().unwrap().skipped().len(), 1);
    let tracker = build();
    assert_eq!(tracker.usage("a").unwrap().used, 9);
    // Reads alone copy nothing.
    let asides = || -> Vec<std::path::PathBuf> {
        std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.to_string_lossy().contains(".skipped-"))
            .collect()
    };
    assert!(asides().is_empty());
    // The first write keeps the file as it was beside it, then drops the bad entry.
    tracker.record_call("a", 1).unwrap();
    tracker.flush().unwrap();
    let kept = asides();
    assert_eq!(kept.len(), 1, "{kept:?}");
    assert_eq!(std::fs::read_to_string(&kept[0]).unwrap(), edited);
    assert!(store.state().unwrap().skipped().is_empty());
    assert_eq!(june(store.state().unwrap(), "a"), 10);
    // Later writes copy nothing more.
    tracker.record_call("a", 1).unwrap();
    tracker.flush().unwrap();
    assert_eq!(asides().len(), 1);
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600, "the file's permissions are kept");
    }
}

#[cfg(unix)]
#[test]
fn file_store_copies_skipped_entries_to_a_new_file_never_through_a_planted_link() {
    let dir = tempfile::tempdir().unwrap();
    let outside = tempfile::tempdir().unwrap();
    let path = dir.path().join("quota.json");
    let store = FileStore::new(&path);
    let clock = ManualClock::new(JUNE_10);
    let tracker = file_tracker(&store, &clock);
    tracker.record_call("a", 9).unwrap();
    tracker.record_call("b", 5).unwrap();
    tracker.flush().unwrap();
    let good = std::fs::read_to_string(&path).unwrap();
    std::fs::write(&path, good.replacen("\"total\": 5", "\"total\": 5.0", 1)).unwrap();
    // Dangling links under every name the copy could take in the next 3 s.
    let now = quota_core::Clock::now_ms(&quota_core::SystemClock);
    for ms in now..now + 3_000 {
        let name = dir.path().join(format!("quota.json.skipped-{ms}"));
        std::os::unix::fs::symlink(outside.path().join(format!("planted-{ms}")), name).unwrap();
    }
    tracker.record_call("a", 1).unwrap();
    tracker.flush().unwrap();
    assert_eq!(
        std::fs::read_dir(outside.path()).unwrap().count(),
        0,
        "nothing was written through a link"
    );
    let copies: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| std::fs::symlink_metadata(p).unwrap().is_file())
        .filter(|p| p.to_string_lossy().contains(".skipped-"))
        .collect();
    assert_eq!(copies.len(), 1, "{copies:?}");
    assert!(std::fs::read_to_string(&copies[0]).unwrap().contains("5.0"));
}

#[test]
fn file_store_converts_a_version_1_file_once() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("quota.json");
    std::fs::write(&path, version_1(30)).unwrap();
    let store = FileStore::new(&path);
    let clock = ManualClock::new(JUNE_10);
    let build = || file_tracker(&store, &clock);
    let first = build();
    assert_eq!(first.stats().load_failures, 0);
    assert_eq!(first.usage("a").unwrap().used, 30);
    let text = std::fs::read_to_string(&path).unwrap();
    assert!(text.contains("\"version\": 2"), "written back: {text}");
    let second = build();
    assert_eq!(second.usage("a").unwrap().used, 30, "converted once");
    first.record_call("a", 1).unwrap();
    first.flush().unwrap();
    second.flush().unwrap();
    assert_eq!(second.usage("a").unwrap().used, 31);
}

#[test]
fn two_file_stores_on_one_path_share_counts() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("quota.json");
    let clock = ManualClock::new(JUNE_10);
    let build = || {
        QuotaTracker::builder(config())
            .clock(clock.clone())
            .store(FileStore::new(&path))
            .build()
            .unwrap()
    };
    let (one, two) = (build(), build());
    thread::scope(|scope| {
        for tracker in [&one, &two] {
            scope.spawn(move || {
                for _ in 0..50 {
                    tracker.record_call("b", 1).unwrap();
                    tracker.flush().unwrap();
                }
            });
        }
    });
    one.flush().unwrap();
    assert_eq!(one.usage("b").unwrap().used, 100);
    assert_eq!(june(FileStore::new(&path).state().unwrap(), "b"), 100);
}

#[test]
fn restoring_past_a_threshold_leaves_later_transitions_deliverable() {
    let (store, clock) = (MemoryStore::new(), ManualClock::new(JUNE_10));
    let first = build(&store, &clock, 1_000);
    first.record_call("a", 60).unwrap(); // Warning
    first.flush().unwrap();
    drop(first);
    // Run on a thread so a stuck delivery fails the test instead of hanging it.
    let (done, wait) = mpsc::channel();
    thread::spawn(move || {
        let restored = build(&store, &clock, 1_000);
        let seen = Arc::new(Mutex::new(Vec::new()));
        let sink = Arc::clone(&seen);
        restored.on_transition(move |t| sink.lock().unwrap().push(t.to));
        restored.record_call("a", 20).unwrap(); // 80: Critical
        let _ = done.send(seen.lock().unwrap().clone());
    });
    let seen = wait
        .recv_timeout(Duration::from_secs(30))
        .expect("the transition after a restore was delivered");
    assert_eq!(seen, vec![Level::Critical]);
}

/// Was a bug: a read (`snapshot`, and so the metrics' refresh) that moved a window did not make
/// the next call sync, as a recording call that moves it does, so this tracker went on without
/// the other instances' calls of the new window until the interval passed.
#[test]
fn a_window_moved_by_a_snapshot_makes_the_next_call_sync() {
    let store = MemoryStore::new();
    let clock = ManualClock::new(JUNE_10);
    // No interval sync falls due in this test.
    let year = 365 * 86_400_000;
    let other = build(&store, &clock, year);
    let tracker = build(&store, &clock, year);
    clock.set(JULY_1 + 1_000);
    assert_eq!(tracker.snapshot().services()[0].used, 0); // the new month, read here
    other.record_call("a", 5).unwrap();
    other.flush().unwrap();
    // The next call syncs (after its step), and learns the other instance's 5.
    tracker.record_call("a", 1).unwrap();
    assert_eq!(tracker.usage("a").unwrap().used, 6);
}
