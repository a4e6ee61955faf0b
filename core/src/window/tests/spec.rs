//! Window specs without time zones: rules, words, serde, keys, and N-unit and anchored windows
//! in UTC against jiff's calendar.

use super::super::*;
use super::ms;
use proptest::prelude::*;

fn spec(key: &str) -> WindowSpec {
    WindowSpec::from_key(key).unwrap()
}

fn window(key: &str, now: &str) -> (u64, u64) {
    let w = spec(key).window_at(ms(now));
    (w.start_ms, w.reset_at_ms)
}

#[test]
fn the_builder_refuses_what_has_no_window_and_names_it() {
    let month = WindowSpec::new(Period::Month);
    let cases = [
        (
            month.clone().every(0).unwrap_err(),
            "every must be at least 1 (got 0)",
        ),
        (
            month.clone().every(1_201).unwrap_err(),
            "every = 1201 months is too long: at most 1200",
        ),
        (
            WindowSpec::new(Period::Hour).every(25).unwrap_err(),
            "every = 25 hours is too long: at most 24",
        ),
        (
            WindowSpec::new(Period::Week).anchor_day(15).unwrap_err(),
            "anchor_day 15 needs period \"month\" (got \"week\")",
        ),
        (
            month.clone().anchor_day(32).unwrap_err(),
            "anchor_day must be a day of the month, 1 to 31 (got 32)",
        ),
        (
            month.clone().anchor_day(0).unwrap_err(),
            "anchor_day must be a day of the month, 1 to 31 (got 0)",
        ),
        (
            month.clone().timezone("Mars/Olympus_Mons").unwrap_err(),
            "unknown time zone \"Mars/Olympus_Mons\"",
        ),
        (
            month.timezone("Europe/Paris ").unwrap_err(),
            "unknown time zone \"Europe/Paris \"",
        ),
    ];
    for (error, expected) in cases {
        assert!(error.to_string().starts_with(expected), "{error}");
    }
    assert_eq!(
        WindowSpec::from_parts(Period::Day, 0, None, None),
        Err(WindowSpecError::ZeroEvery)
    );
    assert!(WindowSpec::new(Period::Hour).every(24).is_ok());
}

#[test]
fn specs_and_zones_go_between_threads() {
    fn shared<T: Send + Sync + 'static>() {}
    shared::<WindowSpec>();
    shared::<TimeZone>();
    shared::<WindowSpecError>();
}

#[test]
fn specs_in_words() {
    let cases = [
        ("minute", "minute"),
        ("5minute", "5 minutes"),
        ("day@America/Los_Angeles", "day in America/Los_Angeles"),
        ("month+15", "month from day 15"),
        (
            "3month+15@Europe/Paris",
            "3 months from day 15 in Europe/Paris",
        ),
        ("2week", "2 weeks"),
    ];
    for (key, words) in cases {
        assert_eq!(spec(key).to_string(), words);
    }
}

#[test]
fn keys_name_the_whole_spec_and_plain_periods_keep_their_word() {
    for period in Period::ALL {
        let plain = WindowSpec::from(period);
        assert_eq!(plain.key(), period.as_str());
        assert_eq!(plain.as_period(), Some(period));
        assert_eq!(WindowSpec::from_key(period.as_str()), Ok(plain));
    }
    let full = WindowSpec::from_parts(Period::Month, 3, Some("europe/paris"), Some(15)).unwrap();
    assert_eq!(full.key(), "3month+15@Europe/Paris");
    assert_eq!(full.as_period(), None);
    assert_eq!(spec("2week@Etc/GMT+5").zone().unwrap().name(), "Etc/GMT+5");
    // Anchor day 1 is the calendar month.
    assert_eq!(
        WindowSpec::new(Period::Month).anchor_day(1).unwrap().key(),
        "month"
    );
    // An hour in UTC and an hour in Paris are different windows.
    assert_ne!(spec("hour"), spec("hour@Europe/Paris"));
    assert_ne!(spec("hour@Europe/London"), spec("hour@Europe/Paris"));
}

#[test]
fn only_canonical_keys_are_read() {
    for key in [
        "",
        "1day",
        "05minute",
        "0minute",
        "month+1",
        "month+07",
        "month+32",
        "day+15",
        "weekly",
        "Day",
        " day",
        "day ",
        "day@",
        "day@america/los_angeles",
        "day@Nowhere/Land",
        "day@Europe/Paris@x",
        "4294967296day",
        "25hour",
        "+15",
        "@UTC",
        "month++15",
        "month+15+2",
        "day@{x}",
        "day@Europe/Paris:1",
    ] {
        assert!(WindowSpec::from_key(key).is_err(), "{key:?}");
    }
    let long = "d".repeat(10_000);
    let error = WindowSpec::from_key(&long).unwrap_err().to_string();
    assert!(error.len() < 300, "{error}");
}

#[test]
fn serde_writes_plain_fields_and_reads_them_back() {
    let cases = [
        ("minute", r#"{"period":"minute"}"#),
        (
            "3month+15@Europe/Paris",
            r#"{"period":"month","every":3,"timezone":"Europe/Paris","anchor_day":15}"#,
        ),
        ("2day", r#"{"period":"day","every":2}"#),
    ];
    for (key, json) in cases {
        assert_eq!(serde_json::to_string(&spec(key)).unwrap(), json);
        assert_eq!(serde_json::from_str::<WindowSpec>(json).unwrap(), spec(key));
    }
    let refused = [
        (r#"{"period":"day","every":0}"#, "every must be at least 1"),
        (
            r#"{"period":"day","timezone":"Nowhere"}"#,
            "unknown time zone \"Nowhere\"",
        ),
        (
            r#"{"period":"week","anchor_day":3}"#,
            "needs period \"month\"",
        ),
        (r#"{"period":"weekly"}"#, "unknown variant `weekly`"),
    ];
    for (json, expected) in refused {
        let error = serde_json::from_str::<WindowSpec>(json)
            .unwrap_err()
            .to_string();
        assert!(error.contains(expected), "{error}");
    }
}

#[test]
fn n_units_count_from_the_epoch() {
    let now = "2024-02-29T13:47:17.250Z";
    let cases = [
        ("5second", "2024-02-29T13:47:15Z", "2024-02-29T13:47:20Z"),
        ("5minute", "2024-02-29T13:45:00Z", "2024-02-29T13:50:00Z"),
        ("7minute", "2024-02-29T13:46:00Z", "2024-02-29T13:53:00Z"),
        ("6hour", "2024-02-29T12:00:00Z", "2024-02-29T18:00:00Z"),
        // Day 19782 since the epoch; 19782 = 2 * 9891.
        ("2day", "2024-02-29T00:00:00Z", "2024-03-02T00:00:00Z"),
        // Monday 2024-02-26 is 2825 weeks after Monday 1970-01-05: the second of a pair.
        ("2week", "2024-02-19T00:00:00Z", "2024-03-04T00:00:00Z"),
        ("3month", "2024-01-01T00:00:00Z", "2024-04-01T00:00:00Z"),
        ("12month", "2024-01-01T00:00:00Z", "2025-01-01T00:00:00Z"),
        ("month+15", "2024-02-15T00:00:00Z", "2024-03-15T00:00:00Z"),
        ("month+31", "2024-02-29T00:00:00Z", "2024-03-31T00:00:00Z"),
        ("3month+31", "2024-01-31T00:00:00Z", "2024-04-30T00:00:00Z"),
    ];
    for (key, start, reset) in cases {
        assert_eq!(window(key, now), (ms(start), ms(reset)), "{key}");
    }
    // Anchor 31 takes each month's last day when shorter.
    let starts: Vec<u64> = (0..5)
        .scan(ms("2023-01-31T00:00:00Z"), |at, _| {
            let w = spec("month+31").window_at(*at);
            *at = w.reset_at_ms;
            Some(w.start_ms)
        })
        .collect();
    let expected = [
        "2023-01-31",
        "2023-02-28",
        "2023-03-31",
        "2023-04-30",
        "2023-05-31",
    ];
    let expected: Vec<u64> = expected
        .iter()
        .map(|d| ms(&format!("{d}T00:00:00Z")))
        .collect();
    assert_eq!(starts, expected);
    // Before the anchor: the month before's window.
    assert_eq!(
        window("month+15", "2024-03-14T23:59:59.999Z"),
        (ms("2024-02-15T00:00:00Z"), ms("2024-03-15T00:00:00Z"))
    );
}

#[test]
fn windows_before_the_epoch_start_there() {
    // The week of 1970-01-01 (a Thursday) and the first 3-week window begin at the epoch.
    assert_eq!(
        window("week", "1970-01-02T00:00:00Z"),
        (0, ms("1970-01-05T00:00:00Z"))
    );
    assert_eq!(spec("3week").window_at(0), spec("3week").window_at(1));
    let w = spec("day@America/Los_Angeles").window_at(0);
    assert_eq!((w.start_ms, w.reset_at_ms), (0, ms("1970-01-01T08:00:00Z")));
}

#[test]
fn the_last_instants_never_reset_and_do_not_panic() {
    for key in [
        "5minute",
        "2day",
        "3week",
        "1200month+31",
        "hour@Asia/Kolkata",
        "month@Pacific/Apia",
    ] {
        let spec = spec(key);
        for now in [u64::MAX, u64::MAX - 1, 1 << 62, (1 << 62) - 1, 1 << 63] {
            let w = spec.window_at(now);
            assert!(
                w.start_ms <= now && w.reset_at_ms == u64::MAX,
                "{key} {now} {w:?}"
            );
            assert_eq!(spec.window_at(w.start_ms), w, "{key}");
        }
    }
}

/// The windows of one unit with no zone are [`Period::window_at`]'s, through the general path
/// too (which `window_at` skips for them).
#[test]
fn the_general_path_gives_the_periods_own_windows() {
    let mut state = 0x2545_F491_4F6C_DD1D_u64;
    for _ in 0..200_000 {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        let now = state % (1 << 61);
        for period in Period::ALL {
            let general = WindowSpec::new(period).general_window_at(now);
            assert_eq!(general, period.window_at(now), "{period} {now}");
        }
    }
}

/// Any spec, as its parts.
pub(super) fn any_spec(zones: &'static [&'static str]) -> impl Strategy<Value = WindowSpec> {
    let every = prop_oneof![Just(1_u32), 1..13_u32, 1..=1_200_u32];
    let zone = proptest::option::of(proptest::sample::select(zones));
    (
        proptest::sample::select(Period::ALL.to_vec()),
        every,
        zone,
        0..=31_u8,
    )
        .prop_map(|(period, every, zone, anchor)| {
            let every = every.min(WindowSpec::max_every(period));
            let anchor = (period == Period::Month && anchor > 0).then_some(anchor);
            WindowSpec::from_parts(period, every, zone, anchor).unwrap()
        })
}

/// Texts close to keys: numbers, words, anchors and zones, canonical or not.
const NEAR_KEYS: &str = "[0-9]{0,4}(second|minute|hour|day|week|month|mon)(\\+[0-9]{0,3})?\
    (@(UTC|Etc/GMT\\+5|Europe/Paris|europe/paris|[A-Za-z_/+-]{0,12}))?";

proptest! {
    #[test]
    fn every_spec_has_one_key_that_reads_back(spec in any_spec(super::zones::ZONES)) {
        let key = spec.key();
        prop_assert!(
            key.bytes().all(|b| b.is_ascii_alphanumeric() || b"+@/_-".contains(&b)),
            "{}", key
        );
        prop_assert_eq!(WindowSpec::from_key(&key), Ok(spec));
    }

    #[test]
    fn any_text_is_a_key_or_an_error_never_a_panic(text in any::<String>()) {
        if let Ok(spec) = WindowSpec::from_key(&text) {
            prop_assert_eq!(spec.key(), text);
        }
    }

    #[test]
    fn near_keys_are_read_only_when_canonical(text in NEAR_KEYS) {
        if let Ok(spec) = WindowSpec::from_key(&text) {
            prop_assert_eq!(spec.key(), text);
        }
    }
}
