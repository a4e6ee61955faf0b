//! Window specs through the tracker, a config file and a store: days in a time zone (23 and
//! 25 hours across DST), N units, billing months from an anchor day, seconds and weeks, and
//! store keys that name the whole spec.

use quota_core::{
    ManualClock, MemoryStore, Period, QuotaError, QuotaFile, QuotaTracker, ServiceConfig,
    TrackerConfig, WindowSpec,
};

fn ms(text: &str) -> u64 {
    text.parse::<jiff::Timestamp>().unwrap().as_millisecond() as u64
}

fn pacific_day() -> WindowSpec {
    WindowSpec::new(Period::Day)
        .timezone("America/Los_Angeles")
        .unwrap()
}

fn tracker(service: ServiceConfig, clock: &ManualClock) -> QuotaTracker {
    QuotaTracker::new_with_clock(TrackerConfig::new([service]), clock.clone()).unwrap()
}

#[test]
fn a_day_in_a_time_zone_runs_from_local_midnight_across_dst() {
    // 2024-03-10: clocks spring forward in Los Angeles (a 23-hour day); 2024-11-03: back
    // (25 hours).
    let clock = ManualClock::new(ms("2024-03-10T07:59:59Z")); // 23:59:59 PST on the 9th
    let tracker = tracker(ServiceConfig::new("maps", 10, pacific_day()), &clock);
    let before = tracker.record_call("maps", 4).unwrap().usage;
    assert_eq!(before.reset_at_ms, ms("2024-03-10T08:00:00Z"));
    clock.set(ms("2024-03-10T08:00:00Z"));
    let spring = tracker.record_call("maps", 1).unwrap().usage;
    assert_eq!(spring.used, 1, "a new day at local midnight");
    assert_eq!(spring.window_start_ms, ms("2024-03-10T08:00:00Z"));
    assert_eq!(spring.reset_at_ms, ms("2024-03-11T07:00:00Z"));
    assert_eq!(spring.reset_at_ms - spring.window_start_ms, 23 * 3_600_000);

    clock.set(ms("2024-11-03T12:00:00Z"));
    let fall = tracker.usage("maps").unwrap();
    assert_eq!(fall.window_start_ms, ms("2024-11-03T07:00:00Z"));
    assert_eq!(fall.reset_at_ms - fall.window_start_ms, 25 * 3_600_000);
}

#[test]
fn n_units_months_from_an_anchor_day_seconds_and_weeks() {
    let clock = ManualClock::new(ms("2024-02-29T13:47:30Z"));
    let five_minutes = WindowSpec::new(Period::Minute).every(5).unwrap();
    let billing = WindowSpec::new(Period::Month).anchor_day(31).unwrap();
    let config = TrackerConfig::new([
        ServiceConfig::new("search", 100, five_minutes),
        ServiceConfig::new("llm", 100, billing),
        ServiceConfig::new("burst", 2, Period::Second),
        ServiceConfig::new("digest", 7, Period::Week),
    ]);
    let tracker = QuotaTracker::new_with_clock(config, clock.clone()).unwrap();
    let window = |name| {
        let usage = tracker.usage(name).unwrap();
        (usage.window_start_ms, usage.reset_at_ms)
    };
    assert_eq!(
        window("search"),
        (ms("2024-02-29T13:45:00Z"), ms("2024-02-29T13:50:00Z"))
    );
    // Anchored on the 31st: February's window starts on its last day, March's on the 31st.
    assert_eq!(
        window("llm"),
        (ms("2024-02-29T00:00:00Z"), ms("2024-03-31T00:00:00Z"))
    );
    assert_eq!(
        window("burst"),
        (ms("2024-02-29T13:47:30Z"), ms("2024-02-29T13:47:31Z"))
    );
    // ISO weeks start on Monday: 2024-02-26.
    assert_eq!(
        window("digest"),
        (ms("2024-02-26T00:00:00Z"), ms("2024-03-04T00:00:00Z"))
    );
    tracker.record_call("burst", 2).unwrap();
    assert!(tracker.try_record("burst", 1).is_err());
    clock.advance(1_000);
    assert!(tracker.try_record("burst", 1).is_ok(), "the next second");
}

#[test]
fn store_keys_name_the_whole_spec() {
    let store = MemoryStore::new();
    let clock = ManualClock::new(ms("2024-06-10T12:00:00Z"));
    let paris_hour = WindowSpec::new(Period::Hour)
        .timezone("Europe/Paris")
        .unwrap();
    let tracker = QuotaTracker::builder(TrackerConfig::new([ServiceConfig::new(
        "api", 100, paris_hour,
    )]))
    .clock(clock.clone())
    .store(store.clone())
    .build()
    .unwrap();
    tracker.record_call("api", 3).unwrap();
    tracker.flush().unwrap();
    // The same service counted per UTC hour is another window: a fresh count, its own key.
    tracker
        .reconfigure(TrackerConfig::new([ServiceConfig::new(
            "api",
            100,
            Period::Hour,
        )]))
        .unwrap();
    assert_eq!(tracker.usage("api").unwrap().used, 0);
    tracker.record_call("api", 2).unwrap();
    tracker.flush().unwrap();
    let mut stored: Vec<(String, u64, u64)> = store
        .state()
        .unwrap()
        .windows()
        .map(|w| (w.spec.key(), w.start_ms, w.total))
        .collect();
    stored.sort();
    let hour = ms("2024-06-10T12:00:00Z");
    assert_eq!(
        stored,
        [
            ("hour".to_owned(), hour, 2),
            ("hour@Europe/Paris".to_owned(), hour, 3)
        ]
    );
    // A new tracker of the Paris hour reads its own total back.
    let again = QuotaTracker::builder(TrackerConfig::new([ServiceConfig::new(
        "api",
        100,
        WindowSpec::from_key("hour@Europe/Paris").unwrap(),
    )]))
    .clock(clock)
    .store(store.clone())
    .build()
    .unwrap();
    assert_eq!(again.usage("api").unwrap().used, 3);
}

#[test]
fn a_config_file_sets_every_field_of_the_window_and_says_where_it_is_wrong() {
    let file = QuotaFile::from_toml_str(
        "[[services]]\nname = \"maps\"\nlimit = 10000\nperiod = \"day\"\n\
         timezone = \"America/Los_Angeles\"\n\n\
         [[services]]\nname = \"llm\"\nlimit = 5\nperiod = \"month\"\nevery = 3\nanchor_day = 15\n",
    )
    .unwrap();
    assert_eq!(file.tracker.services[0].window, pacific_day());
    assert_eq!(file.tracker.services[1].window.key(), "3month+15");

    let cases = [
        (
            "timezone = \"Mars/Olympus\"",
            "invalid config at line 5, column 1: service \"x\": timezone must be an \
             IANA time zone name, such as \"America/Los_Angeles\" (got \"Mars/Olympus\")",
        ),
        (
            "every = 0",
            "invalid config at line 5, column 1: service \"x\": every must be from 1 \
             to 36525 for days (got 0)",
        ),
        (
            "anchor_day = 15",
            "invalid config at line 5, column 1: service \"x\": anchor_day needs \
             period \"month\" (got 15)",
        ),
    ];
    for (line, message) in cases {
        let text = format!("[[services]]\nname = \"x\"\nlimit = 1\nperiod = \"day\"\n{line}\n");
        let error = QuotaFile::from_toml_str(&text).unwrap_err();
        assert_eq!(error.to_string(), message, "{line}");
    }
    let json = QuotaFile::from_json_str(
        r#"{"services": [{"name": "x", "limit": 1, "period": "month", "anchor_day": 32}]}"#,
    )
    .unwrap_err();
    assert!(
        json.to_string()
            .contains("anchor_day must be a day of the month, 1 to 31 (got 32)"),
        "{json}"
    );
}

#[test]
fn an_unknown_zone_in_code_is_a_typed_error() {
    let error = WindowSpec::new(Period::Day)
        .timezone("Nowhere/Land")
        .unwrap_err();
    assert!(error.to_string().contains("Nowhere/Land"), "{error}");
    let error = ServiceConfig::builder("x", 0, pacific_day())
        .build()
        .unwrap_err();
    assert!(matches!(
        error,
        QuotaError::InvalidConfig { field: "limit", .. }
    ));
}
