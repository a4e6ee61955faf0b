//! A hostile review's attacks on the core, beside `hostile.rs`: observer `Drop`s that panic or
//! re-enter, stores that record during their own save, repeated bogus clock readings and
//! restarts on them, reduced-rate admission, subscription ids across trackers, re-entry and
//! churn under threads. The `regression_` tests each failed before the fix named in their
//! comment. Everything that could hang runs under a timeout guard.

use quota_core::{
    Level, ManualClock, MemoryStore, Period, QuotaError, QuotaTracker, ServiceConfig, Store,
    StoreError, SyncBatch, SyncPolicy, TrackerConfig, Transition,
};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Mutex, OnceLock, Weak};
use std::thread;
use std::time::Duration;

#[path = "support/timeout.rs"]
mod timeout;
use timeout::within;

const JUNE_10: u64 = 1_718_000_000_000;
const DAY: u64 = 86_400_000;
const MIDNIGHT: u64 = JUNE_10 / DAY * DAY;

/// Spins (bounded) until `flag` is set.
fn wait_for(flag: &AtomicBool) {
    let began = std::time::Instant::now();
    while !flag.load(Ordering::SeqCst) {
        assert!(
            began.elapsed() < Duration::from_secs(3),
            "the observer never ran"
        );
        thread::yield_now();
    }
}

fn config(services: &[(&str, u64, Period)]) -> TrackerConfig {
    TrackerConfig::new(
        services
            .iter()
            .map(|&(name, limit, period)| ServiceConfig::new(name, limit, period)),
    )
}

fn collect(tracker: &QuotaTracker) -> Arc<Mutex<Vec<Transition>>> {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let sink = Arc::clone(&seen);
    tracker.on_transition(move |t| sink.lock().unwrap().push(t.clone()));
    seen
}

fn levels(seen: &Mutex<Vec<Transition>>) -> Vec<(Level, Level)> {
    seen.lock()
        .unwrap()
        .iter()
        .map(|t| (t.from, t.to))
        .collect()
}

fn day_tracker(clock: &ManualClock) -> QuotaTracker {
    QuotaTracker::new_with_clock(config(&[("a", 100, Period::Day)]), clock.clone()).unwrap()
}

fn stored_tracker(clock: &ManualClock, store: &MemoryStore) -> QuotaTracker {
    QuotaTracker::builder(config(&[("a", 100, Period::Day)]))
        .clock(clock.clone())
        .store(store.clone())
        .build()
        .unwrap()
}

/// Something an observer closure owns whose `Drop` panics (a user's guard, a channel wrapper...).
struct PanicsWhenDropped(Arc<AtomicBool>);

impl Drop for PanicsWhenDropped {
    fn drop(&mut self) {
        if self.0.load(Ordering::SeqCst) && !thread::panicking() {
            panic!("observer state dropped");
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Observers: panics and re-entry through the observer's own `Drop`.
// ---------------------------------------------------------------------------------------------

/// Was a bug: an observer that unsubscribes itself while being delivered is dropped (its last `Arc`)
/// inside `Registry::notify`'s loop, outside every `catch_unwind`. If its state panics on
/// drop, the panic escapes `record_call`, the observers after it never get the transition,
/// and a transition queued meanwhile is stranded (a snapshot does not deliver it).
#[test]
fn regression_observer_drop_panic_escapes_record_call_and_loses_transitions() {
    within(10, || {
        let clock = ManualClock::new(JUNE_10);
        let tracker = Arc::new(day_tracker(&clock));
        let armed = Arc::new(AtomicBool::new(false));
        let own_id = Arc::new(OnceLock::new());
        {
            let state = PanicsWhenDropped(Arc::clone(&armed));
            let (inner_id, weak) = (Arc::clone(&own_id), Arc::downgrade(&tracker));
            let id = tracker.on_transition(move |_| {
                let _keep = &state;
                let tracker = weak.upgrade().unwrap();
                // Re-entrant record on the same service: queued behind this delivery.
                tracker.record_call("a", 30).unwrap(); // warning -> critical
                tracker.unsubscribe(*inner_id.get().unwrap());
            });
            own_id.set(id).unwrap();
        }
        armed.store(true, Ordering::SeqCst);
        let seen = collect(&tracker); // subscribed after: runs second
        let result = catch_unwind(AssertUnwindSafe(|| {
            tracker.record_call("a", 50).map(|_| ())
        }));
        let escaped = result.is_err();
        // A call without a transition, and a snapshot: neither delivers what is stranded.
        tracker.record_call("a", 1).unwrap();
        tracker.snapshot();
        let got = levels(&seen);
        assert!(
            !escaped
                && got
                    == [
                        (Level::Normal, Level::Warning),
                        (Level::Warning, Level::Critical)
                    ],
            "escaped record_call: {escaped}; the second observer got {got:?} \
             (expected normal->warning, warning->critical)"
        );
    });
}

/// Was a bug: `Registry::unsubscribe` drops the observer while holding the registry's lock
/// (`self.observers.lock().remove(&id)`), so a panicking drop escapes `unsubscribe`.
#[test]
fn regression_unsubscribe_lets_an_observer_drop_panic_escape() {
    let clock = ManualClock::new(JUNE_10);
    let tracker = day_tracker(&clock);
    let armed = Arc::new(AtomicBool::new(true));
    let state = PanicsWhenDropped(Arc::clone(&armed));
    let id = tracker.on_transition(move |_| {
        let _keep = &state;
    });
    let result = catch_unwind(AssertUnwindSafe(|| tracker.unsubscribe(id)));
    armed.store(false, Ordering::SeqCst);
    assert!(
        result.is_ok(),
        "a panic from an observer's drop escaped unsubscribe"
    );
}

/// Something an observer owns whose `Drop` calls back into the tracker (subscribes a
/// replacement, say).
struct ResubscribesOnDrop(Weak<QuotaTracker>);

impl Drop for ResubscribesOnDrop {
    fn drop(&mut self) {
        if let Some(tracker) = self.0.upgrade() {
            tracker.on_transition(|_| {});
        }
    }
}

/// Was a bug (hang): the observer is dropped under the registry lock in `unsubscribe`; a drop that
/// calls `on_transition`/`unsubscribe` locks it again on the same thread: self-deadlock.
#[test]
fn regression_unsubscribe_deadlocks_when_the_observers_drop_reenters() {
    within(5, || {
        let clock = ManualClock::new(JUNE_10);
        let tracker = Arc::new(day_tracker(&clock));
        let state = ResubscribesOnDrop(Arc::downgrade(&tracker));
        let id = tracker.on_transition(move |_| {
            let _keep = &state;
        });
        assert!(tracker.unsubscribe(id));
    });
}

// ---------------------------------------------------------------------------------------------
// Observers run under the save lock when a store records.
// ---------------------------------------------------------------------------------------------

/// A store that records a call on its own tracker on every save (a remote store that is
/// itself a quota-tracked API), and tells when it did.
struct SelfCountingStore {
    inner: MemoryStore,
    tracker: OnceLock<Weak<QuotaTracker>>,
    armed: AtomicBool,
}

impl Store for SelfCountingStore {
    fn sync(&self, batch: &SyncBatch) -> Result<Vec<u64>, StoreError> {
        if batch.deltas.is_empty() && batch.seq == 1 && self.tracker.get().is_none() {
            // The read at build, before the test set the store up.
            return self.inner.sync(batch);
        }
        if self.armed.swap(false, Ordering::SeqCst) {
            if let Some(tracker) = self.tracker.get().and_then(Weak::upgrade) {
                tracker.record_call("store-api", 5).unwrap(); // normal -> warning
            }
        }
        self.inner.sync(batch)
    }
}

/// Was a bug (deadlock): "flush never waits for an observer, since observers run only after the
/// save lock is released". A `record_call` made by the store inside a save pumps the outbox
/// at once (`step_at`, tracker.rs:482), so the observer runs on the saving thread *with the
/// save lock held*. If that observer takes an app mutex that a second thread holds while it
/// calls `flush`, both wait forever. (The same happens through `save()`'s final pumps, which
/// run even for a nested, coalesced save.)
#[test]
fn regression_observer_runs_under_the_save_lock_when_the_store_records() {
    within(10, || {
        let store = Arc::new(SelfCountingStore {
            inner: MemoryStore::new(),
            tracker: OnceLock::new(),
            armed: AtomicBool::new(false),
        });
        let clock = ManualClock::new(JUNE_10);
        let tracker = Arc::new(
            QuotaTracker::builder(config(&[
                ("a", 100, Period::Day),
                ("store-api", 10, Period::Day),
            ]))
            .clock(clock.clone())
            .store(Arc::clone(&store))
            .build()
            .unwrap(),
        );
        let _ = store.tracker.set(Arc::downgrade(&tracker));
        let app = Arc::new(Mutex::new(()));
        let entered = Arc::new(AtomicBool::new(false));
        {
            let (app, entered) = (Arc::clone(&app), Arc::clone(&entered));
            tracker.on_transition(move |_| {
                entered.store(true, Ordering::SeqCst);
                drop(app.lock().unwrap());
            });
        }
        let held = app.lock().unwrap();
        store.armed.store(true, Ordering::SeqCst);
        let saver = {
            let tracker = Arc::clone(&tracker);
            thread::spawn(move || tracker.flush())
        };
        wait_for(&entered);
        // The saver thread's observer (run from the store's record, inside the save) waits
        // for `app`; this thread holds `app` and flushes: it waits for the save lock.
        eprintln!("observer entered inside the save; flushing from the app-mutex holder");
        tracker.flush().unwrap();
        drop(held);
        saver.join().unwrap().unwrap();
    });
}

// ---------------------------------------------------------------------------------------------
// Clock sanity: more than one bogus reading.
// ---------------------------------------------------------------------------------------------

/// Was a bug: the step remembers one window left (`ServiceState::left`). A second bogus forward
/// reading overwrites it (step.rs `_ if forward =>` arm), so when the clock is right again the
/// real window's 30 calls are gone: `used` drops from 30 to 2 in the real window.
#[test]
fn regression_two_bogus_readings_ahead_lose_the_real_windows_count() {
    let clock = ManualClock::new(JUNE_10);
    let tracker = day_tracker(&clock);
    tracker.record_call("a", 30).unwrap();
    clock.set(JUNE_10 + 365 * DAY); // bogus: a year ahead
    tracker.record_call("a", 1).unwrap();
    clock.set(JUNE_10 + 730 * DAY); // bogus again: two years ahead
    tracker.record_call("a", 1).unwrap();
    clock.set(JUNE_10 + 1_000); // right again
    let usage = tracker.usage("a").unwrap();
    assert_eq!(usage.window_start_ms, MIDNIGHT);
    assert!(
        usage.used >= 30,
        "the real window's count was lowered to {}",
        usage.used
    );
}

/// Was a bug: same root cause, other direction: a reading far back (1970) then one far ahead
/// replaces the remembered window, and the real window's 40 calls are forgotten.
#[test]
fn regression_a_bogus_reading_back_then_one_ahead_lose_the_real_windows_count() {
    let clock = ManualClock::new(JUNE_10);
    let tracker = day_tracker(&clock);
    tracker.record_call("a", 40).unwrap();
    clock.set(0); // bogus: 1970 (keeps 40, remembers the real window with 0)
    assert_eq!(tracker.usage("a").unwrap().used, 40);
    clock.set(JUNE_10 + 365 * DAY); // bogus: a year ahead (a "real roll-over" of 1970's window)
    tracker.usage("a").unwrap();
    clock.set(JUNE_10 + 1_000); // right again
    let used = tracker.usage("a").unwrap().used;
    assert!(used >= 40, "the real window's count was lowered to {used}");
}

// ---------------------------------------------------------------------------------------------
// Clock sanity across a restart (PersistedService.previous).
// ---------------------------------------------------------------------------------------------

/// Was a bug: a restart while the clock is bogus. The running tracker would keep the real window as
/// `left` (and return to it); `merge_saved` (tracker.rs:605) restores only a saved window that
/// equals the current one and never rebuilds `left`, so the real window's 30 calls vanish
/// from memory and, with the next save, from the store.
#[test]
fn regression_a_restart_while_the_clock_is_ahead_loses_the_real_windows_count() {
    let store = MemoryStore::new();
    let clock = ManualClock::new(JUNE_10);
    let first = stored_tracker(&clock, &store);
    first.record_call("a", 30).unwrap();
    first.flush().unwrap();
    drop(first);
    clock.set(JUNE_10 + 365 * DAY); // the process restarts on a bogus reading
    let second = stored_tracker(&clock, &store);
    second.record_call("a", 1).unwrap();
    second.flush().unwrap();
    clock.set(JUNE_10 + 1_000); // right again
                                // The call made on the bogus reading is carried back into the real window and synced
                                // there: the store's 30 plus it, once the tracker has synced.
    second.flush().unwrap();
    assert_eq!(second.usage("a").unwrap().used, 31);
}

/// Was a bug: a restart (or a second process sharing the store) whose clock is a little behind
/// (under one period, the "NTP correction" the step tolerates): the saved count of the later
/// window is not restored, because `merge_saved` only takes `saved.window_start_ms ==
/// window_at(now)`. When the clock reaches that window the count is 0 and the next save
/// overwrote the store. A running tracker would have stayed in the later window.
#[test]
fn regression_a_restart_a_second_behind_loses_the_saved_later_window() {
    let store = MemoryStore::new();
    let clock = ManualClock::new(MIDNIGHT + DAY + 500); // 0.5 s after midnight
    let first = stored_tracker(&clock, &store);
    first.record_call("a", 60).unwrap(); // warning
    first.flush().unwrap();
    drop(first);
    clock.set(MIDNIGHT + DAY - 500); // restarted on a machine 1 s behind
    let second = stored_tracker(&clock, &store);
    // Its own clock says yesterday: it reads yesterday's window. Once its clock passes
    // midnight, the roll-over makes the next call sync, and it sees the 60 calls at once.
    assert_eq!(second.usage("a").unwrap().window_start_ms, MIDNIGHT);
    clock.set(MIDNIGHT + DAY + 100);
    second.record_call("a", 1).unwrap();
    let usage = second.usage("a").unwrap();
    assert_eq!((usage.used, usage.window_start_ms), (61, MIDNIGHT + DAY));
}

/// A restart after the clock read far back (1970): each window keeps what was stored under
/// it, counted once, and a far-back reading never lowers the count.
#[test]
fn a_restart_after_a_far_back_reading_keeps_counts_once() {
    let store = MemoryStore::new();
    let clock = ManualClock::new(JUNE_10);
    let first = stored_tracker(&clock, &store);
    first.record_call("a", 40).unwrap();
    clock.set(0);
    first.record_call("a", 2).unwrap();
    first.flush().unwrap();
    drop(first);
    clock.set(JUNE_10 + 1_000);
    // The 2 calls made while the clock read 1970 are stored under 1970's window; a restart
    // reads the real window's 40. (A running tracker would carry them back: see hostile.rs.)
    let second = stored_tracker(&clock, &store);
    assert_eq!(second.usage("a").unwrap().used, 40);
    clock.set(0);
    assert_eq!(second.usage("a").unwrap().used, 40, "never lowered");
}

/// Passes: restoring absurd stored totals is capped (2^62) instead of overflowing or
/// panicking: later calls still count, and the next window starts clean.
#[test]
fn restoring_huge_saved_counts_saturates() {
    let store = MemoryStore::new();
    let clock = ManualClock::new(JUNE_10);
    let window = format!(
        r#"{{"service": "a", "period": "day", "start_ms": {MIDNIGHT}, "end_ms": {}, "total": {}}}"#,
        MIDNIGHT + DAY,
        u64::MAX
    );
    store.set_raw(Some(format!(
        r#"{{"version": 2, "windows": [{window}, {window}]}}"#
    )));
    let tracker = stored_tracker(&clock, &store);
    let usage = tracker.usage("a").unwrap();
    assert_eq!((usage.used, usage.level()), (1 << 62, Level::Exhausted));
    assert_eq!(
        tracker.record_call("a", 1).unwrap().usage.used,
        (1 << 62) + 1
    );
    assert!(matches!(
        tracker.try_record("a", 1),
        Err(QuotaError::Denied { .. })
    ));
    assert!(!tracker.can_call("a").unwrap());
    clock.set(MIDNIGHT + DAY);
    assert_eq!(tracker.record_call("a", 1).unwrap().usage.used, 1);
}

// ---------------------------------------------------------------------------------------------
// try_record in reduced-rate mode.
// ---------------------------------------------------------------------------------------------

/// Was a policy hole: reduced-rate mode "allows a service only while used < floor(limit x
/// fraction)", but `ServiceRules::allows` checks only the count *before* the call
/// (step.rs `allows(state.used, ..) && after <= self.limit`), so one `try_record(limit)`
/// takes the whole quota while the store is down: 100 calls admitted against an allowance of
/// 25. The reduced allowance should bound `used + count`.
#[test]
fn regression_try_record_in_reduced_rate_can_take_the_whole_limit() {
    let store = MemoryStore::new();
    let clock = ManualClock::new(JUNE_10);
    let tracker =
        QuotaTracker::builder(config(&[("a", 100, Period::Day), ("b", 100, Period::Day)]))
            .clock(clock.clone())
            .store(store.clone())
            .sync_policy(SyncPolicy {
                interval_ms: 0,
                ..SyncPolicy::default()
            })
            .build()
            .unwrap();
    store.set_failing(true);
    for _ in 0..3 {
        clock.advance(60_000); // past the back-off after each failure
        tracker.record_call("b", 1).unwrap();
    }
    assert!(tracker.is_reduced_rate());
    let admitted = tracker.try_record("a", 100);
    let used = tracker.usage("a").unwrap().used;
    assert!(
        admitted.is_err() && used <= 25,
        "reduced rate admitted {used} calls (allowance 25)"
    );
}

// ---------------------------------------------------------------------------------------------
// Misuse of ids from another tracker.
// ---------------------------------------------------------------------------------------------

/// Was a bug (misuse not caught): subscription ids are bare per-registry counters, so an id from
/// tracker A silently removes an unrelated observer of tracker B (`unsubscribe` returns true).
#[test]
fn regression_a_subscription_id_from_another_tracker_removes_someone_elses_observer() {
    let clock = ManualClock::new(JUNE_10);
    let a = day_tracker(&clock);
    let b = day_tracker(&clock);
    let a_id = a.on_transition(|_| {});
    let seen_b = collect(&b); // b's first observer: the same number as a_id
    let removed = b.unsubscribe(a_id);
    b.record_call("a", 50).unwrap();
    assert!(
        !removed && seen_b.lock().unwrap().len() == 1,
        "tracker b's observer was removed with tracker a's id"
    );
}

// ---------------------------------------------------------------------------------------------
// Passing tests worth keeping: re-entry, recorded == observed, stranded events.
// ---------------------------------------------------------------------------------------------

/// An observer that re-enters on another service, subscribes, unsubscribes, snapshots and
/// flushes, on a tracker with a store: everything is delivered once and in per-service order,
/// and what callers were told equals what observers got.
#[test]
fn observer_reentering_everything_delivers_once_and_matches_recorded() {
    within(10, || {
        let store = MemoryStore::new();
        let clock = ManualClock::new(JUNE_10);
        let tracker = Arc::new(
            QuotaTracker::builder(config(&[
                ("a", 10, Period::Minute),
                ("b", 10, Period::Minute),
            ]))
            .clock(clock.clone())
            .store(store.clone())
            .build()
            .unwrap(),
        );
        let seen = collect(&tracker);
        let told = Arc::new(Mutex::new(Vec::new()));
        {
            let (weak, told) = (Arc::downgrade(&tracker), Arc::clone(&told));
            tracker.on_transition(move |t| {
                let tracker = weak.upgrade().unwrap();
                if &*t.service == "a" {
                    let r = tracker.record_call("b", 5).unwrap();
                    told.lock().unwrap().extend(r.transitions().cloned());
                    let id = tracker.on_transition(|_| {});
                    assert!(tracker.unsubscribe(id));
                    tracker.snapshot();
                    assert_eq!(tracker.flush(), Ok(()));
                }
            });
        }
        for _ in 0..3 {
            let r = tracker.record_call("a", 5).unwrap();
            told.lock().unwrap().extend(r.transitions().cloned());
            clock.advance(60_000);
            tracker.snapshot();
        }
        let key = |t: &Transition| (t.service.to_string(), t.from, t.to, t.used, t.at_ms);
        let seen = seen.lock().unwrap().clone();
        for name in ["a", "b"] {
            let chain: Vec<_> = seen.iter().filter(|t| &*t.service == name).collect();
            for pair in chain.windows(2) {
                assert_eq!(pair[0].to, pair[1].from, "{name}: broken chain {seen:?}");
            }
        }
        // Callers learnt the recordings; the roll-overs came from snapshots.
        let recorded: Vec<_> = seen
            .iter()
            .filter(|t| t.to != Level::Normal)
            .map(key)
            .collect();
        let told: Vec<_> = told.lock().unwrap().iter().map(key).collect();
        let mut a = recorded.clone();
        let mut b = told.clone();
        a.sort();
        b.sort();
        assert_eq!(a, b);
        assert_eq!(seen.len(), 15, "{seen:?}"); // a's roll-overs re-enter too
    });
}

/// A slow observer draining one service does not hold back another thread's call on the same
/// service, and that thread's transition is delivered (by the drainer) before the drainer's
/// call returns.
#[test]
fn a_blocked_drainer_delivers_other_threads_transitions_when_it_resumes() {
    within(10, || {
        let clock = ManualClock::new(JUNE_10);
        let tracker = Arc::new(day_tracker(&clock));
        let (go, wait) = mpsc::channel::<()>();
        let wait = Mutex::new(wait);
        let entered = Arc::new(AtomicBool::new(false));
        let seen = Arc::new(Mutex::new(Vec::new()));
        {
            let (entered, seen) = (Arc::clone(&entered), Arc::clone(&seen));
            tracker.on_transition(move |t| {
                if t.to == Level::Warning {
                    entered.store(true, Ordering::SeqCst);
                    wait.lock().unwrap().recv().unwrap();
                }
                seen.lock().unwrap().push(t.to);
            });
        }
        let drainer = {
            let tracker = Arc::clone(&tracker);
            thread::spawn(move || {
                tracker.record_call("a", 50).unwrap();
            })
        };
        wait_for(&entered);
        let r = tracker.record_call("a", 30).unwrap(); // does not wait
        assert_eq!(r.transition().unwrap().to, Level::Critical);
        go.send(()).unwrap();
        drainer.join().unwrap();
        assert_eq!(*seen.lock().unwrap(), [Level::Warning, Level::Critical]);
    });
}

/// Many threads subscribing and unsubscribing while others record: no hang, no double
/// delivery to an observer that stays subscribed throughout.
#[test]
fn subscribe_unsubscribe_churn_while_recording() {
    within(60, || {
        let clock = ManualClock::new(JUNE_10);
        let tracker = Arc::new(
            QuotaTracker::new_with_clock(config(&[("a", 4, Period::Minute)]), clock.clone())
                .unwrap(),
        );
        let seen = collect(&tracker);
        let stop = Arc::new(AtomicBool::new(false));
        let churners: Vec<_> = (0..4)
            .map(|_| {
                let (tracker, stop) = (Arc::clone(&tracker), Arc::clone(&stop));
                thread::spawn(move || {
                    while !stop.load(Ordering::SeqCst) {
                        let id = tracker.on_transition(|_| {});
                        tracker.unsubscribe(id);
                    }
                })
            })
            .collect();
        let calls = Arc::new(AtomicU64::new(0));
        let recorders: Vec<_> = (0..4)
            .map(|_| {
                let (tracker, clock, calls) =
                    (Arc::clone(&tracker), clock.clone(), Arc::clone(&calls));
                thread::spawn(move || {
                    for i in 0..2_000 {
                        if i % 7 == 0 {
                            clock.advance(20_000);
                        }
                        tracker.record_call("a", 1).unwrap();
                        calls.fetch_add(1, Ordering::SeqCst);
                    }
                })
            })
            .collect();
        for r in recorders {
            r.join().unwrap();
        }
        stop.store(true, Ordering::SeqCst);
        for c in churners {
            c.join().unwrap();
        }
        tracker.snapshot();
        let seen = seen.lock().unwrap();
        for pair in seen.windows(2) {
            assert_eq!(pair[0].to, pair[1].from, "broken chain");
        }
        assert_eq!(tracker.usage("a").unwrap().total_recorded, 8_000);
    });
}

// ---------------------------------------------------------------------------------------------
// Restore with a clock that panics at start-up; two trackers on one store.
// ---------------------------------------------------------------------------------------------

/// A clock that panics on its first `failures` readings.
struct PanicsAtFirst {
    clock: ManualClock,
    failures: AtomicU64,
}

impl quota_core::Clock for PanicsAtFirst {
    fn now_ms(&self) -> u64 {
        if self
            .failures
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
            .is_ok()
        {
            panic!("clock not ready");
        }
        self.clock.now_ms()
    }
}

/// Was a bug: a clock that panics during `build` makes `now()` fall back to `last_good_ms`, which
/// starts at 0 (tracker.rs:246), so `merge_saved` compares the saved window with 1970's and
/// restores nothing; the first good reading then "rolls over" from 1970 and the saved 30 calls
/// are gone (and overwritten by the next save). Same root cause as the restart-while-ahead
/// bug: `merge_saved` drops saved windows that are not the current one instead of keeping
/// them the way the step does.
#[test]
fn regression_a_clock_panicking_at_build_loses_the_saved_counts() {
    let store = MemoryStore::new();
    let clock = ManualClock::new(JUNE_10);
    let first = stored_tracker(&clock, &store);
    first.record_call("a", 30).unwrap();
    first.flush().unwrap();
    drop(first);
    let flaky = PanicsAtFirst {
        clock: clock.clone(),
        failures: AtomicU64::new(2), // assemble's and build's readings
    };
    let second = QuotaTracker::builder(config(&[("a", 100, Period::Day)]))
        .clock(flaky)
        .store(store.clone())
        .build()
        .unwrap();
    second.record_call("a", 1).unwrap();
    // The build read the store at the system time's window (the clock gave no reading); the
    // first real reading moves the window, which makes the next call sync.
    let used = second.record_call("a", 1).unwrap().usage.used;
    assert_eq!(used, 32, "the saved 30 calls were lost");
}
