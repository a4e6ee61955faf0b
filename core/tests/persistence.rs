//! Persistence: every fault path, restoring, write-behind triggers, reduced-rate mode, and
//! saves that never run inside a lock nor lose a call.

use quota_core::{
    FileStore, Level, ManualClock, MemoryStore, Period, PersistedState, QuotaTracker,
    ServiceConfig, Store, StoreError, StoreEvent, SyncPolicy, TrackerConfig,
};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{mpsc, Arc, Mutex, OnceLock, Weak};
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

fn saved_used(store: &impl Store, name: &str) -> u64 {
    let state = store.load().unwrap().expect("something was saved");
    state.services.iter().find(|s| s.name == name).unwrap().used
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
    assert_eq!(restarted.stats().loads, 1);
    // Next month the saved window is over: counts start at 0.
    clock.set(JULY_1);
    let next_month = build(&store, &clock, 60_000);
    assert_eq!(next_month.snapshot().total_used(), 0);
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
    let wrong_version = valid.replacen("\"version\": 1", "\"version\": 2", 1);
    let truncated = valid[..valid.len() / 2].to_owned();
    type Inject = Box<dyn Fn(&MemoryStore)>;
    let cases: [(&str, Inject, &str); 6] = [
        ("load fails", Box::new(|s| s.fail_next(1)), "injected"),
        (
            "corrupt JSON",
            Box::new(|s| s.set_raw(Some("{not json".into()))),
            "not valid JSON",
        ),
        (
            "wrong version",
            Box::new(move |s| s.set_raw(Some(wrong_version.clone()))),
            "unsupported version 2",
        ),
        (
            "truncated",
            Box::new(move |s| s.set_raw(Some(truncated.clone()))),
            "not valid JSON",
        ),
        (
            "empty",
            Box::new(|s| s.set_raw(Some(String::new()))),
            "empty",
        ),
        (
            "no version",
            Box::new(|s| s.set_raw(Some("{\"services\": []}".into()))),
            "no \"version\"",
        ),
    ];
    for (name, inject, message) in cases {
        let (store, clock) = (MemoryStore::new(), ManualClock::new(JUNE_10));
        inject(&store);
        let tracker = build(&store, &clock, 60_000);
        let stats = tracker.stats();
        assert_eq!((stats.loads, stats.load_failures), (1, 1), "{name}");
        let error = stats.last_error.unwrap();
        assert!(error.contains(message), "{name}: {error}");
        assert_eq!(tracker.snapshot().total_used(), 0, "{name}");
        // It works and saves over the bad data.
        tracker.record_call("a", 2).unwrap();
        tracker.flush().unwrap();
        assert_eq!(saved_used(&store, "a"), 2, "{name}");
    }
}

#[test]
fn saves_wait_for_the_interval_then_write_behind() {
    let (store, clock) = (MemoryStore::new(), ManualClock::new(JUNE_10));
    let tracker = build(&store, &clock, 1_000);
    tracker.record_call("b", 1).unwrap();
    assert_eq!(store.raw(), None, "no save before the interval");
    clock.advance(1_000);
    tracker.record_call("b", 1).unwrap();
    assert_eq!(saved_used(&store, "b"), 2);
    assert_eq!(tracker.stats().saves, 1);
    // Nothing changed: an interval trigger writes nothing.
    clock.advance(1_000);
    tracker.try_record("a", 1000).unwrap_err();
    assert_eq!(tracker.stats().saves, 1);
}

#[test]
fn entering_critical_forces_a_save() {
    let (store, clock) = (MemoryStore::new(), ManualClock::new(JUNE_10));
    let tracker = build(&store, &clock, 3_600_000);
    tracker.record_call("a", 79).unwrap();
    assert_eq!(store.raw(), None);
    assert_eq!(
        tracker.record_call("a", 1).unwrap().usage.level(),
        Level::Critical
    );
    assert_eq!(saved_used(&store, "a"), 80);
    let stats = tracker.stats();
    assert_eq!((stats.forced_saves, stats.saves), (1, 1));
}

#[test]
fn failed_saves_are_retried_and_lose_nothing() {
    let (store, clock) = (MemoryStore::new(), ManualClock::new(JUNE_10));
    let tracker = build(&store, &clock, 1_000);
    store.fail_next(2);
    clock.advance(1_000);
    for _ in 0..3 {
        tracker.record_call("b", 1).unwrap();
    }
    // Two failures, then the third call's retry succeeds with everything recorded so far.
    let stats = tracker.stats();
    assert_eq!((stats.save_failures, stats.saves), (2, 1));
    assert_eq!(stats.last_error.as_deref(), Some("injected store failure"));
    assert_eq!(saved_used(&store, "b"), 3);
    assert!(!tracker.is_reduced_rate());
    store.set_failing(true);
    assert_eq!(tracker.flush(), Err(StoreError::Injected));
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
    clock.advance(1_000);
    tracker.record_call("b", 1).unwrap();
    tracker.record_call("b", 1).unwrap();
    assert!(!tracker.is_reduced_rate());
    tracker.record_call("b", 1).unwrap();
    assert!(tracker.is_reduced_rate());
    assert!(tracker.stats().reduced_rate);
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
fn invalid_sync_policy_is_refused() {
    let mut policy = SyncPolicy::default();
    policy.reduced_rate.fraction = 0.0;
    let result = QuotaTracker::builder(config()).sync_policy(policy).build();
    assert!(result.unwrap_err().to_string().contains("fraction"));
}

/// A store that checks, from another thread, that no tracker lock is held while it saves,
/// counts saves in flight, and can fail every other save.
struct WatchingStore {
    inner: MemoryStore,
    tracker: OnceLock<Weak<QuotaTracker>>,
    in_flight: AtomicUsize,
    max_in_flight: AtomicUsize,
    calls: AtomicUsize,
    flaky: AtomicBool,
    watch: AtomicBool,
}

impl Store for WatchingStore {
    fn load(&self) -> Result<Option<PersistedState>, StoreError> {
        self.inner.load()
    }

    fn save(&self, state: &PersistedState) -> Result<(), StoreError> {
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
                .expect("a save must not hold any tracker lock");
        }
        let call = self.calls.fetch_add(1, Ordering::SeqCst);
        let result = if call % 2 == 0 && self.flaky.load(Ordering::SeqCst) {
            Err(StoreError::Io("flaky".into()))
        } else {
            self.inner.save(state)
        };
        self.in_flight.fetch_sub(1, Ordering::SeqCst);
        result
    }
}

#[test]
fn threads_record_while_saves_run_and_fail() {
    let store = Arc::new(WatchingStore {
        inner: MemoryStore::new(),
        tracker: OnceLock::new(),
        in_flight: AtomicUsize::new(0),
        max_in_flight: AtomicUsize::new(0),
        calls: AtomicUsize::new(0),
        flaky: AtomicBool::new(true),
        watch: AtomicBool::new(true),
    });
    let config = TrackerConfig::new([
        ServiceConfig::new("a", 100_000_000, Period::Month),
        ServiceConfig::new("b", 100_000_000, Period::Month),
    ]);
    let tracker = Arc::new(
        QuotaTracker::builder(config)
            .clock(ManualClock::new(JUNE_10))
            .store(Arc::clone(&store))
            .sync_policy(policy(0)) // every call is a save trigger
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
    let saves_by_store = store.calls.load(Ordering::SeqCst) as u64;
    let stats = tracker.stats();
    assert_eq!(store.max_in_flight.load(Ordering::SeqCst), 1);
    assert!(stats.coalesced_saves > 0, "{stats:?}");
    assert_eq!(stats.saves + stats.save_failures, saves_by_store);
    // Each save's watcher thread recorded one call to "b".
    assert_eq!(tracker.usage("a").unwrap().used, 1_000);
    assert_eq!(tracker.usage("b").unwrap().used, 1_000 + saves_by_store);
    // Once the store works again, a flush writes every call.
    store.flaky.store(false, Ordering::SeqCst);
    store.watch.store(false, Ordering::SeqCst);
    tracker.flush().unwrap();
    assert_eq!(saved_used(&store.inner, "a"), 1_000);
    assert_eq!(saved_used(&store.inner, "b"), 1_000 + saves_by_store);
}

#[test]
fn file_store_round_trip_and_corrupt_files_are_moved_aside() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("quota.json");
    let store = FileStore::new(&path);
    assert_eq!(store.load(), Ok(None));
    let clock = ManualClock::new(JUNE_10);
    let tracker = QuotaTracker::builder(config())
        .clock(clock.clone())
        .store(store.clone())
        .build()
        .unwrap();
    tracker.record_call("a", 9).unwrap();
    tracker.flush().unwrap();
    assert_eq!(saved_used(&store, "a"), 9);

    let good = std::fs::read_to_string(&path).unwrap();
    let bad_contents = [
        String::new(),
        good[..good.len() - 7].to_owned(),
        good.replacen("\"version\": 1", "\"version\": 7", 1),
        "\u{0}\u{1}garbage".to_owned(),
    ];
    for bad in bad_contents {
        std::fs::write(&path, &bad).unwrap();
        let error = store.load().unwrap_err();
        let StoreError::Corrupt(message) = &error else {
            panic!("expected Corrupt, got {error:?}");
        };
        assert!(message.contains("moved aside"), "{message}");
        assert!(!path.exists(), "the bad file is moved, not left in place");
        let aside: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.to_string_lossy().contains(".corrupt-"))
            .collect();
        let kept = aside
            .iter()
            .any(|p| std::fs::read_to_string(p).unwrap() == bad);
        assert!(kept, "the bad bytes are kept in {aside:?}");
        // A tracker on the bad file starts fresh, reports it, and saves a fresh file.
        std::fs::write(&path, &bad).unwrap();
        let fresh = QuotaTracker::builder(config())
            .clock(clock.clone())
            .store(store.clone())
            .build()
            .unwrap();
        assert_eq!(fresh.stats().load_failures, 1);
        assert_eq!(fresh.snapshot().total_used(), 0);
        fresh.record_call("b", 4).unwrap();
        fresh.flush().unwrap();
        assert_eq!(saved_used(&store, "b"), 4);
        for file in aside {
            std::fs::remove_file(file).unwrap();
        }
    }
}

#[test]
fn a_load_that_failed_is_retried_before_the_first_save_and_merged() {
    let (store, clock) = (MemoryStore::new(), ManualClock::new(JUNE_10));
    let first = build(&store, &clock, 1_000);
    first.record_call("a", 40).unwrap();
    first.flush().unwrap();
    drop(first);

    store.fail_next(1); // the restart's load fails: the tracker starts fresh
    let second = build(&store, &clock, 1_000);
    assert_eq!(second.stats().load_failures, 1);
    second.record_call("a", 2).unwrap();
    assert_eq!(second.usage("a").unwrap().used, 2);
    // The first save reads the store again and merges instead of overwriting 40 with 2.
    second.flush().unwrap();
    assert_eq!(second.usage("a").unwrap().used, 42);
    assert_eq!(saved_used(&store, "a"), 42);
    assert_eq!(second.stats().loads, 2);
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
