//! Several limits per service (Tiingo: 50 an hour *and* 1,000 a day): all-or-nothing
//! admission across limits under many threads, a level and transitions per limit, the binding
//! limit in `usage`, raises, reconfigure, config files, and counts that sync through a store.

use quota_core::{
    DenyReason, Level, Limit, ManualClock, MemoryStore, Period, QuotaError, QuotaFile,
    QuotaTracker, ServiceConfig, ServiceUsage, TrackerConfig, Transition, WindowSpec,
};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Barrier, Mutex};
use std::thread;

/// 2024-06-10 00:00:00 UTC, a Monday.
const START: u64 = 1_717_977_600_000;
const MINUTE: u64 = 60_000;
const HOUR: u64 = 3_600_000;

fn tiingo() -> ServiceConfig {
    ServiceConfig::builder("tiingo", 50, Period::Hour)
        .and_limit(Limit::new(1_000, Period::Day))
        .build()
        .unwrap()
}

fn tracker(services: Vec<ServiceConfig>, clock: &ManualClock) -> QuotaTracker {
    QuotaTracker::new_with_clock(TrackerConfig::new(services), clock.clone()).unwrap()
}

fn used(tracker: &QuotaTracker, service: &str) -> Vec<u64> {
    let limits = tracker.usage_limits(service).unwrap();
    limits.iter().map(|usage| usage.used).collect()
}

#[test]
fn a_call_is_admitted_only_if_every_limit_admits_it_and_counts_in_every_window() {
    let clock = ManualClock::new(START);
    // 10 a minute and 25 an hour: normal admission stops at 8 and 20 (the Critical
    // threshold, 80%).
    let service = ServiceConfig::builder("finnhub", 10, Period::Minute)
        .and_limit(Limit::new(25, Period::Hour))
        .build()
        .unwrap();
    let tracker = tracker(vec![service], &clock);
    for _ in 0..8 {
        tracker.try_record("finnhub", 1).unwrap();
    }
    let denied = tracker.try_record("finnhub", 1).unwrap_err();
    assert!(
        matches!(
            denied,
            QuotaError::Denied {
                used: 8,
                limit: 10,
                reason: DenyReason::Critical,
                ..
            }
        ),
        "the minute's limit refuses: {denied:?}"
    );
    assert_eq!(
        used(&tracker, "finnhub"),
        [8, 8],
        "a refused call counts in no window"
    );

    clock.advance(MINUTE);
    for _ in 0..8 {
        tracker.try_record("finnhub", 1).unwrap();
    }
    assert_eq!(used(&tracker, "finnhub"), [8, 16]);
    clock.advance(MINUTE);
    for _ in 0..4 {
        tracker.try_record("finnhub", 1).unwrap();
    }
    // The hour's limit binds now: 20 of 25 used, 5 left there, 6 in the minute.
    let denied = tracker.try_record("finnhub", 1).unwrap_err();
    assert!(
        matches!(
            denied,
            QuotaError::Denied {
                used: 20,
                limit: 25,
                reason: DenyReason::Critical,
                ..
            }
        ),
        "the hour's limit refuses: {denied:?}"
    );
    assert_eq!(used(&tracker, "finnhub"), [4, 20]);
    // A priority call may go to each limit's own cap (10 a minute, 25 an hour).
    tracker.try_record_priority("finnhub", 5).unwrap();
    assert_eq!(used(&tracker, "finnhub"), [9, 25]);
    assert!(tracker.try_record_priority("finnhub", 1).is_err());
    // record_call always counts, in every window.
    tracker.record_call("finnhub", 3).unwrap();
    assert_eq!(used(&tracker, "finnhub"), [12, 28]);
    assert!(!tracker.can_call("finnhub").unwrap());
    clock.advance(HOUR);
    assert!(tracker.can_call("finnhub").unwrap());
    assert_eq!(used(&tracker, "finnhub"), [0, 0]);
}

#[test]
fn many_threads_never_pass_any_limit_and_every_window_counts_exactly() {
    let clock = ManualClock::new(START);
    // Normal admission stops at 80 a minute (critical) and at 200 an hour (critical).
    let service = ServiceConfig::builder("mail", 100, Period::Minute)
        .and_limit(Limit::new(250, Period::Hour))
        .build()
        .unwrap();
    let tracker = Arc::new(tracker(
        vec![service, ServiceConfig::new("other", 1_000_000, Period::Day)],
        &clock,
    ));
    let mut admitted_in_hour = 0;
    for minute in 0..4 {
        let admitted = Arc::new(AtomicU64::new(0));
        let barrier = Arc::new(Barrier::new(8));
        let threads: Vec<_> = (0..8)
            .map(|t| {
                let (tracker, admitted, barrier) = (
                    Arc::clone(&tracker),
                    Arc::clone(&admitted),
                    Arc::clone(&barrier),
                );
                thread::spawn(move || {
                    barrier.wait();
                    for i in 0..200u64 {
                        let count = 1 + (i + t) % 3;
                        if tracker.try_record("mail", count).is_ok() {
                            admitted.fetch_add(count, Ordering::Relaxed);
                        }
                        // Another service's calls in between: they never touch mail's counts.
                        tracker.record_call("other", 1).unwrap();
                    }
                })
            })
            .collect();
        for thread in threads {
            thread.join().unwrap();
        }
        let admitted = admitted.load(Ordering::Relaxed);
        admitted_in_hour += admitted;
        let [in_minute, in_hour] = used(&tracker, "mail")[..] else {
            panic!("two limits")
        };
        assert_eq!(
            in_minute, admitted,
            "minute {minute}: the minute counts every admitted call"
        );
        assert_eq!(
            in_hour, admitted_in_hour,
            "minute {minute}: so does the hour"
        );
        assert!(
            in_minute <= 80,
            "minute {minute}: {in_minute} passed the minute's cap"
        );
        assert!(
            in_hour <= 200,
            "minute {minute}: {in_hour} passed the hour's cap"
        );
        assert_eq!(
            tracker.usage("other").unwrap().used,
            1_600 * (minute + 1),
            "no update of another service was lost"
        );
        clock.advance(MINUTE);
    }
    // 80 in each of the first two minutes (at least 78: a count of 3 may not fit the last
    // 2), then the hour's cap binds.
    assert!(admitted_in_hour >= 198, "{admitted_in_hour}");
}

#[test]
fn each_limit_has_its_level_and_transitions_and_usage_describes_the_binding_one() {
    let clock = ManualClock::new(START);
    let tracker = tracker(vec![tiingo()], &clock);
    let seen = Arc::new(Mutex::new(Vec::<Transition>::new()));
    let sink = Arc::clone(&seen);
    tracker.on_transition(move |t| sink.lock().unwrap().push(t.clone()));

    let recorded = tracker.record_call("tiingo", 30).unwrap();
    let transition = recorded.recorded.unwrap();
    assert_eq!(
        (transition.from, transition.to),
        (Level::Normal, Level::Warning)
    );
    assert_eq!(transition.limit, 50);
    assert_eq!(transition.window, WindowSpec::new(Period::Hour));
    // Read back from JSON (what an observer may log and replay), it is the same transition.
    let json = serde_json::to_string(&transition).unwrap();
    assert_eq!(
        serde_json::from_str::<Transition>(&json).unwrap(),
        transition
    );
    assert_eq!(
        recorded.usage.limit, 50,
        "the hour binds: 20 left, against 970"
    );
    assert_eq!(recorded.usage.remaining, 20);

    // A new hour: the hour resets (Warning to Normal), the day goes on.
    clock.advance(HOUR);
    let usage = tracker.usage("tiingo").unwrap();
    assert_eq!(
        (usage.used, usage.limit, usage.level()),
        (0, 50, Level::Normal)
    );
    assert_eq!(used(&tracker, "tiingo"), [0, 30]);
    // 24 in each hour after: the hour stays Normal (its warn threshold is 25), the day passes
    // its own (500) at the 20th hour.
    for hour in 1..24 {
        clock.set(START + hour * HOUR);
        tracker.record_call("tiingo", 24).unwrap();
    }
    let limits = tracker.usage_limits("tiingo").unwrap();
    let day = &limits[1];
    assert_eq!(day.used, 30 + 23 * 24);
    assert_eq!(day.level(), Level::Warning);
    assert_eq!(limits[0].level(), Level::Normal);
    let usage = tracker.usage("tiingo").unwrap();
    assert_eq!(usage.limit, 50, "the hour binds");
    assert_eq!(
        usage.level(),
        Level::Warning,
        "the service's level is the highest"
    );
    let day_transitions: Vec<_> = seen
        .lock()
        .unwrap()
        .iter()
        .filter(|t| t.window == WindowSpec::new(Period::Day))
        .map(|t| (t.from, t.to, t.limit))
        .collect();
    assert_eq!(day_transitions, [(Level::Normal, Level::Warning, 1_000)]);
    let hour_transitions: Vec<_> = seen
        .lock()
        .unwrap()
        .iter()
        .filter(|t| t.window == WindowSpec::new(Period::Hour))
        .map(|t| (t.from, t.to))
        .collect();
    assert_eq!(
        hour_transitions,
        [
            (Level::Normal, Level::Warning),
            (Level::Warning, Level::Normal)
        ]
    );
}

#[test]
fn a_limit_in_shadow_mode_counts_and_reports_but_the_others_deny() {
    let clock = ManualClock::new(START);
    let service = ServiceConfig::builder("llm", 10, Period::Minute)
        .and_limit(Limit::new(1_000, Period::Day).enforce(false))
        .and_limit(Limit::new(12, Period::Hour).warn_threshold(0.25))
        .build()
        .unwrap();
    let tracker = tracker(vec![service], &clock);
    // The hour's own warn threshold: 3 of 12.
    let recorded = tracker.record_call("llm", 3).unwrap();
    assert_eq!(
        recorded.recorded.unwrap().window,
        WindowSpec::new(Period::Hour)
    );
    tracker.try_record("llm", 5).unwrap();
    // 8 of 10 this minute: the minute refuses (it enforces).
    assert!(tracker.try_record("llm", 1).is_err());
    clock.advance(MINUTE);
    // The hour: 8 of 12; normal admission goes up to its Critical threshold (9.6: 10 calls).
    tracker.try_record("llm", 1).unwrap();
    tracker.try_record("llm", 1).unwrap();
    let denied = tracker.try_record("llm", 1).unwrap_err();
    assert!(
        matches!(denied, QuotaError::Denied { limit: 12, .. }),
        "{denied:?}"
    );
    assert_eq!(used(&tracker, "llm"), [2, 10, 10]);
}

#[test]
fn shadow_mode_on_a_limit_admits_what_it_would_deny() {
    let clock = ManualClock::new(START);
    let service = ServiceConfig::builder("llm", 100, Period::Minute)
        .and_limit(Limit::new(5, Period::Day).enforce(false))
        .build()
        .unwrap();
    let tracker = tracker(vec![service], &clock);
    tracker.try_record("llm", 4).unwrap();
    let recorded = tracker.try_record("llm", 4).unwrap();
    assert_eq!(recorded.shadow_denied, Some(DenyReason::Limit));
    assert_eq!(used(&tracker, "llm"), [8, 8]);
}

#[test]
fn raise_used_goes_to_the_limit_whose_window_holds_the_reset() {
    let clock = ManualClock::new(START + 10 * MINUTE);
    let tracker = tracker(vec![tiingo()], &clock);
    tracker.record_call("tiingo", 5).unwrap();
    // A reset at the day's end: the day's count.
    let day_end = START + 24 * HOUR;
    let raised = tracker.raise_used("tiingo", 600, Some(day_end)).unwrap();
    assert!(raised.applied);
    assert_eq!(used(&tracker, "tiingo"), [5, 600]);
    // A reset at the hour's end is in both windows: the shorter one, the hour's.
    let raised = tracker
        .raise_used("tiingo", 45, Some(START + HOUR))
        .unwrap();
    assert!(raised.applied);
    assert_eq!(used(&tracker, "tiingo"), [45, 600]);
    // No reset (a 429): the shortest window's.
    tracker.raise_used("tiingo", 50, None).unwrap();
    assert_eq!(used(&tracker, "tiingo"), [50, 600]);
    // A reset in no current window: ignored.
    let raised = tracker
        .raise_used("tiingo", 999, Some(day_end + HOUR))
        .unwrap();
    assert!(!raised.applied);
    assert_eq!(used(&tracker, "tiingo"), [50, 600]);
}

/// `ServiceUsage::limit_for_reset` names the limit `raise_used` raises, whatever the order of
/// the limits (the shortest window here is the last).
#[test]
fn limit_for_reset_names_the_limit_raise_used_raises() {
    let clock = ManualClock::new(START + 10 * HOUR + 30 * MINUTE + 15_000);
    let config = ServiceConfig::builder("llm", 1_000, Period::Day)
        .and_limit(Limit::new(100, Period::Hour))
        .and_limit(Limit::new(10, Period::Minute))
        .build()
        .unwrap();
    let tracker = tracker(vec![config], &clock);
    tracker.record_call("llm", 2).unwrap();
    let limits = tracker.usage_limits("llm").unwrap();
    let ends: Vec<u64> = limits.iter().map(|usage| usage.reset_at_ms).collect();
    assert_eq!(
        ends,
        [
            START + 24 * HOUR,
            START + 11 * HOUR,
            START + 10 * HOUR + 31 * MINUTE
        ]
    );
    let cases = [
        (Some(START + 24 * HOUR), Some(0), [700, 2, 2]),
        (Some(START + 11 * HOUR), Some(1), [700, 70, 2]),
        (Some(START + 10 * HOUR + 31 * MINUTE), Some(2), [700, 70, 7]),
        (None, Some(2), [700, 70, 8]),
        (Some(START + 10 * HOUR + 30 * MINUTE), Some(1), [700, 71, 8]),
        (Some(START + 24 * HOUR + 1), None, [700, 71, 8]),
    ];
    for (reset, expected, after) in cases {
        let limits = tracker.usage_limits("llm").unwrap();
        let chosen = ServiceUsage::limit_for_reset(&limits, reset);
        assert_eq!(chosen, expected, "{reset:?}");
        // The floor each case raises that limit to: 70% of the day, 70% of the hour, then
        // 70% and 80% of the minute, 71% of the hour.
        let at_least = match chosen {
            Some(at) => after[at],
            None => 999,
        };
        let raised = tracker.raise_used("llm", at_least, reset).unwrap();
        assert_eq!(raised.applied, expected.is_some(), "{reset:?}");
        assert_eq!(used(&tracker, "llm"), after, "{reset:?}");
    }
}

#[test]
fn limits_are_checked_when_configured() {
    let invalid = |config: ServiceConfig| config.validate().unwrap_err().to_string();
    let twice = ServiceConfig::builder("a", 5, Period::Hour)
        .and_limit(Limit::new(9, Period::Hour))
        .build()
        .unwrap_err()
        .to_string();
    assert!(
        twice.contains("entry 2 has the window of entry 1"),
        "{twice}"
    );
    let mut zero = tiingo();
    zero.more_limits[0].count = 0;
    assert!(invalid(zero).contains("entry 2: limit must be at least 1"));
    let mut threshold = tiingo();
    threshold.more_limits[0].warn_threshold = Some(1.5);
    assert!(invalid(threshold).contains("entry 2: warn_threshold must be in (0, 1] (got 1.5)"));
    let mut many = tiingo();
    many.more_limits = (1..9)
        .map(|n| Limit::new(10, WindowSpec::new(Period::Minute).every(n).unwrap()))
        .collect();
    assert!(invalid(many).contains("limits must be at most 8 per service (got 9)"));
    // Shared admission checks every limit in the store (on a store that says it can:
    // `exact_limits.rs`, `leased_limits.rs`).
    for admission in [
        quota_core::Admission::Exact,
        quota_core::Admission::Leased { block: 10 },
    ] {
        let mut shared = tiingo();
        shared.admission = admission;
        shared.validate().unwrap();
    }
    // An hour in UTC and an hour in Paris are different windows.
    ServiceConfig::builder("b", 5, Period::Hour)
        .and_limit(Limit::new(
            9,
            WindowSpec::new(Period::Hour)
                .timezone("Europe/Paris")
                .unwrap(),
        ))
        .build()
        .unwrap();
}

#[test]
fn a_config_file_lists_limits() {
    let file = QuotaFile::from_toml_str(
        r#"
[[services]]
name = "tiingo"
warn_threshold = 0.6
limits = [
  { limit = 50, period = "hour", critical_threshold = 0.9 },
  { limit = 1000, period = "day", timezone = "America/New_York" },
]

[[services]]
name = "finnhub"
limit = 60
period = "minute"
"#,
    )
    .unwrap();
    let tiingo = &file.tracker.services[0];
    assert_eq!((tiingo.limit, tiingo.window.period()), (50, Period::Hour));
    assert_eq!(
        (tiingo.warn_threshold, tiingo.critical_threshold),
        (0.6, 0.9)
    );
    let day = &tiingo.more_limits[0];
    assert_eq!(day.count, 1_000);
    assert_eq!(day.window.key(), "day@America/New_York");
    // The first entry's own critical threshold is its alone; the service's applies to the day.
    assert_eq!(
        day.critical_threshold,
        Some(ServiceConfig::DEFAULT_CRITICAL)
    );
    assert_eq!(day.warn_threshold, None, "the service's warn threshold");
    let limits: Vec<_> = tiingo.limits().collect();
    assert_eq!(limits[1].warn_threshold, Some(0.6));
    assert!(file.tracker.services[1].more_limits.is_empty());

    let same = QuotaFile::from_json_str(
        r#"{"services": [{"name": "x", "limits": [
            {"limit": 5, "period": "hour"},
            {"limit": 9, "period": "hour"}]}]}"#,
    )
    .unwrap_err()
    .to_string();
    assert!(
        same.contains("limits entry 2 has the window of entry 1"),
        "{same}"
    );
    let bad_zone = QuotaFile::from_toml_str(
        "[[services]]\nname = \"x\"\nlimits = [{ limit = 5, period = \"day\", timezone = \"Mars/Base\" }]\n",
    )
    .unwrap_err()
    .to_string();
    assert!(
        bad_zone.contains("timezone must be an IANA time zone name"),
        "{bad_zone}"
    );
    let unknown = QuotaFile::from_toml_str(
        "[[services]]\nname = \"x\"\nlimits = [{ limit = 5, period = \"day\", reserve = 1 }]\n",
    )
    .unwrap_err()
    .to_string();
    assert!(unknown.contains("unknown field `reserve`"), "{unknown}");
}

#[test]
fn reconfigure_keeps_the_count_of_every_window_that_stays() {
    let clock = ManualClock::new(START);
    let tracker = tracker(vec![ServiceConfig::new("tiingo", 50, Period::Hour)], &clock);
    tracker.record_call("tiingo", 30).unwrap();
    // Add the day's limit: the hour keeps its 30; the day starts at 0.
    let done = tracker.reconfigure(TrackerConfig::new([tiingo()])).unwrap();
    assert_eq!(done.changed, ["tiingo"]);
    assert_eq!(used(&tracker, "tiingo"), [30, 0]);
    tracker.record_call("tiingo", 5).unwrap();
    assert_eq!(used(&tracker, "tiingo"), [35, 5]);
    // Swap them: each window keeps its count wherever it is listed.
    let swapped = ServiceConfig::builder("tiingo", 1_000, Period::Day)
        .and_limit(Limit::new(40, Period::Hour))
        .build()
        .unwrap();
    let seen = Arc::new(Mutex::new(Vec::<Transition>::new()));
    let sink = Arc::clone(&seen);
    tracker.on_transition(move |t| sink.lock().unwrap().push(t.clone()));
    tracker.reconfigure(TrackerConfig::new([swapped])).unwrap();
    assert_eq!(used(&tracker, "tiingo"), [5, 35]);
    // 35 of 40 an hour is Critical (from Warning under 50): one transition, the hour's.
    let got: Vec<_> = seen
        .lock()
        .unwrap()
        .iter()
        .map(|t| (t.from, t.to, t.limit))
        .collect();
    assert_eq!(got, [(Level::Warning, Level::Critical, 40)]);
    // Back to the hour alone: the day's count is dropped; the service is one limit again
    // (the fast path's).
    tracker
        .reconfigure(TrackerConfig::new([ServiceConfig::new(
            "tiingo",
            40,
            Period::Hour,
        )]))
        .unwrap();
    assert_eq!(used(&tracker, "tiingo"), [35]);
    tracker.record_call("tiingo", 1).unwrap();
    assert_eq!(tracker.usage("tiingo").unwrap().used, 36);
}

#[test]
fn reconfigure_racing_threads_that_count_in_several_limits_loses_no_count() {
    let clock = ManualClock::new(START);
    let one = ServiceConfig::new("s", 1_000_000, Period::Hour);
    let two = ServiceConfig::builder("s", 1_000_000, Period::Hour)
        .and_limit(Limit::new(2_000_000, Period::Day))
        .build()
        .unwrap();
    let tracker = Arc::new(tracker(vec![two.clone()], &clock));
    let threads: Vec<_> = (0..8)
        .map(|_| {
            let tracker = Arc::clone(&tracker);
            thread::spawn(move || {
                for _ in 0..2_000 {
                    tracker.record_call("s", 1).unwrap();
                }
            })
        })
        .collect();
    for round in 0..100 {
        let config = if round % 2 == 0 {
            one.clone()
        } else {
            two.clone()
        };
        tracker.reconfigure(TrackerConfig::new([config])).unwrap();
    }
    for thread in threads {
        thread.join().unwrap();
    }
    // The hour's window stays through every config: it holds every call.
    let usage = tracker.usage_limits("s").unwrap();
    assert_eq!(usage[0].used, 16_000);
    assert_eq!(usage[0].total_recorded, 16_000);
}

#[test]
fn every_limit_syncs_through_a_shared_store() {
    let clock = ManualClock::new(START);
    let store = MemoryStore::new();
    let build = || {
        QuotaTracker::builder(TrackerConfig::new([tiingo()]))
            .clock(clock.clone())
            .store(store.clone())
            .build()
            .unwrap()
    };
    let (a, b) = (build(), build());
    a.record_call("tiingo", 10).unwrap();
    b.record_call("tiingo", 7).unwrap();
    a.flush().unwrap();
    b.flush().unwrap();
    a.flush().unwrap();
    assert_eq!(used(&a, "tiingo"), [17, 17]);
    assert_eq!(used(&b, "tiingo"), [17, 17]);
    // A new hour: the hour starts over in both; the day keeps every instance's calls.
    clock.advance(HOUR);
    b.record_call("tiingo", 2).unwrap();
    b.flush().unwrap();
    a.flush().unwrap();
    assert_eq!(used(&a, "tiingo"), [2, 19]);
    // The store keeps each limit's windows under their own keys.
    let mut keys: Vec<String> = store
        .state()
        .unwrap()
        .windows()
        .map(|w| format!("{}:{}={}", w.spec.key(), w.start_ms, w.total))
        .collect();
    keys.sort();
    assert_eq!(
        keys,
        [
            format!("day:{START}=19"),
            format!("hour:{START}=17"),
            format!("hour:{}=2", START + HOUR),
        ]
    );
}

#[test]
fn a_limit_in_shadow_mode_never_binds_while_another_enforces() {
    let clock = ManualClock::new(START);
    let service = ServiceConfig::builder("llm", 100, Period::Minute)
        .and_limit(Limit::new(5, Period::Day).enforce(false))
        .build()
        .unwrap();
    let tracker = tracker(vec![service], &clock);
    tracker.record_call("llm", 10).unwrap();
    // The day's 5 are spent (it only reports); the minute's 90 left are what admits.
    let usage = tracker.usage("llm").unwrap();
    assert_eq!((usage.limit, usage.remaining), (100, 90));
    assert_eq!(
        usage.level(),
        Level::Exhausted,
        "the level is still the highest"
    );
    assert!(tracker.can_call("llm").unwrap());
}
