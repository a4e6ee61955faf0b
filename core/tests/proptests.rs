//! Model-based property test: random record_call / try_record / try_record_priority / clock
//! moves against a simple sequential model, starting at month ends (Jan 31 -> Feb 1, Feb
//! 28/29, Dec -> Jan).

use jiff::{tz::TimeZone, Timestamp};
use proptest::prelude::*;
use quota_core::{
    Level, ManualClock, Period, QuotaError, QuotaTracker, ServiceConfig, TrackerConfig,
};

/// (name, limit, period); limits are multiples of 10 so 0.5, 0.8 and 0.9 of them are whole
/// (with the default thresholds normal admission stops at 0.8 of the limit, the Critical
/// level, before the reserve, from 0.9).
const SERVICES: [(&str, u64, Period); 4] = [
    ("m", 20, Period::Minute),
    ("h", 50, Period::Hour),
    ("d", 100, Period::Day),
    ("mo", 200, Period::Month),
];

/// Instants just before month ends, as "year-month-day hour:minute".
const STARTS: [&str; 5] = [
    "2024-01-31T23:58:30Z",
    "2023-02-28T23:59:00Z",
    "2024-02-28T23:59:00Z",
    "2024-02-29T23:59:50Z",
    "2023-12-31T23:59:59Z",
];

#[derive(Debug, Clone)]
enum Op {
    Record(usize, u64),
    TryRecord(usize, u64),
    TryRecordPriority(usize, u64),
    Advance(u64),
    /// Jump to exactly the end of a service's current window, or 1 ms before it.
    ToBoundary(usize, bool),
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => (0..SERVICES.len(), 1..30u64).prop_map(|(s, n)| Op::Record(s, n)),
        4 => (0..SERVICES.len(), 1..30u64).prop_map(|(s, n)| Op::TryRecord(s, n)),
        2 => (0..SERVICES.len(), 1..30u64).prop_map(|(s, n)| Op::TryRecordPriority(s, n)),
        1 => (0..2_000u64).prop_map(Op::Advance),
        1 => (30_000..90_000u64).prop_map(Op::Advance),
        1 => (3_000_000..4_000_000u64).prop_map(Op::Advance),
        1 => (80_000_000..100_000_000u64).prop_map(Op::Advance),
        1 => (2_000_000_000..3_000_000_000u64).prop_map(Op::Advance),
        2 => (0..SERVICES.len(), any::<bool>()).prop_map(|(s, exact)| Op::ToBoundary(s, exact)),
    ]
}

/// The model's notion of "which window": a calendar key per period.
fn window_key(period: Period, now_ms: u64) -> (i64, i64) {
    let dt = TimeZone::UTC.to_datetime(Timestamp::from_millisecond(now_ms as i64).unwrap());
    match period {
        Period::Second => (now_ms as i64 / 1_000, 0),
        Period::Minute => (now_ms as i64 / 60_000, 0),
        Period::Hour => (now_ms as i64 / 3_600_000, 0),
        Period::Day => (now_ms as i64 / 86_400_000, 0),
        // Weeks from Monday: 1970-01-01 was a Thursday.
        Period::Week => ((now_ms as i64 / 86_400_000 + 3) / 7, 0),
        Period::Month => (i64::from(dt.year()), i64::from(dt.month())),
    }
}

fn model_level(used: u64, limit: u64) -> Level {
    if used >= limit {
        Level::Exhausted
    } else if used * 10 >= limit * 8 {
        Level::Critical
    } else if used * 10 >= limit * 5 {
        Level::Warning
    } else {
        Level::Normal
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 200, ..ProptestConfig::default() })]

    #[test]
    fn tracker_matches_sequential_model(
        start in prop::sample::select(&STARTS[..]),
        ops in prop::collection::vec(op(), 1..120),
    ) {
        let start = start.parse::<Timestamp>().unwrap().as_millisecond() as u64;
        let clock = ManualClock::new(start);
        let config = TrackerConfig::new(
            SERVICES.iter().map(|&(name, limit, period)| ServiceConfig::new(name, limit, period)),
        );
        let tracker = QuotaTracker::new_with_clock(config, clock.clone()).unwrap();
        let mut now = start;
        let mut used = [0u64; SERVICES.len()];
        let mut keys = SERVICES.map(|(_, _, period)| window_key(period, start));

        for op in ops {
            match op {
                Op::Advance(ms) => {
                    now += ms;
                    clock.set(now);
                    continue;
                }
                Op::ToBoundary(s, exact) => {
                    let end = SERVICES[s].2.window_at(now).reset_at_ms;
                    now = now.max(if exact { end } else { end - 1 });
                    clock.set(now);
                    continue;
                }
                _ => {}
            }
            let (Op::Record(s, count) | Op::TryRecord(s, count) | Op::TryRecordPriority(s, count)) = op else {
                unreachable!()
            };
            let (name, limit, period) = SERVICES[s];
            let key = window_key(period, now);
            let reset_from = (key != keys[s]).then(|| model_level(used[s], limit));
            if key != keys[s] {
                keys[s] = key;
                used[s] = 0;
            }
            // Normal admission stops at the Critical level (0.8 of the limit here); priority
            // admission at the limit.
            let cap = match op {
                Op::TryRecordPriority(..) => limit,
                _ => limit * 8 / 10,
            };
            let allowed = used[s] + count <= cap;
            let result = match op {
                Op::Record(..) => tracker.record_call(name, count),
                Op::TryRecordPriority(..) => tracker.try_record_priority(name, count),
                _ => tracker.try_record(name, count),
            };
            let recorded_here = matches!(op, Op::Record(..)) || allowed;
            match result {
                Ok(recorded) => {
                    prop_assert!(recorded_here);
                    let before = model_level(used[s], limit);
                    used[s] += count;
                    let after = model_level(used[s], limit);
                    let own = recorded.transition().filter(|_| before != after);
                    prop_assert_eq!(own.map(|t| (t.from, t.to)), (before != after).then_some((before, after)));
                    if before == after {
                        let expected_reset = reset_from.filter(|&from| from != Level::Normal);
                        prop_assert_eq!(recorded.transition().map(|t| t.from), expected_reset);
                    }
                    prop_assert_eq!(recorded.usage.used, used[s]);
                    prop_assert_eq!(recorded.usage.remaining, limit.saturating_sub(used[s]));
                    prop_assert_eq!(recorded.usage.level(), after);
                    let window = period.window_at(now);
                    prop_assert_eq!(recorded.usage.window_start_ms, window.start_ms);
                    prop_assert_eq!(recorded.usage.reset_at_ms, window.reset_at_ms);
                    prop_assert!(window.start_ms <= now && now < window.reset_at_ms);
                    prop_assert_eq!(window_key(period, window.start_ms), key);
                    prop_assert_ne!(window_key(period, window.reset_at_ms), key);
                    prop_assert_eq!(window_key(period, window.reset_at_ms - 1), key);
                }
                Err(QuotaError::Denied { used: denied_used, limit: denied_limit, .. }) => {
                    prop_assert!(!recorded_here);
                    prop_assert_eq!((denied_used, denied_limit), (used[s], limit));
                }
                Err(other) => prop_assert!(false, "unexpected error {other}"),
            }
            prop_assert_eq!(tracker.can_call(name).unwrap(), model_level(used[s], limit) < Level::Critical);
        }
        let snapshot = tracker.snapshot();
        for (s, &(name, _, period)) in SERVICES.iter().enumerate() {
            let expected = if window_key(period, now) == keys[s] { used[s] } else { 0 };
            prop_assert_eq!(snapshot.service(name).unwrap().used, expected);
        }
    }
}
