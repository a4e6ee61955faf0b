//! Hostile tests from a review: a hold's give-back after a reconfigure gave the limit it was
//! counted in a fresh count (its window spec changed and changed back, or the limit was
//! dropped and added again). The fresh count never held the estimate: taking it off there
//! forgets calls made since, and the tracker admits past its limit.

use quota_core::{Limit, ManualClock, Period, QuotaTracker, ServiceConfig, TrackerConfig};

const START: u64 = 1_700_000_080_000; // 40 s into a minute, 15 into an hour

fn llm(period: Period) -> ServiceConfig {
    ServiceConfig::builder("llm", 100, period)
        .reserve_fraction(0.0)
        .build()
        .unwrap()
}

fn two_limits(hour: bool) -> ServiceConfig {
    let builder = ServiceConfig::builder("llm", 100, Period::Minute).reserve_fraction(0.0);
    match hour {
        true => builder.and_limit(Limit::new(1_000, Period::Hour)),
        false => builder,
    }
    .build()
    .unwrap()
}

fn local(config: ServiceConfig) -> QuotaTracker {
    let clock = ManualClock::new(START);
    QuotaTracker::new_with_clock(TrackerConfig::new([config]), clock).unwrap()
}

#[test]
fn a_settle_after_the_window_changed_and_changed_back_does_not_take_later_calls_off() {
    let tracker = local(llm(Period::Minute));
    let hold = tracker.hold("llm", 50).unwrap();
    // The same minute throughout: the minute's count starts again at 0 (without the hold).
    tracker
        .reconfigure(TrackerConfig::new([llm(Period::Hour)]))
        .unwrap();
    tracker
        .reconfigure(TrackerConfig::new([llm(Period::Minute)]))
        .unwrap();
    assert_eq!(tracker.usage("llm").unwrap().used, 0);
    tracker.record_call("llm", 30).unwrap();
    let settled = hold.settle(0).unwrap();
    // The 30 calls made since are still counted: the hold's 50 were never in this count.
    assert_eq!(tracker.usage("llm").unwrap().used, 30);
    assert_eq!(settled.used, 30);
    assert_eq!(settled.given_back, 0);
    // A hold counted in the fresh count gives back as any does.
    let after = tracker.hold("llm", 20).unwrap();
    assert_eq!(after.settle(5).unwrap().given_back, 15);
    assert_eq!(tracker.usage("llm").unwrap().used, 35);
}

#[test]
fn a_settle_after_a_limit_was_dropped_and_added_again_does_not_take_later_calls_off() {
    let tracker = local(two_limits(true));
    let hold = tracker.hold("llm", 50).unwrap();
    tracker
        .reconfigure(TrackerConfig::new([two_limits(false)]))
        .unwrap();
    tracker
        .reconfigure(TrackerConfig::new([two_limits(true)]))
        .unwrap();
    tracker.record_call("llm", 30).unwrap();
    let used = |t: &QuotaTracker| -> Vec<u64> {
        t.usage_limits("llm")
            .unwrap()
            .iter()
            .map(|u| u.used)
            .collect()
    };
    assert_eq!(used(&tracker), [80, 30]);
    hold.settle(0).unwrap();
    // The minute kept the hold (given back); the hour's fresh count never had it.
    assert_eq!(used(&tracker), [30, 30]);
}
