//! A hostile review of several limits per service (`more_limits`, `Limit`).
//!
//! Each test says whether it was a DEFECT (failed on the code as first reviewed: a real bug,
//! fixed since, the test now its regression guard) or a GUARD (an attack the code survived).

use quota_core::{
    Admission, DenyReason, Level, Limit, ManualClock, MemoryStore, Period, QuotaError, QuotaFile,
    QuotaTracker, ServiceConfig, SyncPolicy, TrackerConfig, Transition, WindowSpec,
};
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::thread;
use std::time::{Duration, Instant};

/// 2024-06-10 00:00:00 UTC, a Monday.
const START: u64 = 1_717_977_600_000;
const MINUTE: u64 = 60_000;
const HOUR: u64 = 3_600_000;

fn quiet_policy() -> SyncPolicy {
    SyncPolicy {
        interval_ms: 3_600_000,
        force_on_critical: false,
        ..SyncPolicy::default()
    }
}

fn two(name: &str, first: (u64, Period), second: (u64, Period)) -> ServiceConfig {
    ServiceConfig::builder(name, first.0, first.1)
        .and_limit(Limit::new(second.0, second.1))
        .build()
        .unwrap()
}

fn with_store(
    services: Vec<ServiceConfig>,
    clock: &ManualClock,
    store: &MemoryStore,
) -> QuotaTracker {
    QuotaTracker::builder(TrackerConfig::new(services))
        .clock(clock.clone())
        .store(store.clone())
        .sync_policy(quiet_policy())
        .build()
        .unwrap()
}

fn local(services: Vec<ServiceConfig>, clock: &ManualClock) -> QuotaTracker {
    QuotaTracker::new_with_clock(TrackerConfig::new(services), clock.clone()).unwrap()
}

/// Every stored window: `service:spec:start -> total`.
fn stored(store: &MemoryStore) -> BTreeMap<String, u64> {
    store
        .state()
        .unwrap()
        .windows()
        .map(|w| {
            (
                format!("{}:{}:{}", w.service, w.spec.key(), w.start_ms),
                w.total,
            )
        })
        .collect()
}

/// The sum of the stored totals of `service` in windows of `spec` (a key such as "hour").
fn stored_in(store: &MemoryStore, service: &str, spec: &str) -> u64 {
    store
        .state()
        .unwrap()
        .windows()
        .filter(|w| w.service == service && w.spec.key() == spec)
        .map(|w| w.total)
        .sum()
}

fn used(tracker: &QuotaTracker, service: &str) -> Vec<u64> {
    tracker
        .usage_limits(service)
        .unwrap()
        .iter()
        .map(|usage| usage.used)
        .collect()
}

/// Runs `f` on its own thread; fails (instead of hanging the suite) if it deadlocks.
fn within<T: Send + 'static>(secs: u64, what: &str, f: impl FnOnce() -> T + Send + 'static) -> T {
    let (tx, rx) = std::sync::mpsc::channel();
    let worker = thread::spawn(move || {
        let _ = tx.send(f());
    });
    match rx.recv_timeout(Duration::from_secs(secs)) {
        Ok(value) => value,
        Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => {
            std::panic::resume_unwind(worker.join().unwrap_err())
        }
        Err(_) => panic!("{what}: no answer in {secs} s (deadlock?)"),
    }
}

// ---------------------------------------------------------------------------------------------
// Ledgers that move between limits
// ---------------------------------------------------------------------------------------------

/// DEFECT: a reconfigure detaches the ledger of a window no limit keeps into the *first*
/// limit's ledger; a later reconfigure that moves that window off the first place carried the
/// detached calls into `SlotState::more`, whose `detached` no cut ever read: lost.
#[test]
fn detached_calls_reach_the_store_after_their_ledger_moves_off_the_first_limit() {
    let clock = ManualClock::new(START + 10 * MINUTE);
    let store = MemoryStore::new();
    let tracker = with_store(
        vec![two("s", (1_000, Period::Hour), (10_000, Period::Day))],
        &clock,
        &store,
    );
    tracker.record_call("s", 5).unwrap();
    // The hour goes: its 5 calls are detached into the day's ledger, now the first.
    tracker
        .reconfigure(TrackerConfig::new([two(
            "s",
            (10_000, Period::Day),
            (100, Period::Minute),
        )]))
        .unwrap();
    // The day moves to the second place, its ledger (and what it took over) with it.
    tracker
        .reconfigure(TrackerConfig::new([two(
            "s",
            (100, Period::Minute),
            (10_000, Period::Day),
        )]))
        .unwrap();
    tracker.flush().unwrap();
    let stored = stored(&store);
    assert_eq!(
        stored.get(&format!("s:day:{START}")),
        Some(&5),
        "{stored:?}"
    );
    assert_eq!(
        stored.get(&format!("s:hour:{START}")),
        Some(&5),
        "the hour's calls were recorded and must reach the store: {stored:?}"
    );
}

/// DEFECT (same root): a single service whose window changes detaches into its own ledger;
/// adding a limit ahead of it moved that ledger into `more`.
#[test]
fn a_respecced_single_limit_then_given_a_first_limit_loses_nothing() {
    let clock = ManualClock::new(START + 10 * MINUTE);
    let store = MemoryStore::new();
    let tracker = with_store(
        vec![ServiceConfig::new("s", 1_000, Period::Hour)],
        &clock,
        &store,
    );
    tracker.record_call("s", 7).unwrap();
    tracker
        .reconfigure(TrackerConfig::new([ServiceConfig::new(
            "s",
            10_000,
            Period::Day,
        )]))
        .unwrap();
    tracker.record_call("s", 2).unwrap();
    tracker
        .reconfigure(TrackerConfig::new([two(
            "s",
            (100, Period::Minute),
            (10_000, Period::Day),
        )]))
        .unwrap();
    tracker.flush().unwrap();
    assert_eq!(stored_in(&store, "s", "hour"), 7, "{:?}", stored(&store));
    assert_eq!(stored_in(&store, "s", "day"), 2, "{:?}", stored(&store));
    assert_eq!(stored_in(&store, "s", "minute"), 0, "{:?}", stored(&store));
    assert_eq!(tracker.stats().unresolved_calls, 0);
}

/// DEFECT (same root, shared admission): a leased block given back by a reconfigure is
/// queued in the first limit's ledger; when the new config lists that window second, the
/// give-back moved into `more` and never reached the store, which kept counting the block.
#[test]
fn a_leased_block_given_back_by_a_reconfigure_to_several_limits_reaches_the_store() {
    let clock = ManualClock::new(START + 10 * MINUTE);
    let store = MemoryStore::new();
    let leased = ServiceConfig::builder("s", 1_000, Period::Hour)
        .admission(Admission::Leased { block: 50 })
        .build()
        .unwrap();
    let tracker = with_store(vec![leased], &clock, &store);
    tracker.try_record("s", 3).unwrap();
    tracker.flush().unwrap();
    // The block's unused calls went back on flush; take another block.
    tracker.try_record("s", 2).unwrap();
    // Several limits, the hour second: the block in hand (48 unused) goes back.
    tracker
        .reconfigure(TrackerConfig::new([two(
            "s",
            (100, Period::Minute),
            (1_000, Period::Hour),
        )]))
        .unwrap();
    tracker.flush().unwrap();
    assert_eq!(
        stored_in(&store, "s", "hour"),
        5,
        "5 calls were made; the unused block must go back: {:?}",
        stored(&store)
    );
    assert_eq!(tracker.stats().unresolved_calls, 0);
}

// ---------------------------------------------------------------------------------------------
// Races with reconfigure
// ---------------------------------------------------------------------------------------------

/// DEFECT: `update_as` picks the locked shared path when it reads settings of several limits
/// (`fast` is false); `shared_update` then reads the settings again and, if a reconfigure to
/// one `Local` limit landed in between, hits `unreachable!("update handles Local admission")`.
#[test]
fn reconfiguring_several_limits_to_one_while_threads_record_never_panics() {
    let clock = ManualClock::new(START + 10 * MINUTE);
    let one = ServiceConfig::new("s", u64::MAX / 4, Period::Hour);
    let several = two(
        "s",
        (u64::MAX / 4, Period::Hour),
        (u64::MAX / 4, Period::Day),
    );
    let tracker = Arc::new(local(vec![several.clone()], &clock));
    let stop = Arc::new(AtomicBool::new(false));
    let calls = Arc::new(AtomicU64::new(0));
    let threads: Vec<_> = (0..3)
        .map(|i| {
            let (tracker, stop, calls) = (tracker.clone(), stop.clone(), calls.clone());
            thread::spawn(move || {
                let handle = tracker.service("s").unwrap();
                while !stop.load(Ordering::Relaxed) {
                    match i {
                        0 => drop(tracker.record_call("s", 1).unwrap()),
                        1 => drop(handle.try_record(1).unwrap()),
                        _ => drop(handle.record_remaining(1).unwrap()),
                    }
                    calls.fetch_add(1, Ordering::Relaxed);
                }
            })
        })
        .collect();
    let deadline = Instant::now() + Duration::from_secs(4);
    let mut round = 0u64;
    while Instant::now() < deadline {
        let config = if round.is_multiple_of(2) {
            one.clone()
        } else {
            several.clone()
        };
        tracker.reconfigure(TrackerConfig::new([config])).unwrap();
        round += 1;
    }
    stop.store(true, Ordering::Relaxed);
    let mut panicked = Vec::new();
    for thread in threads {
        if let Err(panic) = thread.join() {
            let message = panic
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| panic.downcast_ref::<String>().cloned())
                .unwrap_or_default();
            panicked.push(message);
        }
    }
    assert!(
        panicked.is_empty(),
        "a recording thread panicked: {panicked:?}"
    );
    let usage = tracker.usage_limits("s").unwrap();
    assert_eq!(usage[0].used, calls.load(Ordering::Relaxed));
}

/// GUARD: threads record while a reconfigure reorders, adds and drops limits around an hour
/// and a day that every config keeps: with a store, each of those windows ends up holding
/// every call exactly once.
#[test]
fn reordering_limits_under_load_keeps_every_kept_window_exact_in_the_store() {
    let clock = ManualClock::new(START + 10 * MINUTE);
    let store = MemoryStore::new();
    let big = 1u64 << 40;
    let configs = [
        two("s", (big, Period::Hour), (big, Period::Day)),
        two("s", (big, Period::Day), (big, Period::Hour)),
        ServiceConfig::builder("s", big, Period::Minute)
            .and_limit(Limit::new(big, Period::Day))
            .and_limit(Limit::new(big, Period::Hour))
            .build()
            .unwrap(),
        ServiceConfig::builder("s", big, Period::Day)
            .and_limit(Limit::new(big, Period::Hour))
            .and_limit(Limit::new(big, Period::Week))
            .build()
            .unwrap(),
    ];
    let tracker = Arc::new(with_store(vec![configs[0].clone()], &clock, &store));
    let stop = Arc::new(AtomicBool::new(false));
    let threads: Vec<_> = (0..2)
        .map(|_| {
            let (tracker, stop) = (tracker.clone(), stop.clone());
            thread::spawn(move || {
                let mut n = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    tracker.record_call("s", 1).unwrap();
                    n += 1;
                    if n.is_multiple_of(500) {
                        tracker.flush().unwrap();
                    }
                }
                n
            })
        })
        .collect();
    for round in 0..400 {
        let config = configs[round % configs.len()].clone();
        tracker.reconfigure(TrackerConfig::new([config])).unwrap();
        if round.is_multiple_of(50) {
            store.lose_next_replies(1);
        }
    }
    stop.store(true, Ordering::Relaxed);
    let calls: u64 = threads.into_iter().map(|t| t.join().unwrap()).sum();
    tracker.flush().unwrap();
    tracker.flush().unwrap();
    assert_eq!(
        stored_in(&store, "s", "hour"),
        calls,
        "{:?}",
        stored(&store)
    );
    assert_eq!(stored_in(&store, "s", "day"), calls, "{:?}", stored(&store));
    let by_spec: BTreeMap<String, u64> = tracker
        .usage_limits("s")
        .unwrap()
        .iter()
        .map(|u| (format!("{:?}", u.period), u.used))
        .collect();
    assert_eq!(by_spec.get("Hour"), Some(&calls));
    assert_eq!(by_spec.get("Day"), Some(&calls));
}

/// GUARD: a service switched between one limit (the fast path) and two while threads count
/// through a store: the hour, in every config, holds every call, locally and in the store.
#[test]
fn one_limit_and_two_by_turns_under_load_lose_nothing_through_a_store() {
    let clock = ManualClock::new(START + 10 * MINUTE);
    let store = MemoryStore::new();
    let big = 1u64 << 40;
    let one = ServiceConfig::new("s", big, Period::Hour);
    let several = two("s", (big, Period::Hour), (big, Period::Day));
    let tracker = Arc::new(with_store(vec![one.clone()], &clock, &store));
    let threads: Vec<_> = (0..2)
        .map(|_| {
            let tracker = tracker.clone();
            thread::spawn(move || {
                for _ in 0..20_000 {
                    tracker.record_call("s", 1).unwrap();
                }
            })
        })
        .collect();
    for round in 0..300u32 {
        let config = if round.is_multiple_of(2) {
            several.clone()
        } else {
            one.clone()
        };
        tracker.reconfigure(TrackerConfig::new([config])).unwrap();
    }
    for thread in threads {
        thread.join().unwrap();
    }
    tracker.flush().unwrap();
    assert_eq!(used(&tracker, "s")[0], 40_000);
    assert_eq!(tracker.usage("s").unwrap().total_recorded, 40_000);
    assert_eq!(
        stored_in(&store, "s", "hour"),
        40_000,
        "{:?}",
        stored(&store)
    );
}

// ---------------------------------------------------------------------------------------------
// Transitions
// ---------------------------------------------------------------------------------------------

/// What an observer that follows transitions per (service, window) believes: each limit's
/// level, and the transitions that did not follow on from what it was told before (an
/// observer's panic would be caught and logged, so they are kept here).
#[derive(Default)]
struct Followed {
    levels: BTreeMap<String, Level>,
    errors: Vec<String>,
}

fn follow(tracker: &QuotaTracker) -> Arc<Mutex<Followed>> {
    let seen = Arc::new(Mutex::new(Followed::default()));
    let sink = seen.clone();
    tracker.on_transition(move |t: &Transition| {
        let mut seen = sink.lock().unwrap();
        let key = format!("{}:{}", t.service, t.window.key());
        let before = seen.levels.get(&key).copied().unwrap_or(Level::Normal);
        if before != t.from {
            seen.errors
                .push(format!("from {before:?} it was told, a transition {t:?}"));
        }
        seen.levels.insert(key, t.to);
    });
    seen
}

/// The levels above Normal an observer following transitions believes (none told wrong).
fn believed(seen: &Mutex<Followed>) -> BTreeMap<String, Level> {
    let seen = seen.lock().unwrap();
    assert!(seen.errors.is_empty(), "{:#?}", seen.errors);
    raised(&seen.levels)
}

/// The levels the tracker says each limit of `service` has, keyed as `follow` keys them.
fn levels(tracker: &QuotaTracker, service: &str) -> BTreeMap<String, Level> {
    let config = tracker.config();
    let config = config.services.iter().find(|s| s.name == service).unwrap();
    config
        .limits()
        .zip(tracker.usage_limits(service).unwrap())
        .map(|(limit, usage)| (format!("{service}:{}", limit.window.key()), usage.level()))
        .collect()
}

/// The observer's view with its Normal entries left out (a limit at Normal and no limit read
/// alike).
fn raised(seen: &BTreeMap<String, Level>) -> BTreeMap<String, Level> {
    seen.iter()
        .filter(|(_, level)| **level != Level::Normal)
        .map(|(k, v)| (k.clone(), *v))
        .collect()
}

/// DEFECT: a reconfigure that drops a limit above Normal (the minute at Critical) delivered no
/// transition for it: an observer that follows each limit's transitions (as the contract
/// says: one per limit, naming its window) believes the service Critical forever, while
/// `usage` says Normal. A service of one limit whose window changes gets its transition down.
#[test]
fn dropping_a_limit_above_normal_tells_the_observers() {
    let clock = ManualClock::new(START + 10 * MINUTE);
    let tracker = local(
        vec![two("s", (10, Period::Minute), (1_000, Period::Day))],
        &clock,
    );
    let seen = follow(&tracker);
    tracker.record_call("s", 9).unwrap();
    assert_eq!(believed(&seen), raised(&levels(&tracker, "s")));
    tracker
        .reconfigure(TrackerConfig::new([ServiceConfig::new(
            "s",
            1_000,
            Period::Day,
        )]))
        .unwrap();
    assert_eq!(tracker.usage("s").unwrap().level(), Level::Normal);
    assert_eq!(
        believed(&seen),
        raised(&levels(&tracker, "s")),
        "the observers' levels disagree with the tracker's after the minute was dropped"
    );
}

/// DEFECT (same function): a new limit listed where an old one was is said to come down from
/// that old limit's level even when the old limit is kept (at another place): the observers
/// get a transition of the new window from a level it never had.
#[test]
fn a_new_limit_in_the_place_of_a_kept_one_gets_no_transition_from_its_level() {
    let clock = ManualClock::new(START + 10 * MINUTE);
    let tracker = local(
        vec![two("s", (10, Period::Minute), (1_000, Period::Day))],
        &clock,
    );
    let seen = follow(&tracker);
    tracker.record_call("s", 9).unwrap();
    // The minute moves to the second place; an hour takes the first.
    let config = ServiceConfig::builder("s", 100, Period::Hour)
        .and_limit(Limit::new(10, Period::Minute))
        .and_limit(Limit::new(1_000, Period::Day))
        .build()
        .unwrap();
    tracker.reconfigure(TrackerConfig::new([config])).unwrap();
    assert_eq!(believed(&seen), raised(&levels(&tracker, "s")));
}

/// GUARD: a single-limit service whose window changes still gets one transition down (as
/// before the change), naming the new window.
#[test]
fn a_single_limit_respec_still_reports_its_level_change_once() {
    let clock = ManualClock::new(START + 10 * MINUTE);
    let tracker = local(vec![ServiceConfig::new("s", 10, Period::Minute)], &clock);
    let all = Arc::new(Mutex::new(Vec::new()));
    let sink = all.clone();
    tracker.on_transition(move |t| sink.lock().unwrap().push(t.clone()));
    tracker.record_call("s", 9).unwrap();
    tracker
        .reconfigure(TrackerConfig::new([ServiceConfig::new(
            "s",
            1_000,
            Period::Day,
        )]))
        .unwrap();
    let all = all.lock().unwrap();
    assert_eq!(all.len(), 2, "{all:?}");
    assert_eq!((all[1].from, all[1].to), (Level::Critical, Level::Normal));
    assert_eq!(all[1].window, WindowSpec::new(Period::Day));
    assert_eq!(all[1].limit, 1_000);
}

/// GUARD: after a reconfigure that swaps the limits' order, each transition names the
/// window (and count) of the limit whose level changed.
#[test]
fn transitions_name_the_right_window_after_a_reorder() {
    let clock = ManualClock::new(START + 10 * MINUTE);
    let tracker = local(
        vec![two("s", (10, Period::Minute), (20, Period::Hour))],
        &clock,
    );
    let all = Arc::new(Mutex::new(Vec::new()));
    let sink = all.clone();
    tracker.on_transition(move |t| sink.lock().unwrap().push(t.clone()));
    tracker.record_call("s", 5).unwrap();
    tracker
        .reconfigure(TrackerConfig::new([two(
            "s",
            (20, Period::Hour),
            (10, Period::Minute),
        )]))
        .unwrap();
    tracker.record_call("s", 3).unwrap(); // minute 8 of 10: Critical; hour 8 of 20: Normal
    tracker.record_call("s", 9).unwrap(); // minute 17: Exhausted; hour 17: Critical

    // In the order of the limits now (the hour first).
    let all = all.lock().unwrap();
    let got: Vec<_> = all
        .iter()
        .map(|t| (t.window.key(), t.limit, t.from, t.to, t.used))
        .collect();
    assert_eq!(
        got,
        [
            ("minute".to_string(), 10, Level::Normal, Level::Warning, 5),
            ("minute".to_string(), 10, Level::Warning, Level::Critical, 8),
            ("hour".to_string(), 20, Level::Normal, Level::Critical, 17),
            (
                "minute".to_string(),
                10,
                Level::Critical,
                Level::Exhausted,
                17
            ),
        ]
    );
}

/// GUARD: an observer that calls back into the tracker from a transition of a service of
/// several limits (records, reads, flushes, reconfigures) deadlocks nothing, and every count
/// is exact.
#[test]
fn a_reentrant_observer_on_several_limits_deadlocks_nothing() {
    within(20, "re-entrant observer", || {
        let clock = ManualClock::new(START + 10 * MINUTE);
        let store = MemoryStore::new();
        let tracker = Arc::new(with_store(
            vec![two("s", (10, Period::Minute), (1_000, Period::Day))],
            &clock,
            &store,
        ));
        let slot: Arc<OnceLock<std::sync::Weak<QuotaTracker>>> = Arc::new(OnceLock::new());
        slot.set(Arc::downgrade(&tracker)).unwrap();
        let inner = slot.clone();
        let all = Arc::new(Mutex::new(Vec::new()));
        let sink = all.clone();
        let once = AtomicBool::new(false);
        tracker.on_transition(move |t| {
            sink.lock().unwrap().push((t.window.key(), t.from, t.to));
            let Some(tracker) = inner.get().and_then(|w| w.upgrade()) else {
                return;
            };
            let _ = tracker.snapshot();
            let _ = tracker.usage_limits("s").unwrap();
            let _ = tracker.can_call("s").unwrap();
            tracker.flush().unwrap();
            if !once.swap(true, Ordering::SeqCst) {
                tracker.record_call("s", 1).unwrap();
                tracker
                    .reconfigure(TrackerConfig::new([two(
                        "s",
                        (1_000, Period::Day),
                        (10, Period::Minute),
                    )]))
                    .unwrap();
            }
        });
        tracker.record_call("s", 8).unwrap(); // minute Critical: the observer records 1 more
        tracker.flush().unwrap();
        assert_eq!(used(&tracker, "s"), [9, 9]); // day first now
        assert_eq!(stored_in(&store, "s", "minute"), 9);
        assert_eq!(stored_in(&store, "s", "day"), 9);
        let all = all.lock().unwrap();
        assert_eq!(
            *all,
            [("minute".to_string(), Level::Normal, Level::Critical)],
            "one transition, delivered once"
        );
    });
}

// ---------------------------------------------------------------------------------------------
// A store that fails while two limits' windows roll over at different times
// ---------------------------------------------------------------------------------------------

/// GUARD: two instances, two limits; replies lost and syncs failing across a roll-over of the
/// hour (the day goes on): every window's stored total is exact.
#[test]
fn lost_replies_and_failures_across_one_limits_roll_over_lose_nothing() {
    let clock = ManualClock::new(START + 50 * MINUTE);
    let store = MemoryStore::new();
    let config = || vec![two("s", (10_000, Period::Hour), (100_000, Period::Day))];
    let a = Arc::new(with_store(config(), &clock, &store));
    let b = Arc::new(with_store(config(), &clock, &store));
    let run = |phase: u64| {
        let threads: Vec<_> = [a.clone(), b.clone()]
            .into_iter()
            .flat_map(|t| [t.clone(), t])
            .map(|tracker| {
                thread::spawn(move || {
                    for i in 0..500u64 {
                        tracker.record_call("s", 1 + (i + phase) % 3).unwrap();
                        if i.is_multiple_of(100) {
                            let _ = tracker.flush();
                        }
                    }
                })
            })
            .collect();
        for thread in threads {
            thread.join().unwrap();
        }
    };
    // 500 calls per thread, counts 1,2,3 by turns: per thread sum of 1 + (i+phase)%3.
    let per_thread = |phase: u64| (0..500u64).map(|i| 1 + (i + phase) % 3).sum::<u64>();
    store.lose_next_replies(3);
    run(0);
    store.fail_next(2);
    clock.advance(20 * MINUTE); // the hour rolls over, the day does not
    store.lose_next_replies(2);
    run(1);
    a.flush().unwrap();
    b.flush().unwrap();
    a.flush().unwrap();
    let first = 4 * per_thread(0);
    let second = 4 * per_thread(1);
    let stored = stored(&store);
    assert_eq!(
        stored.get(&format!("s:hour:{START}")),
        Some(&first),
        "{stored:?}"
    );
    assert_eq!(
        stored.get(&format!("s:hour:{}", START + HOUR)),
        Some(&second),
        "{stored:?}"
    );
    assert_eq!(
        stored.get(&format!("s:day:{START}")),
        Some(&(first + second))
    );
    assert_eq!(used(&a, "s"), [second, first + second]);
    assert_eq!(used(&b, "s"), [second, first + second]);
}

/// GUARD: a limit removed and added again: the day's calls while it was a limit reach the
/// store, and once re-added it takes the store's total back in at the next sync.
#[test]
fn a_limit_removed_then_added_again_loses_nothing() {
    let clock = ManualClock::new(START + 10 * MINUTE);
    let store = MemoryStore::new();
    let both = two("s", (1_000, Period::Hour), (10_000, Period::Day));
    let tracker = with_store(vec![both.clone()], &clock, &store);
    tracker.record_call("s", 5).unwrap();
    tracker
        .reconfigure(TrackerConfig::new([ServiceConfig::new(
            "s",
            1_000,
            Period::Hour,
        )]))
        .unwrap();
    tracker.record_call("s", 3).unwrap();
    tracker.reconfigure(TrackerConfig::new([both])).unwrap();
    assert_eq!(used(&tracker, "s"), [8, 0], "a new day limit starts at 0");
    tracker.record_call("s", 2).unwrap();
    tracker.flush().unwrap();
    tracker.flush().unwrap();
    assert_eq!(stored_in(&store, "s", "hour"), 10);
    assert_eq!(stored_in(&store, "s", "day"), 7);
    assert_eq!(used(&tracker, "s"), [10, 7]);
}

// ---------------------------------------------------------------------------------------------
// raise_used at window boundaries, limits of equal length
// ---------------------------------------------------------------------------------------------

/// GUARD: an hour in UTC and an hour in Asia/Kolkata (+5:30, half an hour apart): a reset at
/// either window's start belongs to the window before it, not this one; a reset at a
/// window's end belongs to it.
#[test]
fn raise_at_exact_boundaries_of_two_hours_half_an_hour_apart() {
    // 00:10 UTC: the UTC hour is [00:00, 01:00), Kolkata's [23:30, 00:30) UTC.
    let clock = ManualClock::new(START + 10 * MINUTE);
    let kolkata = WindowSpec::new(Period::Hour)
        .timezone("Asia/Kolkata")
        .unwrap();
    let config = ServiceConfig::builder("s", 100, Period::Hour)
        .and_limit(Limit::new(100, kolkata.clone()))
        .build()
        .unwrap();
    let tracker = local(vec![config], &clock);
    let windows: Vec<(u64, u64)> = tracker
        .usage_limits("s")
        .unwrap()
        .iter()
        .map(|u| (u.window_start_ms, u.reset_at_ms))
        .collect();
    assert_eq!(
        windows,
        [
            (START, START + HOUR),
            (START - 30 * MINUTE, START + 30 * MINUTE)
        ]
    );
    // At the UTC hour's start: Kolkata's window holds it.
    let raised = tracker.raise_used("s", 10, Some(START)).unwrap();
    assert!(raised.applied);
    assert_eq!(used(&tracker, "s"), [0, 10]);
    // At Kolkata's start: neither.
    let raised = tracker
        .raise_used("s", 20, Some(START - 30 * MINUTE))
        .unwrap();
    assert!(!raised.applied);
    assert_eq!(used(&tracker, "s"), [0, 10]);
    // At the UTC hour's end: the UTC hour (Kolkata's ended before).
    let raised = tracker.raise_used("s", 30, Some(START + HOUR)).unwrap();
    assert!(raised.applied);
    assert_eq!(used(&tracker, "s"), [30, 10]);
    // Past the UTC hour's end: neither.
    let raised = tracker.raise_used("s", 40, Some(START + HOUR + 1)).unwrap();
    assert!(!raised.applied);
    assert_eq!(used(&tracker, "s"), [30, 10]);
    // The usage is the binding limit's: 70 left in the UTC hour, 90 in Kolkata's.
    assert_eq!(tracker.usage("s").unwrap().remaining, 70);
    // Time moves to Kolkata's end: it rolls over, the UTC hour does not.
    clock.set(START + 30 * MINUTE);
    assert_eq!(used(&tracker, "s"), [30, 0]);
}

/// DEFECT: an hour in UTC and an hour in Asia/Kolkata: a reset reported at exactly the end
/// of Kolkata's window (00:30 UTC) is Kolkata's count (the UTC hour does not reset then),
/// but it went to the first listed hour of equal length that merely contains it.
#[test]
fn raise_with_a_reset_at_one_windows_end_goes_to_that_window() {
    let clock = ManualClock::new(START + 10 * MINUTE);
    let kolkata = WindowSpec::new(Period::Hour)
        .timezone("Asia/Kolkata")
        .unwrap();
    let config = ServiceConfig::builder("s", 100, Period::Hour)
        .and_limit(Limit::new(100, kolkata))
        .build()
        .unwrap();
    let tracker = local(vec![config], &clock);
    let raised = tracker
        .raise_used("s", 60, Some(START + 30 * MINUTE))
        .unwrap();
    assert!(raised.applied);
    assert_eq!(
        used(&tracker, "s"),
        [0, 60],
        "the report resets when Kolkata's hour does: its count"
    );
}

/// GUARD: a raise to the day (the reset at the day's end) leaves the hour alone; a raise
/// with no reset goes to the shortest window; both are kept through the day's roll-over of
/// the hour only.
#[test]
fn raise_goes_to_one_limit_only_and_survives_the_other_rolling_over() {
    let clock = ManualClock::new(START + 10 * MINUTE);
    let tracker = local(
        vec![two("s", (50, Period::Hour), (1_000, Period::Day))],
        &clock,
    );
    let day_end = START + 24 * HOUR;
    assert!(tracker.raise_used("s", 900, Some(day_end)).unwrap().applied);
    assert_eq!(used(&tracker, "s"), [0, 900]);
    assert!(tracker.raise_used("s", 30, None).unwrap().applied);
    assert_eq!(used(&tracker, "s"), [30, 900]);
    clock.advance(HOUR);
    assert_eq!(used(&tracker, "s"), [0, 900]);
    // The hour binds (50 left, 100 in the day).
    assert_eq!(tracker.usage("s").unwrap().remaining, 50);
    tracker.record_call("s", 60).unwrap();
    assert_eq!(used(&tracker, "s"), [60, 960]);
    // The hour binds again: nothing left there (40 in the day).
    let usage = tracker.usage("s").unwrap();
    assert_eq!((usage.limit, usage.remaining), (50, 0));
    assert_eq!(usage.level(), Level::Exhausted);
}

// ---------------------------------------------------------------------------------------------
// Clock jumps, overflow
// ---------------------------------------------------------------------------------------------

/// GUARD: the clock jumps back far enough to leave the minute's window but not the day's,
/// then returns: the minute returns to its window with every call, the day never moved.
#[test]
fn a_clock_jump_back_moves_one_limit_but_not_the_other() {
    let clock = ManualClock::new(START + 12 * HOUR + 30 * 1_000);
    let tracker = local(
        vec![two("s", (1_000, Period::Minute), (100_000, Period::Day))],
        &clock,
    );
    tracker.record_call("s", 5).unwrap();
    clock.set(START + 12 * HOUR - 3 * MINUTE);
    tracker.record_call("s", 3).unwrap();
    assert_eq!(used(&tracker, "s"), [8, 8]);
    clock.set(START + 12 * HOUR + 40 * 1_000);
    tracker.record_call("s", 1).unwrap();
    assert_eq!(used(&tracker, "s"), [9, 9]);
    let limits = tracker.usage_limits("s").unwrap();
    assert_eq!(limits[0].window_start_ms, START + 12 * HOUR);
    assert_eq!(limits[1].window_start_ms, START);
    assert_eq!(limits[0].total_recorded, 9);
    assert_eq!(limits[1].total_recorded, 9);
    // A bogus reading far ahead, then back: nothing lost in either limit.
    clock.set(u64::MAX - 1);
    tracker.record_call("s", 2).unwrap();
    clock.set(START + 12 * HOUR + 50 * 1_000);
    tracker.record_call("s", 1).unwrap();
    assert_eq!(used(&tracker, "s"), [12, 12]);
}

/// GUARD: one limit near overflow (raised to 2^62, then a count that overflows its u64 but
/// not the other's): refused as an invalid count, nothing counted in either limit.
#[test]
fn overflow_in_one_limit_counts_in_none() {
    let clock = ManualClock::new(START + 10 * MINUTE);
    let tracker = local(
        vec![two("s", (u64::MAX, Period::Hour), (u64::MAX, Period::Day))],
        &clock,
    );
    let floor = 1u64 << 62;
    tracker
        .raise_used("s", floor, Some(START + 24 * HOUR))
        .unwrap();
    assert_eq!(used(&tracker, "s"), [0, floor]);
    let err = tracker.record_call("s", u64::MAX - floor + 1).unwrap_err();
    assert!(matches!(err, QuotaError::InvalidCount { .. }), "{err:?}");
    assert_eq!(used(&tracker, "s"), [0, floor]);
    tracker.record_call("s", u64::MAX - floor).unwrap();
    assert_eq!(used(&tracker, "s"), [u64::MAX - floor, u64::MAX]);
    let err = tracker.raise_used("s", floor + 1, None).unwrap_err();
    assert!(matches!(err, QuotaError::InvalidCount { .. }), "{err:?}");
}

/// GUARD: `usage`, `snapshot` and `can_call` agree with `usage_limits` (the binding limit at
/// the highest level), and `try_record` is denied exactly when `can_call` says no.
#[test]
fn usage_snapshot_and_can_call_agree_with_usage_limits() {
    let clock = ManualClock::new(START + 10 * MINUTE);
    let config = ServiceConfig::builder("s", 10, Period::Minute)
        .and_limit(Limit::new(25, Period::Hour).warn_threshold(0.2))
        .build()
        .unwrap();
    let tracker = local(vec![config], &clock);
    for step in 0..40u64 {
        let limits = tracker.usage_limits("s").unwrap();
        let usage = tracker.usage("s").unwrap();
        let snapshot = tracker.snapshot();
        let binding = limits
            .iter()
            .min_by_key(|u| u.limit - u.used.min(u.limit))
            .unwrap();
        assert_eq!(usage.remaining, binding.remaining, "step {step}");
        assert_eq!(usage.limit, binding.limit, "step {step}");
        let highest = limits.iter().map(|u| u.level()).max().unwrap();
        assert_eq!(usage.level(), highest, "step {step}");
        assert_eq!(snapshot.services()[0].remaining, usage.remaining);
        assert_eq!(snapshot.services()[0].level(), highest);
        let can = tracker.can_call("s").unwrap();
        let tried = tracker.try_record("s", 1);
        assert_eq!(can, tried.is_ok(), "step {step}: {tried:?}");
        if step % 7 == 6 {
            clock.advance(MINUTE);
        }
    }
}

/// GUARD: a limit in shadow mode at its threshold edges: `enforce = false` on the hour lets
/// the minute decide; thresholds of exactly 1.0 make Critical and Exhausted one count.
#[test]
fn a_limit_with_edge_thresholds_and_shadow_mode() {
    let clock = ManualClock::new(START + 10 * MINUTE);
    let config = ServiceConfig::builder("s", 10, Period::Minute)
        .and_limit(
            Limit::new(4, Period::Hour)
                .warn_threshold(1.0)
                .critical_threshold(1.0)
                .enforce(false),
        )
        .build()
        .unwrap();
    let tracker = local(vec![config], &clock);
    for _ in 0..8 {
        tracker.try_record("s", 1).unwrap();
    }
    let limits = tracker.usage_limits("s").unwrap();
    assert_eq!((limits[1].used, limits[1].level()), (8, Level::Exhausted));
    let err = tracker.try_record("s", 1).unwrap_err();
    assert!(
        matches!(
            err,
            QuotaError::Denied {
                limit: 10,
                used: 8,
                reason: DenyReason::Critical,
                ..
            }
        ),
        "{err:?}"
    );
}

// ---------------------------------------------------------------------------------------------
// Config files
// ---------------------------------------------------------------------------------------------

#[test]
fn odd_limits_lists_in_config_files_are_clear_errors() {
    let parse =
        |body: &str| QuotaFile::from_toml_str(&format!("[[services]]\nname = \"s\"\n{body}"));
    // An empty list.
    assert!(parse("limits = []").is_err());
    // Both `limit` and `limits`.
    assert!(
        parse("limit = 5\nperiod = \"hour\"\nlimits = [{ limit = 10, period = \"day\" }]").is_err()
    );
    // The same window twice, once named "UTC": UTC is no zone.
    assert!(parse(
        "limits = [{ limit = 5, period = \"hour\" }, { limit = 10, period = \"hour\", timezone = \"UTC\" }]"
    )
    .is_err());
    // An entry that is an empty table.
    assert!(parse("limits = [{ limit = 5, period = \"hour\" }, {}]").is_err());
    // Nested lists.
    assert!(parse("limits = [[{ limit = 5, period = \"hour\" }]]").is_err());
    // Nine limits.
    let nine: Vec<String> = (1..=9)
        .map(|n| format!("{{ limit = 5, period = \"minute\", every = {n} }}"))
        .collect();
    assert!(parse(&format!("limits = [{}]", nine.join(", "))).is_err());
    // Eight are fine.
    let eight = &nine[..8];
    let file = parse(&format!("limits = [{}]", eight.join(", "))).unwrap();
    assert_eq!(file.tracker.services[0].limits().count(), 8);
    // A zero count in a later entry.
    assert!(
        parse("limits = [{ limit = 5, period = \"hour\" }, { limit = 0, period = \"day\" }]")
            .is_err()
    );
    // A huge list.
    let many: Vec<String> = (1..=5_000)
        .map(|n| format!("{{ limit = 5, period = \"second\", every = {n} }}"))
        .collect();
    assert!(parse(&format!("limits = [{}]", many.join(", "))).is_err());
}

/// GUARD: a `limits` list of one entry is a service of one limit, equal to the same service
/// given with `limit` and `period`, and takes the fast path (no several-limit behaviour).
#[test]
fn a_one_entry_limits_list_is_a_plain_service() {
    let listed = QuotaFile::from_toml_str(
        "[[services]]\nname = \"s\"\nlimits = [{ limit = 5, period = \"hour\", every = 2, timezone = \"Europe/Paris\" }]",
    )
    .unwrap();
    let plain = QuotaFile::from_toml_str(
        "[[services]]\nname = \"s\"\nlimit = 5\nperiod = \"hour\"\nevery = 2\ntimezone = \"Europe/Paris\"",
    )
    .unwrap();
    assert_eq!(listed.tracker.services, plain.tracker.services);
    assert!(listed.tracker.services[0].more_limits.is_empty());
}

/// GUARD: a service of several limits round-trips through serde (JSON) as a config.
#[test]
fn a_service_of_several_limits_round_trips_through_serde() {
    let config = ServiceConfig::builder("s", 50, Period::Hour)
        .and_limit(
            Limit::new(
                1_000,
                WindowSpec::new(Period::Day)
                    .timezone("America/New_York")
                    .unwrap(),
            )
            .warn_threshold(0.5)
            .enforce(false),
        )
        .and_limit(Limit::new(
            20_000,
            WindowSpec::new(Period::Month).anchor_day(15).unwrap(),
        ))
        .build()
        .unwrap();
    let json = serde_json::to_string(&config).unwrap();
    let back: ServiceConfig = serde_json::from_str(&json).unwrap();
    assert_eq!(back, config, "{json}");
}

// ---------------------------------------------------------------------------------------------
// Reconfigures inside a sync, raises through a store, a file store
// ---------------------------------------------------------------------------------------------

type Hook = Box<dyn FnOnce() + Send>;

/// A `MemoryStore` that runs a hook in the middle of a sync (applied, not answered yet).
struct HookStore {
    inner: MemoryStore,
    hooks: Mutex<Vec<Hook>>,
}

impl quota_core::Store for HookStore {
    fn sync(&self, batch: &quota_core::SyncBatch) -> Result<Vec<u64>, quota_core::StoreError> {
        let result = self.inner.sync(batch);
        let hook = self.hooks.lock().unwrap().pop();
        if let Some(hook) = hook {
            hook();
        }
        result
    }
}

/// GUARD: reconfigures that drop, move and add limits again while a sync is in flight (cut,
/// applied, not answered; once with the reply lost), with calls recorded there too: every
/// window's stored total is exact and the local counts take the store's in.
#[test]
fn reconfigures_inside_a_sync_lose_nothing_in_any_window() {
    let clock = ManualClock::new(START + 10 * MINUTE);
    let memory = MemoryStore::new();
    let store = Arc::new(HookStore {
        inner: memory.clone(),
        hooks: Mutex::new(Vec::new()),
    });
    let tracker = Arc::new(
        QuotaTracker::builder(TrackerConfig::new([two(
            "s",
            (1_000, Period::Hour),
            (10_000, Period::Day),
        )]))
        .clock(clock.clone())
        .boxed_store(Box::new(ArcStore(store.clone())))
        .sync_policy(quiet_policy())
        .build()
        .unwrap(),
    );
    let weak = Arc::downgrade(&tracker);
    let hook = move |config: ServiceConfig, count: u64| -> Hook {
        let weak = weak.clone();
        Box::new(move || {
            let tracker = weak.upgrade().unwrap();
            tracker.reconfigure(TrackerConfig::new([config])).unwrap();
            tracker.record_call("s", count).unwrap();
        })
    };
    tracker.record_call("s", 5).unwrap();
    store.hooks.lock().unwrap().push(hook(
        two("s", (10_000, Period::Day), (100, Period::Minute)),
        3,
    ));
    tracker.flush().unwrap();
    tracker.flush().unwrap();
    let s = |key: &str| stored(&memory).get(key).copied().unwrap_or(0);
    assert_eq!(s(&format!("s:hour:{START}")), 5, "{:?}", stored(&memory));
    assert_eq!(s(&format!("s:day:{START}")), 8, "{:?}", stored(&memory));
    assert_eq!(stored_in(&memory, "s", "minute"), 3);
    assert_eq!(used(&tracker, "s"), [8, 3]);

    let both = two("s", (1_000, Period::Hour), (10_000, Period::Day));
    store.hooks.lock().unwrap().push(hook(both, 2));
    tracker.flush().unwrap();
    tracker.flush().unwrap();
    assert_eq!(s(&format!("s:hour:{START}")), 7, "{:?}", stored(&memory));
    assert_eq!(s(&format!("s:day:{START}")), 10);
    assert_eq!(stored_in(&memory, "s", "minute"), 3);
    assert_eq!(
        used(&tracker, "s"),
        [7, 10],
        "the hour added again takes in the store's"
    );

    memory.lose_next_replies(1);
    let swapped = two("s", (10_000, Period::Day), (1_000, Period::Hour));
    store.hooks.lock().unwrap().push(hook(swapped, 4));
    tracker.record_call("s", 1).unwrap();
    tracker.flush().unwrap();
    tracker.flush().unwrap();
    assert_eq!(s(&format!("s:hour:{START}")), 12, "{:?}", stored(&memory));
    assert_eq!(s(&format!("s:day:{START}")), 15);
    assert_eq!(used(&tracker, "s"), [15, 12]);
    assert_eq!(tracker.stats().unresolved_calls, 0);
}

/// The store shared by `Arc` (the builder takes it by value).
struct ArcStore(Arc<HookStore>);

impl quota_core::Store for ArcStore {
    fn sync(&self, batch: &quota_core::SyncBatch) -> Result<Vec<u64>, quota_core::StoreError> {
        self.0.sync(batch)
    }
}

/// GUARD: a raise of the day (not the first limit) reaches the store once, through a lost
/// reply, with the calls counted after it; the other instance learns it; the hour is not
/// raised anywhere.
#[test]
fn a_raise_of_a_later_limit_syncs_through_a_lost_reply() {
    let clock = ManualClock::new(START + 10 * MINUTE);
    let store = MemoryStore::new();
    let config = || vec![two("s", (100, Period::Hour), (1_000, Period::Day))];
    let a = with_store(config(), &clock, &store);
    let b = with_store(config(), &clock, &store);
    assert!(
        a.raise_used("s", 900, Some(START + 24 * HOUR))
            .unwrap()
            .applied
    );
    store.lose_next_replies(1);
    a.flush().unwrap();
    a.record_call("s", 2).unwrap();
    a.flush().unwrap();
    b.flush().unwrap();
    let stored = stored(&store);
    assert_eq!(
        stored.get(&format!("s:day:{START}")),
        Some(&902),
        "{stored:?}"
    );
    assert_eq!(
        stored.get(&format!("s:hour:{START}")),
        Some(&2),
        "{stored:?}"
    );
    assert_eq!(used(&a, "s"), [2, 902]);
    assert_eq!(used(&b, "s"), [2, 902]);
}

/// GUARD: two trackers on one file, two threads each, two limits; the minute rolls over
/// between the phases, the hour does not: every window in the file is exact.
#[test]
fn two_trackers_on_one_file_count_every_limit_exactly() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("quota.json");
    let clock = ManualClock::new(START + 10 * MINUTE + 50_000);
    let big = 1u64 << 40;
    let build = || {
        Arc::new(
            QuotaTracker::builder(TrackerConfig::new([two(
                "s",
                (big, Period::Minute),
                (big, Period::Hour),
            )]))
            .clock(clock.clone())
            .store(quota_core::FileStore::new(&path))
            .sync_policy(quiet_policy())
            .build()
            .unwrap(),
        )
    };
    let (a, b) = (build(), build());
    let run = |count: u64| {
        let threads: Vec<_> = [a.clone(), a.clone(), b.clone(), b.clone()]
            .into_iter()
            .map(|tracker| {
                thread::spawn(move || {
                    for i in 0..200u32 {
                        tracker.record_call("s", count).unwrap();
                        if i.is_multiple_of(50) {
                            tracker.flush().unwrap();
                        }
                    }
                })
            })
            .collect();
        for thread in threads {
            thread.join().unwrap();
        }
    };
    run(1);
    clock.advance(20_000);
    run(2);
    for tracker in [&a, &b, &a] {
        tracker.flush().unwrap();
    }
    let state = quota_core::FileStore::new(&path).state().unwrap();
    let mut got: Vec<(String, u64, u64)> = state
        .windows()
        .map(|w| (w.spec.key(), w.start_ms, w.total))
        .collect();
    got.sort();
    assert_eq!(
        got,
        [
            ("hour".to_string(), START, 800 + 1_600),
            ("minute".to_string(), START + 10 * MINUTE, 800),
            ("minute".to_string(), START + 11 * MINUTE, 1_600),
        ]
    );
    assert_eq!(used(&a, "s"), [1_600, 2_400]);
}

/// GUARD: priority calls pass a limit's Critical threshold up to its count, every limit
/// checked: the minute's 10, while the hour has room.
#[test]
fn priority_calls_go_to_the_tightest_limit() {
    let clock = ManualClock::new(START + 10 * MINUTE);
    let tracker = local(
        vec![two("s", (10, Period::Minute), (100, Period::Hour))],
        &clock,
    );
    tracker.try_record("s", 8).unwrap();
    assert!(tracker.try_record("s", 1).is_err());
    tracker.try_record_priority("s", 2).unwrap();
    let err = tracker.try_record_priority("s", 1).unwrap_err();
    assert!(
        matches!(
            err,
            QuotaError::Denied {
                used: 10,
                limit: 10,
                reason: DenyReason::Limit,
                ..
            }
        ),
        "{err:?}"
    );
    assert_eq!(used(&tracker, "s"), [10, 10]);
    assert_eq!(tracker.usage("s").unwrap().remaining, 0);
    assert!(!tracker.can_call("s").unwrap());
}

/// GUARD: threads record in a service of several limits while the clock rolls the minute
/// over and a reconfigure changes a limit's count, drops the hour and adds it again: an
/// observer following each limit's transitions is never told a change from a level it was
/// not told, and ends up believing what `usage_limits` says.
#[test]
fn transitions_under_load_and_reconfigures_follow_on_per_limit() {
    within(60, "transitions under load", || {
        let clock = ManualClock::new(START + 10 * MINUTE);
        let configs = [
            two("s", (1_000, Period::Minute), (6_000, Period::Hour)),
            two("s", (200, Period::Minute), (6_000, Period::Hour)),
            ServiceConfig::new("s", 1_000, Period::Minute),
            two("s", (6_000, Period::Hour), (300, Period::Minute)),
        ];
        let tracker = Arc::new(local(vec![configs[0].clone()], &clock));
        let seen = follow(&tracker);
        let stop = Arc::new(AtomicBool::new(false));
        let threads: Vec<_> = (0..2)
            .map(|_| {
                let (tracker, stop) = (tracker.clone(), stop.clone());
                thread::spawn(move || {
                    while !stop.load(Ordering::Relaxed) {
                        let _ = tracker.record_call("s", 1).unwrap();
                        let _ = tracker.try_record("s", 1);
                    }
                })
            })
            .collect();
        for round in 0..600usize {
            if round.is_multiple_of(7) {
                let config = configs[round / 7 % configs.len()].clone();
                tracker.reconfigure(TrackerConfig::new([config])).unwrap();
            }
            if round.is_multiple_of(50) {
                clock.advance(MINUTE / 2);
            }
            thread::yield_now();
        }
        stop.store(true, Ordering::Relaxed);
        for thread in threads {
            thread.join().unwrap();
        }
        let now = levels(&tracker, "s");
        assert_eq!(believed(&seen), raised(&now));
    });
}
