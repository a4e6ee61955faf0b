//! Bad input gets a typed error and changes nothing.

use quota_core::{ManualClock, Period, QuotaError, QuotaTracker, ServiceConfig, TrackerConfig};

fn tracker() -> QuotaTracker {
    let config = TrackerConfig::new([
        ServiceConfig::new("a", 10, Period::Day),
        ServiceConfig::new("b", u64::MAX, Period::Day),
    ]);
    QuotaTracker::new_with_clock(config, ManualClock::new(1_700_000_000_000)).unwrap()
}

#[test]
fn unknown_service_is_named() {
    let tracker = tracker();
    let before = tracker.snapshot();
    for result in [
        tracker.record_call("nope", 1).map(|_| ()),
        tracker.try_record("nope", 1).map(|_| ()),
        tracker.can_call("nope").map(|_| ()),
        tracker.usage("nope").map(|_| ()),
        tracker.reserve_allocation("nope").map(|_| ()),
    ] {
        let error = result.unwrap_err();
        assert_eq!(error, QuotaError::UnknownService("nope".into()));
        assert!(error.to_string().contains("nope"));
    }
    assert_eq!(tracker.snapshot(), before);
}

#[test]
fn zero_and_overflowing_counts_are_refused_without_change() {
    let tracker = tracker();
    tracker.record_call("b", u64::MAX - 5).unwrap();
    let before = tracker.snapshot();
    assert!(matches!(
        tracker.record_call("a", 0),
        Err(QuotaError::InvalidCount { count: 0, .. })
    ));
    assert!(matches!(
        tracker.try_record("a", 0),
        Err(QuotaError::InvalidCount { count: 0, .. })
    ));
    let overflow = tracker.record_call("b", 6).unwrap_err();
    assert!(matches!(
        overflow,
        QuotaError::InvalidCount { count: 6, .. }
    ));
    assert!(overflow.to_string().contains("overflow"), "{overflow}");
    assert!(matches!(
        tracker.try_record("b", u64::MAX),
        Err(QuotaError::InvalidCount { .. })
    ));
    assert_eq!(tracker.snapshot(), before);
    tracker.record_call("b", 5).unwrap();
    assert_eq!(tracker.usage("b").unwrap().used, u64::MAX);
}

#[test]
fn invalid_config_is_refused() {
    let config = TrackerConfig::new([ServiceConfig::new("a", 0, Period::Day)]);
    let error = QuotaTracker::new(config).unwrap_err();
    assert_eq!(
        error,
        QuotaError::InvalidConfig {
            service: Some("a".into()),
            field: "limit",
            value: "0".into(),
            reason: "must be at least 1".into(),
        }
    );
    assert_eq!(
        error.to_string(),
        "invalid config: service \"a\": limit must be at least 1 (got 0)"
    );
}

#[test]
fn try_record_denies_without_recording() {
    let tracker = tracker();
    tracker.try_record("a", 7).unwrap();
    // 7 of 10 is below critical (8), but 7 + 4 > 10.
    let denied = tracker.try_record("a", 4).unwrap_err();
    assert_eq!(
        denied,
        QuotaError::Denied {
            service: "a".into(),
            count: 4,
            used: 7,
            limit: 10,
            reason: quota_core::DenyReason::Limit,
        }
    );
    assert!(denied.to_string().ends_with("over the limit"), "{denied}");
    assert_eq!(tracker.usage("a").unwrap().used, 7);
    // Crossing into critical is allowed; from critical on nothing is.
    tracker.try_record("a", 1).unwrap();
    assert!(matches!(
        tracker.try_record("a", 1),
        Err(QuotaError::Denied {
            used: 8,
            reason: quota_core::DenyReason::Critical,
            ..
        })
    ));
    assert_eq!(tracker.usage("a").unwrap().used, 8);
    // record_call still records past the limit; remaining saturates.
    let usage = tracker.record_call("a", 5).unwrap().usage;
    assert_eq!((usage.used, usage.remaining), (13, 0));
    assert_eq!(usage.percent_used(), 130.0);
}

#[test]
fn many_services_are_each_found_by_name() {
    // More services than the linear lookup handles: the hash map path.
    let names: Vec<String> = (0..20).map(|i| format!("service-{i}")).collect();
    let config = TrackerConfig::new(
        names
            .iter()
            .map(|n| ServiceConfig::new(n, 100, Period::Day)),
    );
    let tracker =
        QuotaTracker::new_with_clock(config, ManualClock::new(1_700_000_000_000)).unwrap();
    for (i, name) in names.iter().enumerate() {
        tracker.record_call(name, i as u64 + 1).unwrap();
    }
    for (i, name) in names.iter().enumerate() {
        assert_eq!(tracker.usage(name).unwrap().used, i as u64 + 1);
    }
    assert_eq!(
        tracker.usage("service-20").unwrap_err(),
        QuotaError::UnknownService("service-20".into())
    );
}

#[test]
fn a_lease_of_no_calls_is_an_invalid_config() {
    let built = ServiceConfig::builder("llm", 100, Period::Day)
        .admission(quota_core::Admission::Leased { block: 0 })
        .build();
    let error = built.expect_err("a block of 0");
    assert!(
        matches!(
            error,
            QuotaError::InvalidConfig {
                field: "admission",
                ..
            }
        ),
        "{error}"
    );
    assert_eq!(
        error.to_string(),
        "invalid config: service \"llm\": admission needs a lease block of at least 1 (got \
         Admission::Leased { block: 0 })"
    );
    // A block of 1 is fine.
    ServiceConfig::builder("llm", 100, Period::Day)
        .admission(quota_core::Admission::Leased { block: 1 })
        .build()
        .unwrap();
}
