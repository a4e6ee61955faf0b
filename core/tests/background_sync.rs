//! `sync_in_background`: syncs run on the tracker's own thread, so no call waits for one (a
//! store that hangs holds up no caller), and an idle tracker still syncs every interval.

use quota_core::{
    Admission, AdmitReply, AdmitRequest, GiveBack, LeaseReply, LeaseRequest, Level, MemoryStore,
    Period, QuotaTracker, ServiceConfig, Store, StoreError, SyncBatch, SyncPolicy, TrackerConfig,
};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

fn config() -> TrackerConfig {
    TrackerConfig::new([ServiceConfig::new("api", 1_000, Period::Hour)])
}

fn policy(interval_ms: u64) -> SyncPolicy {
    SyncPolicy {
        interval_ms,
        ..SyncPolicy::default()
    }
}

/// A store whose syncs (after the build's read) wait at a gate until the test opens it, and
/// note the thread each ran on.
#[derive(Default)]
struct GatedStore {
    inner: MemoryStore,
    open: Mutex<bool>,
    opened: Condvar,
    syncs: AtomicU64,
    threads: Mutex<Vec<String>>,
}

impl GatedStore {
    fn open(&self) {
        *self.open.lock().unwrap() = true;
        self.opened.notify_all();
    }
}

impl Store for GatedStore {
    fn sync(&self, batch: &SyncBatch) -> Result<Vec<u64>, StoreError> {
        if self.syncs.fetch_add(1, Ordering::SeqCst) > 0 {
            let name = std::thread::current().name().unwrap_or("").to_owned();
            self.threads.lock().unwrap().push(name);
            let mut open = self.open.lock().unwrap();
            while !*open {
                open = self.opened.wait(open).unwrap();
            }
        }
        self.inner.sync(batch)
    }
}

/// Runs `calls` on another thread: `Some(result)` if it ended within 10 s.
fn within_10_s<T: Send + 'static>(calls: impl FnOnce() -> T + Send + 'static) -> Option<T> {
    let (done, ended) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = done.send(calls());
    });
    ended.recv_timeout(Duration::from_secs(10)).ok()
}

#[test]
fn calls_never_wait_for_a_sync_even_when_the_store_hangs() {
    let store = Arc::new(GatedStore::default());
    let tracker = Arc::new(
        QuotaTracker::builder(config())
            .store(Arc::clone(&store))
            .sync_policy(policy(20))
            .build()
            .unwrap(),
    );
    assert!(tracker.sync_in_background().unwrap());
    assert!(!tracker.sync_in_background().unwrap(), "started once");
    let calls = Arc::clone(&tracker);
    // Syncs fall due every 20 ms and the calls cross the Critical level (a forced sync): the
    // store hangs on the first, and every call still returns.
    let counted = within_10_s(move || {
        let started = Instant::now();
        let mut counted = 0u64;
        while started.elapsed() < Duration::from_millis(300) {
            calls.record_call("api", 1).unwrap();
            counted += 1;
            if counted < 900 {
                std::thread::sleep(Duration::from_micros(200));
            }
        }
        for _ in 0..900 {
            calls.record_call("api", 1).unwrap();
            counted += 1;
        }
        counted
    })
    .expect("no call waited for the hanging store");
    assert_eq!(tracker.usage("api").unwrap().level(), Level::Exhausted);
    // The store is in a sync, on the syncer's thread, and no caller's.
    let deadline = Instant::now() + Duration::from_secs(5);
    while store.threads.lock().unwrap().is_empty() {
        assert!(Instant::now() < deadline, "the syncer never synced");
        std::thread::sleep(Duration::from_millis(5));
    }
    store.open();
    tracker.flush().unwrap();
    let threads = store.threads.lock().unwrap().clone();
    assert!(
        threads
            .iter()
            .all(|name| name == "quota-syncer" || name == std::thread::current().name().unwrap()),
        "syncs ran on {threads:?}"
    );
    assert_eq!(threads[0], "quota-syncer");
    let other = QuotaTracker::builder(config())
        .store(store.inner.clone())
        .build()
        .unwrap();
    assert_eq!(
        other.usage("api").unwrap().used,
        counted,
        "nothing recorded was lost"
    );
}

#[test]
fn an_idle_tracker_sends_and_reads_every_interval() {
    let store = MemoryStore::new();
    let build = || {
        Arc::new(
            QuotaTracker::builder(config())
                .store(store.clone())
                .sync_policy(policy(30))
                .build()
                .unwrap(),
        )
    };
    let (a, b) = (build(), build());
    assert!(a.sync_in_background().unwrap());
    assert!(b.sync_in_background().unwrap());
    a.record_call("api", 12).unwrap();
    b.record_call("api", 30).unwrap();
    // Neither calls again: their threads send, and read the other's, all the same.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let (seen_by_a, seen_by_b) = (a.usage("api").unwrap().used, b.usage("api").unwrap().used);
        if seen_by_a == 42 && seen_by_b == 42 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "a sees {seen_by_a}, b sees {seen_by_b}"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    // Saves no call made: each thread's own (the build's read is not a save).
    assert!(a.stats().saves >= 1 && b.stats().saves >= 1);
}

/// The number of this process's threads named `quota-syncer`.
#[cfg(target_os = "linux")]
fn syncer_threads() -> usize {
    std::fs::read_dir("/proc/self/task")
        .unwrap()
        .filter_map(|task| std::fs::read_to_string(task.ok()?.path().join("comm")).ok())
        .filter(|name| name.trim() == "quota-syncer")
        .count()
}

#[cfg(target_os = "linux")]
#[test]
fn the_thread_ends_when_the_tracker_drops_and_the_drop_flushes() {
    let store = MemoryStore::new();
    let before = syncer_threads();
    let tracker = Arc::new(
        QuotaTracker::builder(config())
            .store(store.clone())
            .sync_policy(policy(60_000))
            .build()
            .unwrap(),
    );
    assert!(tracker.sync_in_background().unwrap());
    tracker.record_call("api", 5).unwrap();
    drop(tracker);
    let deadline = Instant::now() + Duration::from_secs(10);
    // Other tests' threads come and go: wait for the count to fall back.
    while syncer_threads() > before {
        assert!(Instant::now() < deadline, "the syncer thread did not end");
        std::thread::sleep(Duration::from_millis(10));
    }
    let other = QuotaTracker::builder(config())
        .store(store)
        .build()
        .unwrap();
    assert_eq!(other.usage("api").unwrap().used, 5);
}

#[test]
fn without_a_store_there_is_nothing_to_start() {
    let tracker = Arc::new(QuotaTracker::new(config()).unwrap());
    assert!(!tracker.sync_in_background().unwrap());
    tracker.record_call("api", 1).unwrap();
}

/// On a current-thread runtime, a task that counts calls of a tracker whose store takes 2 s
/// per sync never blocks the executor: a ticker task beside it keeps its 10 ms ticks.
#[test]
fn a_slow_store_never_blocks_a_current_thread_runtime() {
    struct SlowStore(MemoryStore, AtomicU64);
    impl Store for SlowStore {
        fn sync(&self, batch: &SyncBatch) -> Result<Vec<u64>, StoreError> {
            if self.1.fetch_add(1, Ordering::SeqCst) > 0 {
                std::thread::sleep(Duration::from_secs(2));
            }
            self.0.sync(batch)
        }
    }
    let tracker = Arc::new(
        QuotaTracker::builder(config())
            .store(SlowStore(MemoryStore::new(), AtomicU64::new(0)))
            .sync_policy(policy(50))
            .build()
            .unwrap(),
    );
    assert!(tracker.sync_in_background().unwrap());
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .unwrap();
    let (ticks, elapsed) = runtime.block_on(async {
        let ticks = Arc::new(AtomicU64::new(0));
        let ticking = Arc::clone(&ticks);
        let ticker = tokio::spawn(async move {
            let mut interval = tokio::time::interval(Duration::from_millis(10));
            interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
            loop {
                interval.tick().await;
                ticking.fetch_add(1, Ordering::SeqCst);
            }
        });
        let started = Instant::now();
        // Calls for 1.5 s, syncs due every 50 ms: inline, the first would block for 2 s.
        while started.elapsed() < Duration::from_millis(1_500) {
            tracker.record_call("api", 1).unwrap();
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        let elapsed = started.elapsed();
        ticker.abort();
        (ticks.load(Ordering::SeqCst), elapsed)
    });
    assert!(
        elapsed < Duration::from_millis(1_900),
        "a call blocked: {elapsed:?}"
    );
    let expected = elapsed.as_millis() as u64 / 10;
    assert!(ticks * 2 >= expected, "{ticks} ticks in {elapsed:?}");
}

/// A store that notes the thread of every lease and makes each take `delay`.
struct LeaseWatch {
    inner: MemoryStore,
    delay: Duration,
    threads: Mutex<Vec<String>>,
}

impl Store for LeaseWatch {
    fn sync(&self, batch: &SyncBatch) -> Result<Vec<u64>, StoreError> {
        self.inner.sync(batch)
    }
    fn admit(&self, request: &AdmitRequest) -> Result<AdmitReply, StoreError> {
        self.inner.admit(request)
    }
    fn lease(&self, request: &LeaseRequest) -> Result<LeaseReply, StoreError> {
        let name = std::thread::current().name().unwrap_or("").to_owned();
        self.threads.lock().unwrap().push(name);
        std::thread::sleep(self.delay);
        self.inner.lease(request)
    }
    fn give_back(&self, request: &GiveBack) -> Result<u64, StoreError> {
        self.inner.give_back(request)
    }
}

fn leased(block: u64, limit: u64) -> TrackerConfig {
    TrackerConfig::new([ServiceConfig::builder("api", limit, Period::Hour)
        .critical_threshold(1.0)
        .reserve_fraction(0.0)
        .admission(Admission::Leased { block })
        .build()
        .unwrap()])
}

/// With the syncer running, a `Leased` service's next block is leased on its thread before
/// the one in hand runs out: callers spending at a steady pace never ask the store.
#[test]
fn the_next_leased_block_is_fetched_ahead_on_the_syncer_thread() {
    let store = Arc::new(LeaseWatch {
        inner: MemoryStore::new(),
        delay: Duration::from_millis(5),
        threads: Mutex::new(Vec::new()),
    });
    let tracker = Arc::new(
        QuotaTracker::builder(leased(100, 1_000_000))
            .store(Arc::clone(&store))
            .sync_policy(policy(60_000))
            .build()
            .unwrap(),
    );
    assert!(tracker.sync_in_background().unwrap());
    // The first block: asked by the first call, on its thread.
    for _ in 0..1_000 {
        tracker.try_record("api", 1).unwrap();
        std::thread::sleep(Duration::from_micros(300));
    }
    let threads = store.threads.lock().unwrap().clone();
    assert!(
        threads.len() >= 10,
        "{} leases for 1,000 calls",
        threads.len()
    );
    let mine = std::thread::current().name().unwrap_or("").to_owned();
    assert_eq!(threads[0], mine, "the first block is the caller's");
    // Half a block (25 ms of calls) is the syncer's time to lease the next: on a loaded
    // machine it may miss now and then (and then leases more at once), never most of the time.
    let by_caller = threads.iter().filter(|name| **name == mine).count();
    assert!(
        by_caller * 2 <= threads.len(),
        "the caller leased {by_caller} of {} blocks: {threads:?}",
        threads.len()
    );
    tracker.flush().unwrap();
    let reader = QuotaTracker::builder(leased(100, 1_000_000))
        .store(store.inner.clone())
        .build()
        .unwrap();
    assert_eq!(
        reader.usage("api").unwrap().used,
        1_000,
        "blocks given back at the flush"
    );
}

/// Four instances leasing ahead against one limit: never more admitted than the limit, and
/// the store holds exactly what was admitted once they flush.
#[test]
fn leasing_ahead_never_over_admits() {
    let store = MemoryStore::new();
    let trackers: Vec<Arc<QuotaTracker>> = (0..4)
        .map(|_| {
            let tracker = Arc::new(
                QuotaTracker::builder(leased(40, 1_000))
                    .store(store.clone())
                    .sync_policy(policy(20))
                    .build()
                    .unwrap(),
            );
            assert!(tracker.sync_in_background().unwrap());
            tracker
        })
        .collect();
    let admitted: u64 = std::thread::scope(|scope| {
        let handles: Vec<_> = trackers
            .iter()
            .map(|tracker| {
                scope.spawn(move || {
                    let mut admitted = 0u64;
                    let mut refused_in_a_row = 0;
                    while refused_in_a_row < 200 {
                        match tracker.try_record("api", 1) {
                            Ok(_) => {
                                admitted += 1;
                                refused_in_a_row = 0;
                            }
                            Err(_) => {
                                refused_in_a_row += 1;
                                std::thread::sleep(Duration::from_millis(1));
                            }
                        }
                    }
                    admitted
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).sum()
    });
    assert!(admitted <= 1_000, "{admitted} admitted past the limit");
    for tracker in &trackers {
        tracker.flush().unwrap();
    }
    let reader = QuotaTracker::builder(leased(40, 1_000))
        .store(store)
        .build()
        .unwrap();
    assert_eq!(reader.usage("api").unwrap().used, admitted);
}
