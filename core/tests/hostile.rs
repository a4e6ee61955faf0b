//! Hostile stores, observers and clocks: no call ever waits on another thread's callback, no
//! panic wedges delivery, re-entry works or gets a typed error. Every test runs under a
//! timeout guard, so a hang fails within seconds instead of stalling CI.

use quota_core::{
    Clock, Level, ManualClock, MemoryStore, Period, QuotaTracker, ServiceConfig, Store, StoreError,
    StoreEvent, SyncBatch, SyncPolicy, TrackerConfig, Transition,
};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Barrier, Mutex, OnceLock, Weak};
use std::thread;
use std::time::{Duration, Instant};

#[path = "support/timeout.rs"]
mod timeout;
use timeout::within;

const JUNE_10: u64 = 1_718_000_000_000;
const DAY: u64 = 86_400_000;

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

/// A store whose behaviour each test sets: slow, panicking, calling back into its tracker.
#[derive(Default)]
struct HostileStore {
    inner: MemoryStore,
    /// Each save sleeps this long.
    save_delay: Mutex<Duration>,
    /// Told when a save starts.
    save_started: Mutex<Option<mpsc::Sender<()>>>,
    /// Saves panic while set.
    panic_on_save: AtomicBool,
    /// Saves call `on_save` with the tracker while set.
    tracker: OnceLock<Weak<QuotaTracker>>,
    #[allow(clippy::type_complexity)]
    on_save: Mutex<Option<Box<dyn Fn(&QuotaTracker) + Send>>>,
}

impl Store for HostileStore {
    fn sync(&self, batch: &SyncBatch) -> Result<Vec<u64>, StoreError> {
        if batch.deltas.is_empty() && batch.seq == 1 && self.tracker.get().is_none() {
            // The read at build, before the test set the store up.
            return self.inner.sync(batch);
        }
        if let Some(started) = &*self.save_started.lock().unwrap() {
            let _ = started.send(());
        }
        if self.panic_on_save.load(Ordering::SeqCst) {
            panic!("store bug");
        }
        let delay = *self.save_delay.lock().unwrap();
        thread::sleep(delay);
        if let Some(tracker) = self.tracker.get().and_then(Weak::upgrade) {
            if let Some(on_save) = &*self.on_save.lock().unwrap() {
                on_save(&tracker);
            }
        }
        self.inner.sync(batch)
    }
}

fn tracker_with(store: &Arc<HostileStore>, clock: &ManualClock) -> Arc<QuotaTracker> {
    let tracker = Arc::new(
        QuotaTracker::builder(config(&[
            ("a", 100, Period::Day),
            ("b", 10, Period::Minute),
        ]))
        .clock(clock.clone())
        .store(Arc::clone(store))
        .build()
        .unwrap(),
    );
    let _ = store.tracker.set(Arc::downgrade(&tracker));
    tracker
}

#[test]
fn a_slow_save_does_not_stall_other_threads_calls() {
    within(20, || {
        let store = Arc::new(HostileStore::default());
        let clock = ManualClock::new(JUNE_10);
        let tracker = tracker_with(&store, &clock);
        tracker.record_call("b", 9).unwrap(); // b critical (9 of 10)
        let seen = collect(&tracker);
        clock.advance(60_000); // b's minute ended: the save's snapshot rolls it over
        *store.save_delay.lock().unwrap() = Duration::from_secs(3);
        let (started, save_running) = mpsc::channel();
        *store.save_started.lock().unwrap() = Some(started);
        let saver = {
            let tracker = Arc::clone(&tracker);
            thread::spawn(move || tracker.flush())
        };
        save_running.recv().unwrap();
        // The save holds b's roll-over transition until it returns; this call must not wait.
        let began = Instant::now();
        let recorded = tracker.record_call("b", 5).unwrap();
        let took = began.elapsed();
        assert!(
            took < Duration::from_millis(500),
            "stalled {took:?} behind the save"
        );
        assert_eq!(recorded.usage.used, 5);
        assert!(tracker.usage("a").unwrap().used == 0);
        saver.join().unwrap().unwrap();
        // The roll-over (critical -> normal) and 0 -> 5 (warning) each reached the observer once.
        let levels: Vec<(Level, Level)> = seen
            .lock()
            .unwrap()
            .iter()
            .map(|t| (t.from, t.to))
            .collect();
        assert_eq!(
            levels,
            [
                (Level::Critical, Level::Normal),
                (Level::Normal, Level::Warning)
            ]
        );
    });
}

#[test]
fn an_observer_taking_an_app_mutex_does_not_deadlock_with_a_recording_thread() {
    within(10, || {
        let clock = ManualClock::new(JUNE_10);
        let tracker = Arc::new(
            QuotaTracker::new_with_clock(config(&[("a", 100, Period::Day)]), clock).unwrap(),
        );
        let app = Arc::new(Mutex::new(0u32));
        let entered = Arc::new(AtomicBool::new(false));
        {
            let (app, entered) = (Arc::clone(&app), Arc::clone(&entered));
            tracker.on_transition(move |_| {
                entered.store(true, Ordering::SeqCst);
                *app.lock().unwrap() += 1;
            });
        }
        let held = app.lock().unwrap(); // this thread holds the app's mutex...
        let other = {
            let tracker = Arc::clone(&tracker);
            thread::spawn(move || tracker.record_call("a", 50).unwrap().usage.used)
        };
        // ...while the other thread's observer waits for it,
        while !entered.load(Ordering::SeqCst) {
            thread::yield_now();
        }
        // and this thread records a transition of the same service: it must not wait for
        // the other thread's observer (which waits for this thread).
        tracker.record_call("a", 30).unwrap(); // warning -> critical
        drop(held);
        assert_eq!(other.join().unwrap(), 50);
        // Both transitions were delivered by the other thread once its observer could go on.
        assert_eq!(*app.lock().unwrap(), 2);
    });
}

#[test]
fn a_store_that_calls_back_into_its_tracker_never_hangs() {
    within(10, || {
        let store = Arc::new(HostileStore::default());
        let clock = ManualClock::new(JUNE_10);
        let tracker = tracker_with(&store, &clock);
        tracker.record_call("b", 9).unwrap();
        let seen = collect(&tracker);
        let flushes = Arc::new(Mutex::new(Vec::new()));
        {
            let flushes = Arc::clone(&flushes);
            *store.on_save.lock().unwrap() = Some(Box::new(move |tracker: &QuotaTracker| {
                // Record on a service the save rolled over, read, subscribe, and flush.
                tracker.record_call("b", 1).unwrap();
                tracker.snapshot();
                tracker.on_transition(|_| {});
                flushes.lock().unwrap().push(tracker.flush());
            }));
        }
        clock.advance(60_000);
        tracker.flush().unwrap();
        assert_eq!(*flushes.lock().unwrap(), vec![Err(StoreError::Reentrant)]);
        // The store's own record counted (the save that it triggered coalesced).
        assert_eq!(tracker.usage("b").unwrap().used, 1);
        let levels: Vec<Level> = seen.lock().unwrap().iter().map(|t| t.to).collect();
        assert_eq!(levels, [Level::Normal], "b's roll-over, delivered once");
        *store.on_save.lock().unwrap() = None;
        tracker.flush().unwrap();
    });
}

/// A panic payload whose own `Drop` panics.
struct PanicsOnDrop;

impl Drop for PanicsOnDrop {
    fn drop(&mut self) {
        if !thread::panicking() {
            panic!("payload drop");
        }
    }
}

#[test]
fn a_panicking_payload_drop_does_not_wedge_delivery() {
    within(10, || {
        let clock = ManualClock::new(JUNE_10);
        let tracker = Arc::new(
            QuotaTracker::new_with_clock(config(&[("a", 100, Period::Day)]), clock).unwrap(),
        );
        tracker.on_transition(|t| {
            if t.to == Level::Warning {
                std::panic::panic_any(PanicsOnDrop);
            }
        });
        let seen = collect(&tracker);
        tracker.record_call("a", 50).unwrap(); // warning: the first observer panics
                                               // This thread still delivers, and another thread's calls do not hang.
        tracker.record_call("a", 30).unwrap(); // critical
        let other = Arc::clone(&tracker);
        thread::spawn(move || {
            other.record_call("a", 20).unwrap(); // exhausted
        })
        .join()
        .unwrap();
        let levels: Vec<Level> = seen.lock().unwrap().iter().map(|t| t.to).collect();
        assert_eq!(levels, [Level::Warning, Level::Critical, Level::Exhausted]);
    });
}

#[test]
fn a_panicking_store_is_a_failed_save_and_loses_no_transition() {
    within(10, || {
        let store = Arc::new(HostileStore::default());
        let clock = ManualClock::new(JUNE_10);
        let tracker = tracker_with(&store, &clock);
        let seen = collect(&tracker);
        tracker.record_call("b", 5).unwrap(); // warning
        clock.advance(60_000);
        store.panic_on_save.store(true, Ordering::SeqCst);
        // The roll-over happens in this call's step; the forced save (critical) panics.
        let recorded = tracker.record_call("b", 8).unwrap();
        assert_eq!(recorded.reset.as_ref().map(|t| t.to), Some(Level::Normal));
        assert_eq!(
            recorded.recorded.as_ref().map(|t| t.to),
            Some(Level::Critical)
        );
        let stats = tracker.stats();
        assert_eq!(stats.save_failures, 1);
        assert!(
            stats.last_error.as_deref().unwrap().contains("store bug"),
            "{stats:?}"
        );
        assert!(matches!(tracker.flush(), Err(StoreError::Panicked(_))));
        let levels: Vec<Level> = seen.lock().unwrap().iter().map(|t| t.to).collect();
        assert_eq!(levels, [Level::Warning, Level::Normal, Level::Critical]);
        store.panic_on_save.store(false, Ordering::SeqCst);
        tracker.flush().unwrap();
        let stored = store.inner.state().unwrap();
        let b: Vec<u64> = stored
            .windows()
            .filter(|w| w.service == "b")
            .map(|w| w.total)
            .collect();
        assert_eq!(b, [5, 8], "each minute's calls, in that minute");
    });
}

/// A clock that panics while told to.
struct FlakyClock {
    clock: ManualClock,
    panics: AtomicBool,
}

impl Clock for FlakyClock {
    fn now_ms(&self) -> u64 {
        if self.panics.load(Ordering::SeqCst) {
            panic!("clock bug");
        }
        self.clock.now_ms()
    }
}

#[test]
fn a_panicking_clock_is_reported_and_its_last_good_reading_used() {
    within(10, || {
        let clock = Arc::new(FlakyClock {
            clock: ManualClock::new(JUNE_10),
            panics: AtomicBool::new(false),
        });
        let tracker =
            QuotaTracker::new_with_clock(config(&[("a", 100, Period::Day)]), Arc::clone(&clock))
                .unwrap();
        tracker.record_call("a", 3).unwrap();
        clock.panics.store(true, Ordering::SeqCst);
        let recorded = tracker.record_call("a", 4).unwrap();
        assert_eq!(recorded.usage.used, 7);
        assert_eq!(recorded.usage.window_start_ms, JUNE_10 / DAY * DAY);
        assert_eq!(tracker.now_ms(), JUNE_10);
        clock.panics.store(false, Ordering::SeqCst);
        assert_eq!(tracker.record_call("a", 1).unwrap().usage.used, 8);
    });
}

#[test]
fn store_events_arrive_in_the_order_the_mode_changed_even_with_a_slow_observer() {
    within(30, || {
        let store = MemoryStore::new();
        let clock = ManualClock::new(JUNE_10);
        let tracker = Arc::new(
            QuotaTracker::builder(config(&[("a", 1_000_000, Period::Day)]))
                .clock(clock.clone())
                .store(store.clone())
                .sync_policy(SyncPolicy {
                    interval_ms: 0, // every call saves
                    ..SyncPolicy::default()
                })
                .build()
                .unwrap(),
        );
        let events = Arc::new(Mutex::new(Vec::new()));
        {
            let events = Arc::clone(&events);
            let tracker = Arc::downgrade(&tracker);
            tracker
                .upgrade()
                .unwrap()
                .on_store_event(move |event: &StoreEvent| {
                    thread::sleep(Duration::from_millis(2)); // slow
                    let on = tracker.upgrade().map(|t| t.is_reduced_rate());
                    events.lock().unwrap().push((event.clone(), on));
                });
        }
        let flip = Arc::new(AtomicBool::new(false));
        let workers: Vec<_> = (0..4)
            .map(|_| {
                let (tracker, store, flip, clock) = (
                    Arc::clone(&tracker),
                    store.clone(),
                    Arc::clone(&flip),
                    clock.clone(),
                );
                thread::spawn(move || {
                    for call in 0..400 {
                        clock.advance(250); // past the back-off after a failure
                        if call % 40 == 0 {
                            // Outages on and off, as seen by whoever saves next.
                            store.set_failing(!flip.fetch_xor(true, Ordering::SeqCst));
                        }
                        tracker.record_call("a", 1).unwrap();
                    }
                })
            })
            .collect();
        for worker in workers {
            worker.join().unwrap();
        }
        store.set_failing(false);
        for _ in 0..6 {
            tracker.flush().unwrap();
        }
        let events = events.lock().unwrap();
        assert!(!events.is_empty());
        for (position, (event, _)) in events.iter().enumerate() {
            let entered = matches!(event, StoreEvent::ReducedRateEntered { .. });
            assert_eq!(entered, position % 2 == 0, "out of order: {events:?}");
        }
        assert!(!tracker.is_reduced_rate());
        assert_eq!(tracker.usage("a").unwrap().used, 1_600);
    });
}

#[test]
fn after_unsubscribe_returns_the_observer_is_not_called_again() {
    within(10, || {
        let clock = ManualClock::new(JUNE_10);
        let tracker = Arc::new(
            QuotaTracker::new_with_clock(config(&[("a", 100, Period::Minute)]), clock.clone())
                .unwrap(),
        );
        let calls = Arc::new(AtomicU64::new(0));
        let sink = Arc::clone(&calls);
        let id = tracker.on_transition(move |_| {
            sink.fetch_add(1, Ordering::SeqCst);
        });
        tracker.record_call("a", 50).unwrap();
        assert_eq!(calls.load(Ordering::SeqCst), 1);
        assert!(tracker.unsubscribe(id));
        assert!(!tracker.unsubscribe(id));
        tracker.record_call("a", 30).unwrap();
        clock.advance(60_000);
        tracker.snapshot();
        assert_eq!(calls.load(Ordering::SeqCst), 1);

        // An observer that unsubscribes itself from inside a delivery.
        let own_id = Arc::new(OnceLock::new());
        let count = Arc::new(AtomicU64::new(0));
        {
            let (inner_id, count, tracker2) = (
                Arc::clone(&own_id),
                Arc::clone(&count),
                Arc::downgrade(&tracker),
            );
            let id = tracker.on_transition(move |_| {
                count.fetch_add(1, Ordering::SeqCst);
                if let (Some(tracker), Some(&id)) = (tracker2.upgrade(), inner_id.get()) {
                    assert!(tracker.unsubscribe(id));
                    tracker.record_call("a", 30).unwrap(); // a transition after unsubscribe
                }
            });
            own_id.set(id).unwrap();
        }
        tracker.record_call("a", 50).unwrap();
        assert_eq!(count.load(Ordering::SeqCst), 1);
        assert_eq!(tracker.usage("a").unwrap().used, 80);
    });
}

#[test]
fn many_subscriptions_do_not_stall() {
    // A stall check, not a speed test: quadratic subscribing took 1.8 s for 20,000.
    within(30, || {
        let tracker = QuotaTracker::with_defaults();
        let ids: Vec<_> = (0..100_000)
            .map(|_| tracker.on_transition(|_| {}))
            .collect();
        for id in ids.iter().step_by(2) {
            assert!(tracker.unsubscribe(*id));
        }
        let seen = collect(&tracker);
        tracker.record_call("finnhub", 60).unwrap();
        assert_eq!(seen.lock().unwrap().len(), 1);
        let many = config(
            &(0..100_000)
                .map(|i| {
                    (
                        Box::leak(format!("s{i}").into_boxed_str()) as &str,
                        10,
                        Period::Day,
                    )
                })
                .collect::<Vec<_>>(),
        );
        let tracker = QuotaTracker::new(many).unwrap();
        assert_eq!(tracker.record_call("s99999", 1).unwrap().usage.used, 1);
    });
}

#[test]
fn a_clock_a_year_ahead_or_at_u64_max_never_freezes_or_lowers_counts() {
    within(10, || {
        let store = MemoryStore::new();
        let clock = ManualClock::new(JUNE_10);
        let build = || {
            QuotaTracker::builder(config(&[("a", 100, Period::Day)]))
                .clock(clock.clone())
                .store(store.clone())
                .build()
                .unwrap()
        };
        let tracker = build();
        tracker.record_call("a", 30).unwrap();
        clock.set(JUNE_10 + 365 * DAY); // one bogus reading, a year ahead
        tracker.record_call("a", 1).unwrap();
        tracker.flush().unwrap();
        clock.set(JUNE_10 + 1_000); // right again
        assert_eq!(tracker.usage("a").unwrap().used, 31);
        // Once synced, a restarted tracker sees the same count: the call made on the bogus
        // reading was carried back into the real window.
        tracker.flush().unwrap();
        assert_eq!(build().usage("a").unwrap().used, 31);
        tracker.record_call("a", 1).unwrap();
        assert!(tracker.can_call("a").unwrap());

        clock.set(u64::MAX);
        assert_eq!(tracker.usage("a").unwrap().used, 0);
        tracker.record_call("a", 1).unwrap();
        tracker.record_call("a", 1).unwrap();
        clock.set(JUNE_10 + 2_000);
        assert_eq!(tracker.usage("a").unwrap().used, 34);
        // The next real day is a new window, as it should be.
        clock.set(JUNE_10 + DAY);
        assert_eq!(tracker.record_call("a", 1).unwrap().usage.used, 1);
    });
}

#[test]
fn ntp_sized_steps_back_stay_in_the_later_window() {
    let clock = ManualClock::new(JUNE_10 / DAY * DAY + DAY - 500); // 0.5 s before midnight
    let tracker =
        QuotaTracker::new_with_clock(config(&[("a", 100, Period::Day)]), clock.clone()).unwrap();
    tracker.record_call("a", 10).unwrap();
    clock.advance(1_000); // past midnight: a new day
    assert_eq!(tracker.record_call("a", 1).unwrap().usage.used, 1);
    clock.set(clock.now_ms() - 2_000); // NTP steps back 2 s, before midnight again
    let usage = tracker.record_call("a", 1).unwrap().usage;
    assert_eq!(
        (usage.used, usage.window_start_ms),
        (2, JUNE_10 / DAY * DAY + DAY)
    );
}

/// 32 threads on 12 services, the clock moved by the workers themselves (forward, and small
/// steps back): exact totals, and every service's transitions form one continuous chain that
/// every observer got exactly once, the same ones the callers were told.
#[test]
fn threads_moving_the_clock_lose_nothing_and_deliver_every_transition_once() {
    within(120, || {
        const THREADS: usize = 32;
        const CALLS: u64 = 3_000;
        let periods = [Period::Minute, Period::Hour, Period::Day];
        let names: Vec<String> = (0..12).map(|i| format!("s{i}")).collect();
        let clock = ManualClock::new(JUNE_10);
        let tracker = Arc::new(
            QuotaTracker::new_with_clock(
                TrackerConfig::new(names.iter().enumerate().map(|(i, name)| {
                    ServiceConfig::new(name.clone(), 50 + 25 * i as u64, periods[i % 3])
                })),
                clock.clone(),
            )
            .unwrap(),
        );
        let seen = collect(&tracker);
        let barrier = Arc::new(Barrier::new(THREADS));
        let workers: Vec<_> = (0..THREADS)
            .map(|worker| {
                let (tracker, clock, barrier, names) = (
                    Arc::clone(&tracker),
                    clock.clone(),
                    Arc::clone(&barrier),
                    names.clone(),
                );
                thread::spawn(move || {
                    barrier.wait();
                    let mut told = Vec::new();
                    for call in 0..CALLS {
                        if call % 50 == 0 {
                            clock.advance(1_500);
                        } else if call % 77 == 0 {
                            clock.set(clock.now_ms().saturating_sub(400)); // jitter back
                        }
                        let name = &names[(worker + call as usize) % names.len()];
                        let recorded = tracker.record_call(name, 1).unwrap();
                        told.extend(recorded.transitions().cloned());
                    }
                    told
                })
            })
            .collect();
        let mut told: Vec<Transition> = Vec::new();
        for worker in workers {
            told.extend(worker.join().unwrap());
        }
        let snapshot = tracker.snapshot();
        let total: u64 = snapshot.services().iter().map(|u| u.total_recorded).sum();
        assert_eq!(total, THREADS as u64 * CALLS);
        for usage in snapshot.services() {
            assert_eq!(
                usage.total_recorded,
                THREADS as u64 * CALLS / 12,
                "{}",
                usage.name
            );
        }
        let seen = seen.lock().unwrap().clone();
        let key = |t: &Transition| (t.service.to_string(), t.from, t.to, t.used, t.at_ms);
        let mut a: Vec<_> = seen.iter().map(key).collect();
        let mut b: Vec<_> = told.iter().map(key).collect();
        a.sort();
        b.sort();
        assert_eq!(a, b, "observers got exactly what callers were told");
        for name in &names {
            let chain: Vec<&Transition> = seen.iter().filter(|t| &*t.service == name).collect();
            assert!(!chain.is_empty(), "{name}");
            assert_eq!(chain[0].from, Level::Normal, "{name}");
            for pair in chain.windows(2) {
                assert_eq!(pair[0].to, pair[1].from, "{name}: broken chain {pair:?}");
            }
        }
    });
}
