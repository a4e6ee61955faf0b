//! Shadow mode (`enforce = false`): every call is counted and admitted; a call that enforcing
//! would have refused says which rule, levels change as usual, transitions are delivered once,
//! and the same holds across threads with exact counts.

use quota_core::{
    Admission, DenyReason, Level, ManualClock, Period, QuotaError, QuotaFile, QuotaTracker,
    ServiceConfig, TrackerConfig,
};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;

const JUNE_10: u64 = 1_718_000_000_000;

/// `limit` per day, critical at 0.8, reserve 0.1 (normal calls stop at 0.8 x limit).
fn shadow(limit: u64) -> ServiceConfig {
    ServiceConfig::builder("beta", limit, Period::Day)
        .enforce(false)
        .build()
        .unwrap()
}

fn tracker(service: ServiceConfig) -> QuotaTracker {
    QuotaTracker::new_with_clock(TrackerConfig::new([service]), ManualClock::new(JUNE_10)).unwrap()
}

#[test]
fn admits_and_counts_what_enforcing_would_refuse_and_says_why() {
    let tracker = tracker(shadow(10));
    for call in 1..=8 {
        let recorded = tracker.try_record("beta", 1).unwrap();
        assert_eq!(
            recorded.shadow_denied, None,
            "call {call} is within the normal stop"
        );
    }
    // The 9th would pass the Critical stop (8 of 10): admitted, reported.
    let ninth = tracker.try_record("beta", 1).unwrap();
    assert_eq!(ninth.shadow_denied, Some(DenyReason::Critical));
    assert_eq!(ninth.usage.used, 9);
    // Priority calls may use the reserve: not a shadow denial until the limit.
    let tenth = tracker.try_record_priority("beta", 1).unwrap();
    assert_eq!(tenth.shadow_denied, None);
    assert_eq!(tenth.usage.level(), Level::Exhausted);
    let past = tracker.try_record_priority("beta", 5).unwrap();
    assert_eq!(past.shadow_denied, Some(DenyReason::Limit));
    assert_eq!(past.usage.used, 15, "counted past the limit");
    assert_eq!(past.usage.remaining, 0);
    assert!(tracker.can_call("beta").unwrap(), "shadow mode admits");
    let handle = tracker.service("beta").unwrap();
    assert_eq!(
        handle.try_record(1).unwrap().shadow_denied,
        Some(DenyReason::Limit)
    );
    assert_eq!(handle.try_record_remaining(1).unwrap(), 0);
    assert_eq!(tracker.usage("beta").unwrap().used, 17);
}

#[test]
fn an_enforcing_service_beside_it_still_denies() {
    let enforcing = ServiceConfig::new("prod", 10, Period::Day);
    let tracker = QuotaTracker::new_with_clock(
        TrackerConfig::new([shadow(10), enforcing]),
        ManualClock::new(JUNE_10),
    )
    .unwrap();
    for _ in 0..20 {
        tracker.try_record("beta", 1).unwrap();
        let _ = tracker.try_record("prod", 1);
    }
    assert_eq!(tracker.usage("beta").unwrap().used, 20);
    assert_eq!(tracker.usage("prod").unwrap().used, 8);
    assert!(matches!(
        tracker.try_record("prod", 1),
        Err(QuotaError::Denied {
            reason: DenyReason::Critical,
            ..
        })
    ));
}

#[test]
fn levels_change_and_each_transition_is_delivered_once() {
    let tracker = tracker(shadow(10));
    let seen = Arc::new(Mutex::new(Vec::new()));
    let sink = Arc::clone(&seen);
    tracker.on_transition(move |t| sink.lock().unwrap().push((t.from, t.to)));
    for _ in 0..30 {
        tracker.try_record("beta", 1).unwrap();
    }
    assert_eq!(
        *seen.lock().unwrap(),
        [
            (Level::Normal, Level::Warning),
            (Level::Warning, Level::Critical),
            (Level::Critical, Level::Exhausted),
        ]
    );
}

#[test]
fn eight_threads_are_all_admitted_and_every_shadow_denial_is_counted_exactly() {
    const THREADS: usize = 8;
    const CALLS: usize = 5_000;
    let limit = 10_000;
    let tracker = Arc::new(tracker(shadow(limit)));
    let shadowed = Arc::new(AtomicUsize::new(0));
    let workers: Vec<_> = (0..THREADS)
        .map(|_| {
            let tracker = Arc::clone(&tracker);
            let shadowed = Arc::clone(&shadowed);
            thread::spawn(move || {
                for _ in 0..CALLS {
                    let recorded = tracker.try_record("beta", 1).expect("shadow mode admits");
                    if recorded.shadow_denied.is_some() {
                        shadowed.fetch_add(1, Ordering::Relaxed);
                    }
                }
            })
        })
        .collect();
    for worker in workers {
        worker.join().unwrap();
    }
    let total = (THREADS * CALLS) as u64;
    assert_eq!(tracker.usage("beta").unwrap().used, total);
    // One call at a time under the service's lock: every call that found the count at the
    // normal stop (8,000) or past it was a shadow denial, and no other.
    let (stop, _) = tracker.config().services[0].normal_stop();
    assert_eq!(shadowed.load(Ordering::Relaxed) as u64, total - stop);
}

#[test]
fn shadow_mode_takes_local_admission() {
    for admission in [Admission::Exact, Admission::Leased { block: 10 }] {
        let error = ServiceConfig::builder("beta", 10, Period::Day)
            .enforce(false)
            .admission(admission)
            .build()
            .unwrap_err();
        let QuotaError::InvalidConfig { field, reason, .. } = &error else {
            panic!("{error:?}");
        };
        assert_eq!(*field, "enforce");
        assert!(reason.contains("Admission::Local"), "{reason}");
    }
}

#[test]
fn a_config_file_turns_it_on() {
    let file = QuotaFile::from_toml_str(
        "[[services]]\nname = \"beta\"\nlimit = 10\nperiod = \"day\"\nenforce = false\n",
    )
    .unwrap();
    assert!(!file.tracker.services[0].enforce);
    let file =
        QuotaFile::from_toml_str("[[services]]\nname = \"prod\"\nlimit = 10\nperiod = \"day\"\n")
            .unwrap();
    assert!(file.tracker.services[0].enforce, "enforcing by default");
    let error = QuotaFile::from_toml_str(
        "[[services]]\nname = \"beta\"\nlimit = 10\nperiod = \"day\"\nenforce = \"no\"\n",
    )
    .unwrap_err();
    assert_eq!(
        error.to_string(),
        "invalid TOML at line 5, column 11: invalid type: string \"no\", expected a boolean"
    );
}
