//! Hostile review of `sync_in_background`. The tests run one at a time (`SERIAL`): CPU is
//! measured over every `quota-syncer` thread of the process. Each `f` test names a finding of
//! the review, fixed since (F3 documented); the `h` tests are what held.

use quota_core::{
    ManualClock, MemoryStore, Period, QuotaTracker, ServiceConfig, Store, StoreError, StoreEvent,
    SyncBatch, SyncPolicy, TrackerConfig,
};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{mpsc, Arc, Barrier, Condvar, Mutex};
use std::time::{Duration, Instant};

/// Held by every test: no other test's syncer threads run while one measures CPU.
static SERIAL: Mutex<()> = Mutex::new(());

fn serial() -> std::sync::MutexGuard<'static, ()> {
    SERIAL
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

fn config() -> TrackerConfig {
    TrackerConfig::new([ServiceConfig::new("api", 1_000, Period::Hour)])
}

fn big() -> TrackerConfig {
    TrackerConfig::new([ServiceConfig::new("api", 1_000_000_000, Period::Hour)])
}

fn policy(interval_ms: u64) -> SyncPolicy {
    SyncPolicy {
        interval_ms,
        ..SyncPolicy::default()
    }
}

fn stored(store: &MemoryStore, config: TrackerConfig) -> u64 {
    QuotaTracker::builder(config)
        .store(store.clone())
        .build()
        .unwrap()
        .usage("api")
        .unwrap()
        .used
}

/// CPU ticks (1/100 s) used so far by every thread named `quota-syncer`.
fn syncer_ticks() -> u64 {
    std::fs::read_dir("/proc/self/task")
        .unwrap()
        .filter_map(|task| {
            let path = task.ok()?.path();
            let comm = std::fs::read_to_string(path.join("comm")).ok()?;
            if comm.trim() != "quota-syncer" {
                return None;
            }
            let stat = std::fs::read_to_string(path.join("stat")).ok()?;
            let rest = &stat[stat.rfind(')')? + 2..];
            let fields: Vec<&str> = rest.split(' ').collect();
            // utime and stime: fields 14 and 15 of stat, 12 and 13 after the comm.
            Some(fields[11].parse::<u64>().ok()? + fields[12].parse::<u64>().ok()?)
        })
        .sum()
}

/// A store whose syncs on threads named `gated_on` (any thread when `None`), after the
/// build's read, wait at a gate.
struct Gated {
    inner: MemoryStore,
    gated_on: Option<&'static str>,
    open: Mutex<bool>,
    opened: Condvar,
    syncs: AtomicU64,
    entered: AtomicBool,
}

impl Gated {
    fn new(gated_on: Option<&'static str>) -> Self {
        Gated {
            inner: MemoryStore::new(),
            gated_on,
            open: Mutex::new(false),
            opened: Condvar::new(),
            syncs: AtomicU64::new(0),
            entered: AtomicBool::new(false),
        }
    }
    fn open(&self) {
        *self.open.lock().unwrap() = true;
        self.opened.notify_all();
    }
    fn wait_entered(&self) {
        let deadline = Instant::now() + Duration::from_secs(5);
        while !self.entered.load(Ordering::SeqCst) {
            assert!(Instant::now() < deadline, "the store was never entered");
            std::thread::sleep(Duration::from_millis(2));
        }
    }
}

impl Store for Gated {
    fn sync(&self, batch: &SyncBatch) -> Result<Vec<u64>, StoreError> {
        let first = self.syncs.fetch_add(1, Ordering::SeqCst) == 0;
        let name = std::thread::current().name().unwrap_or("").to_owned();
        if !first && self.gated_on.is_none_or(|gated| gated == name) {
            self.entered.store(true, Ordering::SeqCst);
            let mut open = self.open.lock().unwrap();
            while !*open {
                open = self.opened.wait(open).unwrap();
            }
        }
        self.inner.sync(batch)
    }
}

// ---------------------------------------------------------------- findings

/// F1: the syncer ends when its Weak dies, but `running` stays set in the tracker: a tracker
/// taken out of its Arc (try_unwrap / into_inner, then re-wrapped) never syncs again, and
/// cannot restart the syncer. Its counts stay local; other instances' are never read.
#[test]
fn f1_a_tracker_taken_out_of_its_arc_syncs_again_and_may_restart_the_syncer() {
    let _serial = serial();
    let store = MemoryStore::new();
    let tracker = Arc::new(
        QuotaTracker::builder(config())
            .store(store.clone())
            .sync_policy(policy(20))
            .build()
            .unwrap(),
    );
    assert!(tracker.sync_in_background().unwrap());
    let mut arc = tracker;
    let owned = loop {
        match Arc::try_unwrap(arc) {
            Ok(owned) => break owned,
            Err(back) => {
                arc = back;
                std::thread::sleep(Duration::from_millis(1));
            }
        }
    };
    let tracker = Arc::new(owned);
    std::thread::sleep(Duration::from_millis(100)); // the old thread's Weak is dead: it ended
    let restarted = tracker.sync_in_background().unwrap();
    let saves = tracker.stats().saves;
    for _ in 0..20 {
        tracker.record_call("api", 1).unwrap();
        std::thread::sleep(Duration::from_millis(20));
    }
    std::thread::sleep(Duration::from_millis(200));
    let synced = tracker.stats().saves - saves;
    assert!(
        synced > 0,
        "no sync in 600 ms at a 20 ms interval (restart: {restarted}); store holds {} of 20",
        stored(&store, config())
    );
}

/// F2: while a `flush` on another thread holds the save lock, every call that finds the
/// sync due re-wakes the syncer (it clears `woken` before finding the lock taken), and the
/// syncer loops without sleeping: one core burnt, one mutex + futex wake per call.
#[test]
fn f2_a_flush_in_flight_does_not_make_the_syncer_spin_with_the_calls() {
    let _serial = serial();
    let store = Arc::new(Gated::new(Some("flusher")));
    let tracker = Arc::new(
        QuotaTracker::builder(big())
            .store(Arc::clone(&store))
            .sync_policy(policy(20))
            .build()
            .unwrap(),
    );
    assert!(tracker.sync_in_background().unwrap());
    let flushing = Arc::clone(&tracker);
    let flusher = std::thread::Builder::new()
        .name("flusher".into())
        .spawn(move || flushing.flush())
        .unwrap();
    store.wait_entered();
    std::thread::sleep(Duration::from_millis(30)); // a sync is due
    let (ticks, coalesced) = (syncer_ticks(), tracker.stats().coalesced_saves);
    let started = Instant::now();
    let mut calls = 0u64;
    while started.elapsed() < Duration::from_secs(1) {
        tracker.record_call("api", 1).unwrap();
        calls += 1;
    }
    let cpu_ms = (syncer_ticks() - ticks) * 10;
    let looks = tracker.stats().coalesced_saves - coalesced;
    store.open();
    flusher.join().unwrap().unwrap();
    assert!(
        cpu_ms < 200 && looks < 200,
        "syncer used {cpu_ms} ms of CPU in 1 s and looked {looks} times ({calls} calls)"
    );
}

/// F3 (documented, not changed): the last Arc dropped while the syncer is in a sync: the drop
/// returns at once, and the final flush runs on `quota-syncer` when that sync ends; nothing
/// is lost unless the process exits first (the docs ask for `flush()` before exiting, which
/// sends everything whatever the syncer does).
#[test]
fn f3_the_last_arc_dropped_during_a_sync_flushes_when_that_sync_ends() {
    let _serial = serial();
    let store = Arc::new(Gated::new(None));
    let tracker = Arc::new(
        QuotaTracker::builder(config())
            .store(Arc::clone(&store))
            .sync_policy(policy(20))
            .build()
            .unwrap(),
    );
    assert!(tracker.sync_in_background().unwrap());
    tracker.record_call("api", 5).unwrap();
    store.wait_entered(); // the syncer is in the store, holding the tracker
    tracker.record_call("api", 7).unwrap();
    drop(tracker);
    store.open();
    let deadline = Instant::now() + Duration::from_secs(10);
    while stored(&store.inner, config()) != 12 {
        assert!(Instant::now() < deadline, "the final flush never came");
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// F3': `flush()` before the last drop sends everything, even while the syncer is in a sync.
#[test]
fn f3_a_flush_before_the_drop_sends_everything() {
    let _serial = serial();
    let store = Arc::new(Gated::new(None));
    let tracker = Arc::new(
        QuotaTracker::builder(config())
            .store(Arc::clone(&store))
            .sync_policy(policy(20))
            .build()
            .unwrap(),
    );
    assert!(tracker.sync_in_background().unwrap());
    tracker.record_call("api", 5).unwrap();
    store.wait_entered();
    tracker.record_call("api", 7).unwrap();
    let opener = {
        let store = Arc::clone(&store);
        std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(50));
            store.open();
        })
    };
    tracker.flush().unwrap();
    assert_eq!(stored(&store.inner, config()), 12);
    drop(tracker);
    opener.join().unwrap();
}

/// F4: an observer that blocks, delivered on the syncer thread, stops every sync of the
/// tracker (no caller syncs any more): counts are not sent, other instances' not read.
#[test]
fn f4_an_observer_blocking_the_syncer_thread_does_not_stop_syncs() {
    let _serial = serial();
    let store = MemoryStore::new();
    let build = || {
        Arc::new(
            QuotaTracker::builder(config())
                .store(store.clone())
                .sync_policy(policy(20))
                .build()
                .unwrap(),
        )
    };
    let (a, b) = (build(), build());
    let (release, released) = mpsc::channel::<()>();
    let released = Mutex::new(released);
    let blocked = Arc::new(AtomicBool::new(false));
    let blocking = Arc::clone(&blocked);
    let _ = a.on_transition(move |_| {
        if std::thread::current().name() == Some("quota-syncer") {
            blocking.store(true, Ordering::SeqCst);
            // A slow webhook: 3 s.
            let _ = released
                .lock()
                .unwrap()
                .recv_timeout(Duration::from_secs(3));
        }
    });
    assert!(a.sync_in_background().unwrap());
    b.record_call("api", 850).unwrap();
    b.flush().unwrap();
    let deadline = Instant::now() + Duration::from_secs(5);
    while !blocked.load(Ordering::SeqCst) {
        assert!(Instant::now() < deadline, "no transition on the syncer");
        std::thread::sleep(Duration::from_millis(5));
    }
    for _ in 0..10 {
        a.record_call("api", 1).unwrap();
        std::thread::sleep(Duration::from_millis(50));
    }
    let seen = stored(&store, config());
    let _ = release.send(());
    assert_eq!(
        seen, 860,
        "a's 10 calls never reached the store in 500 ms (20 ms interval)"
    );
}

// ---------------------------------------------------------------- what held

#[test]
fn h1_many_threads_start_one_syncer() {
    let _serial = serial();
    let tracker = Arc::new(
        QuotaTracker::builder(config())
            .store(MemoryStore::new())
            .sync_policy(policy(20))
            .build()
            .unwrap(),
    );
    let barrier = Arc::new(Barrier::new(16));
    let started = Arc::new(AtomicUsize::new(0));
    let threads: Vec<_> = (0..16)
        .map(|_| {
            let (t, b, s) = (
                Arc::clone(&tracker),
                Arc::clone(&barrier),
                Arc::clone(&started),
            );
            std::thread::spawn(move || {
                b.wait();
                if t.sync_in_background().unwrap() {
                    s.fetch_add(1, Ordering::SeqCst);
                }
            })
        })
        .collect();
    threads.into_iter().for_each(|t| t.join().unwrap());
    assert_eq!(started.load(Ordering::SeqCst), 1);
}

#[test]
fn h2_observers_on_the_syncer_call_back_and_the_last_arc_drops_there() {
    let _serial = serial();
    let store = MemoryStore::new();
    let build = || {
        Arc::new(
            QuotaTracker::builder(config())
                .store(store.clone())
                .sync_policy(policy(20))
                .build()
                .unwrap(),
        )
    };
    let (a, b) = (build(), build());
    let weak = Arc::downgrade(&a);
    let done = Arc::new(AtomicU64::new(0));
    let d = Arc::clone(&done);
    let _ = a.on_transition(move |_| {
        if std::thread::current().name() != Some("quota-syncer") {
            return;
        }
        if let Some(a) = weak.upgrade() {
            a.record_call("api", 100).unwrap(); // into Critical: a forced sync
            a.flush().unwrap();
            assert!(!a.sync_in_background().unwrap());
            d.fetch_add(1, Ordering::SeqCst);
        }
    });
    assert!(a.sync_in_background().unwrap());
    b.record_call("api", 850).unwrap();
    b.flush().unwrap();
    let deadline = Instant::now() + Duration::from_secs(5);
    while done.load(Ordering::SeqCst) == 0 {
        assert!(
            Instant::now() < deadline,
            "callbacks from the syncer deadlocked"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    drop(a); // maybe the last Arc is the syncer's now
    std::thread::sleep(Duration::from_millis(100));
    assert!(stored(&store, config()) >= 950);
}

#[test]
fn h3_reduced_rate_entered_and_left_through_the_syncer_once_each_in_order() {
    let _serial = serial();
    struct Flaky(MemoryStore, AtomicBool);
    impl Store for Flaky {
        fn sync(&self, batch: &SyncBatch) -> Result<Vec<u64>, StoreError> {
            if self.1.load(Ordering::SeqCst) {
                return Err(StoreError::Io("down".into()));
            }
            self.0.sync(batch)
        }
    }
    let store = Arc::new(Flaky(MemoryStore::new(), AtomicBool::new(false)));
    let mut p = policy(20);
    p.reduced_rate.enter_after_failures = 2;
    p.reduced_rate.leave_after_successes = 2;
    let tracker = Arc::new(
        QuotaTracker::builder(config())
            .store(Arc::clone(&store))
            .sync_policy(p)
            .build()
            .unwrap(),
    );
    let events = Arc::new(Mutex::new(Vec::new()));
    let e = Arc::clone(&events);
    let _ = tracker.on_store_event(move |event| {
        let name = std::thread::current().name().unwrap_or("").to_owned();
        let kind = match event {
            StoreEvent::ReducedRateEntered { .. } => "entered",
            StoreEvent::ReducedRateLeft { .. } => "left",
            _ => "other",
        };
        e.lock().unwrap().push((kind, name));
    });
    assert!(tracker.sync_in_background().unwrap());
    store.1.store(true, Ordering::SeqCst);
    let (ticks, started) = (syncer_ticks(), Instant::now());
    while !tracker.is_reduced_rate() {
        assert!(started.elapsed() < Duration::from_secs(5));
        std::thread::sleep(Duration::from_millis(5));
    }
    std::thread::sleep(Duration::from_millis(1_000)); // backing off: no spin
    assert!((syncer_ticks() - ticks) * 10 < 100);
    store.1.store(false, Ordering::SeqCst);
    while tracker.is_reduced_rate() {
        assert!(started.elapsed() < Duration::from_secs(40));
        std::thread::sleep(Duration::from_millis(5));
    }
    std::thread::sleep(Duration::from_millis(50));
    let events = events.lock().unwrap().clone();
    let kinds: Vec<&str> = events.iter().map(|e| e.0).collect();
    assert_eq!(kinds, ["entered", "left"]);
    assert!(events.iter().all(|e| e.1 == "quota-syncer"));
}

#[test]
fn h4_idle_still_and_jumping_manual_clocks_make_no_spin() {
    let _serial = serial();
    let clock = ManualClock::new(1_700_000_000_000);
    let tracker = Arc::new(
        QuotaTracker::builder(config())
            .clock(clock.clone())
            .store(MemoryStore::new())
            .sync_policy(policy(20))
            .build()
            .unwrap(),
    );
    assert!(tracker.sync_in_background().unwrap());
    let ticks = syncer_ticks();
    std::thread::sleep(Duration::from_millis(500)); // standing still
    clock.advance(3_600_000 * 5); // a jump
    tracker.record_call("api", 1).unwrap();
    std::thread::sleep(Duration::from_millis(500));
    assert!((syncer_ticks() - ticks) * 10 < 100);
    assert!(tracker.stats().saves >= 1);
}

#[test]
fn h5_a_critical_call_forces_a_sync_at_once_with_a_long_interval() {
    let _serial = serial();
    let store = MemoryStore::new();
    let tracker = Arc::new(
        QuotaTracker::builder(config())
            .store(store.clone())
            .sync_policy(policy(3_600_000))
            .build()
            .unwrap(),
    );
    assert!(tracker.sync_in_background().unwrap());
    for _ in 0..990 {
        tracker.record_call("api", 1).unwrap();
    }
    std::thread::sleep(Duration::from_millis(200));
    assert!(tracker.stats().forced_saves >= 1);
    // The forced sync sent at least the calls up to the one that entered Critical (800), and
    // whatever came before the thread ran it; the rest go with the next sync.
    let stored_now = stored(&store, config());
    assert!((800..=990).contains(&stored_now), "{stored_now}");
    tracker.flush().unwrap();
    assert_eq!(stored(&store, config()), 990);
}

#[test]
fn h6_a_panicking_store_does_not_stop_the_syncer() {
    let _serial = serial();
    struct Panicky(MemoryStore, AtomicU64);
    impl Store for Panicky {
        fn sync(&self, batch: &SyncBatch) -> Result<Vec<u64>, StoreError> {
            let n = self.1.fetch_add(1, Ordering::SeqCst);
            if (1..4).contains(&n) {
                panic!("boom");
            }
            self.0.sync(batch)
        }
    }
    let store = Arc::new(Panicky(MemoryStore::new(), AtomicU64::new(0)));
    let tracker = Arc::new(
        QuotaTracker::builder(config())
            .store(Arc::clone(&store))
            .sync_policy(policy(20))
            .build()
            .unwrap(),
    );
    assert!(tracker.sync_in_background().unwrap());
    tracker.record_call("api", 3).unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while stored(&store.0, config()) != 3 {
        assert!(
            Instant::now() < deadline,
            "the syncer stopped after the panics"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}
