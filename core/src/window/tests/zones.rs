//! Window specs in time zones: known days and hours, jiff's `start_of_day` and "compatible"
//! reading, and the partition of time around every offset change of the zones below. The
//! independent oracle (Node's `Intl`) is `core/tests/tz_oracle.rs`.

use super::super::zone::bundled_database;
use super::super::*;
use super::ms;
use jiff::tz::TimeZone as JiffZone;
use jiff::Timestamp;
use proptest::prelude::*;

/// The zones the tests walk: whole-hour and half-hour daylight saving time, a zone that moved
/// its clock at midnight (Sao Paulo before 2019), two that skipped a day (Apia 2011-12-30,
/// Kiritimati 1994-12-31), a 2-hour daylight saving time (Troll), a zone half an hour off UTC
/// without it (Kolkata) and a fixed offset.
pub(super) const ZONES: &[&str] = &[
    "America/Los_Angeles",
    "Europe/Paris",
    "Australia/Lord_Howe",
    "Asia/Kolkata",
    "America/Sao_Paulo",
    "Pacific/Apia",
    "Europe/London",
    "Etc/GMT+5",
    "Antarctica/Troll",
    "Pacific/Kiritimati",
    "America/St_Johns",
];

fn spec(key: &str) -> WindowSpec {
    WindowSpec::from_key(key).unwrap()
}

fn window(key: &str, now: &str) -> (u64, u64) {
    let w = spec(key).window_at(ms(now));
    (w.start_ms, w.reset_at_ms)
}

fn jiff_zone(name: &str) -> JiffZone {
    bundled_database().get(name).unwrap()
}

const HOUR: u64 = 3_600_000;

#[test]
fn zones_come_from_the_bundled_database_whatever_the_host_has() {
    // Nothing is set up: no TZDIR, no system database is looked at.
    assert_eq!(
        format!("{:?}", bundled_database()),
        "TimeZoneDatabase(Bundled(available))"
    );
    for name in ZONES {
        assert_eq!(TimeZone::new(name).unwrap().name(), *name);
    }
    assert_eq!(
        TimeZone::new("europe/PARIS").unwrap().name(),
        "Europe/Paris"
    );
    assert_eq!(TimeZone::new("US/Pacific").unwrap().name(), "US/Pacific");
    for name in [
        "",
        "Nowhere",
        "Etc/Unknown",
        "Europe/Paris ",
        "/Europe/Paris",
        "Europe//Paris",
        "Europe/Paris:1",
        "{Europe/Paris}",
        "+05:30",
        "../etc/passwd",
        "Europe\u{e9}",
    ] {
        let error = TimeZone::new(name).unwrap_err();
        assert_eq!(error, WindowSpecError::UnknownTimeZone(name.to_owned()));
    }
    assert!(TimeZone::new(&"A".repeat(65)).is_err());
}

#[test]
fn days_follow_local_midnight_across_daylight_saving_time() {
    let la = "day@America/Los_Angeles";
    // Spring forward: a 23-hour day; fall back: a 25-hour day.
    let (start, reset) = window(la, "2024-03-10T12:00:00Z");
    assert_eq!(
        (start, reset - start),
        (ms("2024-03-10T08:00:00Z"), 23 * HOUR)
    );
    let (start, reset) = window(la, "2024-11-03T12:00:00Z");
    assert_eq!(
        (start, reset - start),
        (ms("2024-11-03T07:00:00Z"), 25 * HOUR)
    );
    // Sao Paulo moved its clock from 00:00 to 01:00: the day starts at 01:00 local.
    let (start, reset) = window("day@America/Sao_Paulo", "2018-11-04T12:00:00Z");
    assert_eq!(
        (start, reset - start),
        (ms("2018-11-04T03:00:00Z"), 23 * HOUR)
    );
    // Apia skipped 2011-12-30: the 29th is followed by the 31st.
    let apia = "day@Pacific/Apia";
    let (start, reset) = window(apia, "2011-12-30T09:59:59Z"); // Dec 29, 23:59:59 local
    assert_eq!(
        (start, reset),
        (ms("2011-12-29T10:00:00Z"), ms("2011-12-30T10:00:00Z"))
    );
    let (start, reset) = window(apia, "2011-12-30T10:00:00Z"); // Dec 31, 00:00 local
    assert_eq!(
        (start, reset),
        (ms("2011-12-30T10:00:00Z"), ms("2011-12-31T10:00:00Z"))
    );
    // A week and a month in a zone start at the local midnight of their first day.
    let (start, reset) = window("week@Europe/Paris", "2024-03-31T12:00:00Z");
    assert_eq!(
        (start, reset - start),
        (ms("2024-03-24T23:00:00Z"), 7 * 24 * HOUR - HOUR)
    );
    let (start, reset) = window("month+31@Europe/Paris", "2024-03-01T12:00:00Z");
    assert_eq!(
        (start, reset),
        (ms("2024-02-28T23:00:00Z"), ms("2024-03-30T23:00:00Z"))
    );
}

#[test]
fn hours_in_a_zone_are_its_clock_hours_cut_where_the_offset_changes() {
    // Whole-hour offsets: every hour is a UTC hour, across both changes.
    let la = spec("hour@America/Los_Angeles");
    for day in ["2024-03-10", "2024-11-03"] {
        let mut at = ms(&format!("{day}T06:00:00Z"));
        for _ in 0..8 {
            let w = la.window_at(at + 1);
            assert_eq!((w.start_ms, w.reset_at_ms), (at, at + HOUR), "{day}");
            at += HOUR;
        }
    }
    // The repeated 01:00 of 2024-11-03 is two windows, one per pass.
    assert_eq!(
        window("hour@America/Los_Angeles", "2024-11-03T08:30:00Z").0,
        ms("2024-11-03T08:00:00Z")
    );
    assert_eq!(
        window("hour@America/Los_Angeles", "2024-11-03T09:30:00Z").0,
        ms("2024-11-03T09:00:00Z")
    );
    // Two local hours that straddle the change are one window each, cut at the change.
    let w = window("2hour@America/Los_Angeles", "2024-03-10T09:30:00Z"); // 00:00-02:00 PST
    assert_eq!(w, (ms("2024-03-10T08:00:00Z"), ms("2024-03-10T10:00:00Z")));
    let w = window("2hour@America/Los_Angeles", "2024-03-10T10:30:00Z"); // 03:00 PDT on
    assert_eq!(w, (ms("2024-03-10T10:00:00Z"), ms("2024-03-10T11:00:00Z")));
    // Kolkata's hours start at half past UTC hours.
    let w = window("hour@Asia/Kolkata", "2024-01-01T12:10:00Z");
    assert_eq!(w, (ms("2024-01-01T11:30:00Z"), ms("2024-01-01T12:30:00Z")));
    // Lord Howe moves half an hour at 02:00 local (15:30Z): the hour from 01:00 stops there
    // and local 02:30 to 03:00 is a window of half an hour.
    let lord_howe = "hour@Australia/Lord_Howe";
    let w = window(lord_howe, "2024-10-05T14:45:00Z");
    assert_eq!(w, (ms("2024-10-05T14:30:00Z"), ms("2024-10-05T15:30:00Z")));
    let w = window(lord_howe, "2024-10-05T15:45:00Z");
    assert_eq!(w, (ms("2024-10-05T15:30:00Z"), ms("2024-10-05T16:00:00Z")));
}

/// The day windows jiff computes: from `start_of_day` of the instant's local date to that of
/// the next date.
#[test]
fn days_agree_with_jiffs_start_of_day() {
    let max = ms("2100-01-01T00:00:00Z");
    let mut state = 0x9E37_79B9_7F4A_7C15_u64;
    for name in ZONES {
        let zone = jiff_zone(name);
        let day = spec(&format!("day@{name}"));
        for _ in 0..20_000 {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            let now = state % max;
            let instant = Timestamp::from_millisecond(now as i64).unwrap();
            let date = zone.to_datetime(instant).date();
            let start = date
                .to_zoned_datetime(zone.clone())
                .unwrap()
                .start_of_day()
                .unwrap();
            let next = date
                .tomorrow()
                .unwrap()
                .to_zoned_datetime(zone.clone())
                .unwrap();
            let reset = next.start_of_day().unwrap();
            let jiff = (
                start.timestamp().as_millisecond().max(0) as u64,
                reset.timestamp().as_millisecond() as u64,
            );
            let w = day.window_at(now);
            assert_eq!((w.start_ms, w.reset_at_ms), jiff, "{name} {now}");
        }
    }
}

/// Every offset change of the zones from 1970 to 2040, with the transition's old offset.
fn transitions(name: &str) -> Vec<(i64, i64)> {
    let zone = jiff_zone(name);
    let end = Timestamp::from_second(2_208_988_800).unwrap(); // 2040
    zone.following(Timestamp::UNIX_EPOCH)
        .map(|t| t.timestamp())
        .take_while(|t| *t < end)
        .map(|t| {
            let before = zone.to_offset(t.checked_sub(jiff::SignedDuration::from_secs(1)).unwrap());
            (t.as_millisecond(), i64::from(before.seconds()))
        })
        .collect()
}

#[test]
fn local_time_to_an_instant_is_jiffs_compatible_reading() {
    for name in ZONES {
        let zone = TimeZone::new(name).unwrap();
        let jiff = jiff_zone(name);
        for (at, _) in transitions(name) {
            for step in -40..=40 {
                let local = at + step * 15 * 60_000 + 13_000;
                let civil = JiffZone::UTC.to_datetime(Timestamp::from_millisecond(local).unwrap());
                let expected = jiff.to_ambiguous_timestamp(civil).compatible().unwrap();
                assert_eq!(
                    zone.to_instant(local),
                    expected.as_millisecond(),
                    "{name} {civil}"
                );
            }
        }
    }
}

/// Walks the windows of `spec` from `from` to `to`: each starts where the one before reset,
/// contains its own start and its last instant, and is no longer than `max_ms`.
fn walk(spec: &WindowSpec, from: u64, to: u64) -> usize {
    let mut w = spec.window_at(from);
    let mut count = 0;
    while w.start_ms < to {
        check(spec, w.start_ms);
        check(spec, w.reset_at_ms - 1);
        let next = spec.window_at(w.reset_at_ms);
        assert_eq!(next.start_ms, w.reset_at_ms, "{spec} after {w:?}");
        w = next;
        count += 1;
    }
    count
}

/// The partition at `now`: its window contains it, is the window of its own start, and
/// borders the windows before and after.
fn check(spec: &WindowSpec, now: u64) {
    let w = spec.window_at(now);
    assert!(
        w.start_ms <= now && (now < w.reset_at_ms || w.reset_at_ms == u64::MAX),
        "{spec} {now} {w:?}"
    );
    assert_eq!(spec.window_at(w.start_ms), w, "{spec} {now}");
    if w.reset_at_ms != u64::MAX {
        assert_eq!(
            spec.window_at(w.reset_at_ms).start_ms,
            w.reset_at_ms,
            "{spec} {now}"
        );
        assert!(
            w.reset_at_ms - w.start_ms <= spec.max_ms(),
            "{spec} {now} {w:?}"
        );
    }
    if w.start_ms > 0 {
        assert_eq!(
            spec.window_at(w.start_ms - 1).reset_at_ms,
            w.start_ms,
            "{spec} {now}"
        );
    }
}

#[test]
fn windows_partition_time_around_every_offset_change() {
    let clock = ["hour", "30minute", "7minute", "5hour", "24hour"];
    let calendar = ["day", "2day", "week", "month", "month+31", "3month+30"];
    let mut windows = 0;
    for name in ZONES {
        for (at, _) in transitions(name) {
            let at = at as u64;
            for unit in clock {
                let spec = spec(&format!("{unit}@{name}"));
                windows += walk(&spec, at - 6 * HOUR, at + 6 * HOUR);
            }
            for unit in calendar {
                let spec = spec(&format!("{unit}@{name}"));
                windows += walk(&spec, at - 50 * HOUR, at + 50 * HOUR);
            }
        }
    }
    assert!(windows > 100_000, "{windows}");
}

/// Every zone of the bundled database is accepted, and its windows (hours, half hours, days,
/// weeks, months) around each of its offset changes from 1970 to 2100 partition time and are
/// no longer than `max_ms` (the largest step back is Antarctica/Vostok's 7 hours in 1994).
#[test]
fn every_zone_of_the_database_keeps_windows_within_max_ms() {
    let end = Timestamp::from_second(4_102_444_800).unwrap(); // 2100
    let (mut zones, mut checked) = (0, 0);
    for name in bundled_database().available() {
        let zone = TimeZone::new(name.as_str()).unwrap();
        let specs = ["hour", "30minute", "day", "week", "month"]
            .map(|key| WindowSpec::from_key(key).unwrap().in_zone(zone.clone()));
        let jiff = jiff_zone(name.as_str());
        for transition in jiff.following(Timestamp::UNIX_EPOCH) {
            if transition.timestamp() >= end {
                break;
            }
            let at = transition.timestamp().as_millisecond() as u64;
            for spec in &specs {
                check(spec, at - 1);
                check(spec, at);
                checked += 2;
            }
        }
        zones += 1;
    }
    assert!(
        zones > 400 && checked > 100_000,
        "{zones} zones, {checked} instants"
    );
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(3_000))]

    #[test]
    fn windows_partition_time(
        spec in super::spec::any_spec(ZONES),
        now in prop_oneof![
            8 => 0..4_102_444_800_000_u64, // 1970 to 2100
            1 => 0..253_402_300_800_000_u64, // to 9999
            1 => any::<u64>(),
        ],
    ) {
        check(&spec, now);
    }
}
