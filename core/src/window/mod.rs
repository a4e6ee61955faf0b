//! Quota windows: periods aligned to UTC calendar boundaries.

use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;

/// The length of a quota window. Windows are aligned to UTC calendar boundaries: a `Minute`
/// window starts at second 0, an `Hour` at minute 0, a `Day` at 00:00 UTC and a `Month` at the
/// 1st 00:00 UTC, and each ends where the next begins.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Period {
    /// A calendar minute.
    Minute,
    /// A calendar hour.
    Hour,
    /// A UTC day.
    Day,
    /// A calendar month in UTC (28 to 31 days).
    Month,
}

impl Period {
    /// All periods, shortest first.
    pub const ALL: [Period; 4] = [Period::Minute, Period::Hour, Period::Day, Period::Month];

    /// The lowercase word for this period: `minute`, `hour`, `day` or `month`.
    pub fn as_str(self) -> &'static str {
        match self {
            Period::Minute => "minute",
            Period::Hour => "hour",
            Period::Day => "day",
            Period::Month => "month",
        }
    }

    /// The longest window of this period, in ms (31 days for a month).
    pub fn max_ms(self) -> u64 {
        match self {
            Period::Minute => 60_000,
            Period::Hour => 3_600_000,
            Period::Day => 86_400_000,
            Period::Month => 31 * 86_400_000,
        }
    }

    /// The window containing `now_ms` (milliseconds since the Unix epoch, UTC).
    ///
    /// ```
    /// use quota_core::Period;
    /// // 2024-02-29T13:45:00Z lies in the February 2024 window.
    /// let w = Period::Month.window_at(1_709_214_300_000);
    /// assert_eq!(w.start_ms, 1_706_745_600_000); // 2024-02-01T00:00:00Z
    /// assert_eq!(w.reset_at_ms, 1_709_251_200_000); // 2024-03-01T00:00:00Z
    /// ```
    ///
    /// Every instant has a window; where the end would pass `u64::MAX` ms (some 584 million
    /// years on) the window never resets, rather than panicking.
    pub fn window_at(self, now_ms: u64) -> Window {
        let start_ms = match self {
            Period::Minute | Period::Hour | Period::Day => now_ms - now_ms % self.max_ms(),
            Period::Month => {
                let (year, month, _) = civil_from_days(now_ms / DAY_MS);
                days_from_civil(year, month, 1) * DAY_MS
            }
        };
        let reset_at_ms = match self {
            Period::Minute | Period::Hour | Period::Day => start_ms.checked_add(self.max_ms()),
            Period::Month => {
                let (year, month, _) = civil_from_days(start_ms / DAY_MS);
                let (year, month) = if month == 12 {
                    (year + 1, 1)
                } else {
                    (year, month + 1)
                };
                days_from_civil(year, month, 1).checked_mul(DAY_MS)
            }
        };
        Window {
            start_ms,
            reset_at_ms: reset_at_ms.unwrap_or(u64::MAX),
        }
    }
}

const DAY_MS: u64 = 86_400_000;

// The proleptic Gregorian calendar from a day count since 1970-01-01 and back: Howard
// Hinnant's `civil_from_days` / `days_from_civil` (the algorithm jiff itself uses), on unsigned
// days since the Unix epoch, shifted to eras of 400 years that start on March 1st so that the
// leap day is the last day of a year. Checked against jiff over random instants and every
// month end of several centuries (the tests below); jiff is only a dev-dependency, which keeps
// its calendar code out of the wasm builds.

/// `(year, month 1..=12, day 1..=31)` of `days` since 1970-01-01.
fn civil_from_days(days: u64) -> (u64, u64, u64) {
    // 719_468 days from 0000-03-01 to 1970-01-01.
    let z = days + 719_468;
    let era = z / 146_097;
    let day_of_era = z - era * 146_097; // [0, 146096]
    let year_of_era =
        (day_of_era - day_of_era / 1_460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let shifted_month = (5 * day_of_year + 2) / 153; // March = 0
    let day = day_of_year - (153 * shifted_month + 2) / 5 + 1;
    let month = if shifted_month < 10 {
        shifted_month + 3
    } else {
        shifted_month - 9
    };
    let year = year_of_era + era * 400 + u64::from(month <= 2);
    (year, month, day)
}

/// Days since 1970-01-01 of `year-month-day` (on or after 1970-01-01).
fn days_from_civil(year: u64, month: u64, day: u64) -> u64 {
    let year = year - u64::from(month <= 2);
    let era = year / 400;
    let year_of_era = year - era * 400;
    let shifted_month = if month > 2 { month - 3 } else { month + 9 };
    let day_of_year = (153 * shifted_month + 2) / 5 + day - 1;
    let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
    era * 146_097 + day_of_era - 719_468
}

impl fmt::Display for Period {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The error of parsing a [`Period`] from a word other than minute, hour, day or month.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "unknown period {}: expected \"minute\", \"hour\", \"day\" or \"month\"",
    crate::text::Quoted(.0)
)]
pub struct UnknownPeriod(pub String);

impl FromStr for Period {
    type Err = UnknownPeriod;

    fn from_str(word: &str) -> Result<Self, Self::Err> {
        Period::ALL
            .into_iter()
            .find(|p| p.as_str() == word)
            .ok_or_else(|| UnknownPeriod(word.to_owned()))
    }
}

/// One quota window: calls count from `start_ms` (inclusive) until `reset_at_ms` (exclusive).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Window {
    /// Start of the window, ms since the Unix epoch.
    pub start_ms: u64,
    /// End of the window (start of the next), ms since the Unix epoch.
    pub reset_at_ms: u64,
}

#[cfg(test)]
mod tests {
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
                Period::Minute,
                "2024-02-29T13:45:00Z",
                "2024-02-29T13:46:00Z",
            ),
            (Period::Hour, "2024-02-29T13:00:00Z", "2024-02-29T14:00:00Z"),
            (Period::Day, "2024-02-29T00:00:00Z", "2024-03-01T00:00:00Z"),
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
            Period::Minute => civil.with().second(0).subsec_nanosecond(0).build().unwrap(),
            Period::Hour => civil
                .with()
                .minute(0)
                .second(0)
                .subsec_nanosecond(0)
                .build()
                .unwrap(),
            Period::Day => civil.date().to_datetime(Time::midnight()),
            Period::Month => civil.date().first_of_month().to_datetime(Time::midnight()),
        };
        let end = match period {
            Period::Minute => start.checked_add(1.minute()),
            Period::Hour => start.checked_add(1.hour()),
            Period::Day => start.checked_add(1.day()),
            Period::Month => start.checked_add(1.month()),
        }
        .unwrap();
        let ms = |civil: jiff::civil::DateTime| {
            TimeZone::UTC.to_timestamp(civil).unwrap().as_millisecond() as u64
        };
        Window {
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
        for year in 1970..2470 {
            for month in 1..=12 {
                let first = days_from_civil(year, month, 1) * DAY_MS;
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
        let err = "weekly".parse::<Period>().unwrap_err();
        assert!(err.to_string().contains("weekly"));
    }
}
