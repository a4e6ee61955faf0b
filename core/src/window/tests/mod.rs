//! The UTC periods and the calendar, against jiff; the specs in `spec.rs`, zones in `zones.rs`.

mod spec;
mod zones;

use super::calendar::{days_from_civil, DAY_MS};
use super::*;
use jiff::Timestamp;

fn ms(text: &str) -> u64 {
    text.parse::<Timestamp>().unwrap().as_millisecond() as u64
}

#[test]
fn windows_align_to_utc_boundaries() {
    let now = ms("2024-02-29T13:45:17.250Z");
    let cases = [
        (
            Period::Second,
            "2024-02-29T13:45:17Z",
            "2024-02-29T13:45:18Z",
        ),
        (
            Period::Minute,
            "2024-02-29T13:45:00Z",
            "2024-02-29T13:46:00Z",
        ),
        (Period::Hour, "2024-02-29T13:00:00Z", "2024-02-29T14:00:00Z"),
        (Period::Day, "2024-02-29T00:00:00Z", "2024-03-01T00:00:00Z"),
        // A Thursday: the week from Monday the 26th.
        (Period::Week, "2024-02-26T00:00:00Z", "2024-03-04T00:00:00Z"),
        (
            Period::Month,
            "2024-02-01T00:00:00Z",
            "2024-03-01T00:00:00Z",
        ),
    ];
    for (period, start, end) in cases {
        let w = period.window_at(now);
        assert_eq!(
            (w.start_ms, w.reset_at_ms),
            (ms(start), ms(end)),
            "{period}"
        );
    }
}

#[test]
fn month_ends() {
    let dec = Period::Month.window_at(ms("2023-12-31T23:59:59.999Z"));
    assert_eq!(dec.reset_at_ms, ms("2024-01-01T00:00:00Z"));
    let jan = Period::Month.window_at(ms("2024-01-31T12:00:00Z"));
    assert_eq!(jan.reset_at_ms, ms("2024-02-01T00:00:00Z"));
    let feb_common = Period::Month.window_at(ms("2023-02-28T23:00:00Z"));
    assert_eq!(feb_common.reset_at_ms, ms("2023-03-01T00:00:00Z"));
    let boundary = Period::Month.window_at(ms("2024-03-01T00:00:00Z"));
    assert_eq!(boundary.start_ms, ms("2024-03-01T00:00:00Z"));
}

#[test]
fn the_last_instants_never_reset_and_do_not_panic() {
    for period in Period::ALL {
        let w = period.window_at(u64::MAX);
        assert_eq!(w.reset_at_ms, u64::MAX, "{period}");
        assert_eq!(period.window_at(w.start_ms), w);
    }
}

/// The window jiff computes for `now_ms` (the reference implementation).
fn jiff_window(period: Period, now_ms: u64) -> Window {
    use jiff::{civil::Time, tz::TimeZone, ToSpan};
    let now = Timestamp::from_millisecond(now_ms as i64).unwrap();
    let civil = TimeZone::UTC.to_datetime(now);
    let start = match period {
        Period::Second => civil.with().subsec_nanosecond(0).build().unwrap(),
        Period::Minute => civil.with().second(0).subsec_nanosecond(0).build().unwrap(),
        Period::Hour => civil
            .with()
            .minute(0)
            .second(0)
            .subsec_nanosecond(0)
            .build()
            .unwrap(),
        Period::Day => civil.date().to_datetime(Time::midnight()),
        Period::Week => {
            let days_since_monday = civil.date().weekday().to_monday_zero_offset();
            let monday = civil
                .date()
                .checked_sub(i64::from(days_since_monday).days());
            monday.unwrap().to_datetime(Time::midnight())
        }
        Period::Month => civil.date().first_of_month().to_datetime(Time::midnight()),
    };
    let end = match period {
        Period::Second => start.checked_add(1.second()),
        Period::Minute => start.checked_add(1.minute()),
        Period::Hour => start.checked_add(1.hour()),
        Period::Day => start.checked_add(1.day()),
        Period::Week => start.checked_add(1.week()),
        Period::Month => start.checked_add(1.month()),
    }
    .unwrap();
    let ms = |civil: jiff::civil::DateTime| {
        TimeZone::UTC
            .to_timestamp(civil)
            .unwrap()
            .as_millisecond()
            .max(0) as u64
    };
    Window {
        // The first week starts at the epoch, not on the Monday before.
        start_ms: ms(start),
        reset_at_ms: ms(end),
    }
}

#[test]
fn agrees_with_jiff_on_a_million_random_instants() {
    // Up to 9999-11-30 (a month end within jiff's range); a fixed-seed xorshift.
    let max = ms("9999-11-30T00:00:00Z");
    let mut state = 0x9E37_79B9_7F4A_7C15_u64;
    for _ in 0..1_000_000 {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        let now = state % max;
        for period in Period::ALL {
            assert_eq!(
                period.window_at(now),
                jiff_window(period, now),
                "{period} {now}"
            );
        }
    }
}

#[test]
fn agrees_with_jiff_at_every_month_end_of_five_centuries() {
    for year in 1970_i64..2470 {
        for month in 1..=12 {
            let first = (days_from_civil(year, month, 1) * DAY_MS) as u64;
            for now in [first.saturating_sub(1), first, first + 1] {
                for period in Period::ALL {
                    assert_eq!(period.window_at(now), jiff_window(period, now), "{now}");
                }
            }
        }
    }
}

#[test]
fn parses_period_words() {
    assert_eq!("month".parse::<Period>(), Ok(Period::Month));
    assert_eq!("week".parse::<Period>(), Ok(Period::Week));
    assert_eq!("second".parse::<Period>(), Ok(Period::Second));
    let err = "weekly".parse::<Period>().unwrap_err();
    assert!(err.to_string().contains("weekly"));
}
