//! Quota windows: periods aligned to UTC calendar boundaries.

use jiff::{civil::DateTime, tz::TimeZone, Timestamp, ToSpan};
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
    /// Instants beyond the calendar's range (after the year 9999) fall in one window that
    /// never resets, rather than panicking.
    pub fn window_at(self, now_ms: u64) -> Window {
        self.calendar_window(now_ms).unwrap_or(Window {
            start_ms: now_ms,
            reset_at_ms: u64::MAX,
        })
    }

    fn calendar_window(self, now_ms: u64) -> Option<Window> {
        let now = Timestamp::from_millisecond(i64::try_from(now_ms).ok()?).ok()?;
        let civil = TimeZone::UTC.to_datetime(now);
        let start: DateTime = match self {
            Period::Minute => civil.with().second(0).subsec_nanosecond(0).build().ok()?,
            Period::Hour => civil
                .with()
                .minute(0)
                .second(0)
                .subsec_nanosecond(0)
                .build()
                .ok()?,
            Period::Day => civil.date().to_datetime(jiff::civil::Time::midnight()),
            Period::Month => civil
                .date()
                .first_of_month()
                .to_datetime(jiff::civil::Time::midnight()),
        };
        let end = match self {
            Period::Minute => start.checked_add(1.minute()),
            Period::Hour => start.checked_add(1.hour()),
            Period::Day => start.checked_add(1.day()),
            Period::Month => start.checked_add(1.month()),
        }
        .ok()?;
        Some(Window {
            start_ms: to_unix_ms(start)?,
            reset_at_ms: to_unix_ms(end)?,
        })
    }
}

fn to_unix_ms(civil: DateTime) -> Option<u64> {
    let ms = TimeZone::UTC.to_timestamp(civil).ok()?.as_millisecond();
    u64::try_from(ms).ok()
}

impl fmt::Display for Period {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The error of parsing a [`Period`] from a word other than minute, hour, day or month.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown period {0:?}: expected \"minute\", \"hour\", \"day\" or \"month\"")]
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
    fn out_of_range_instants_do_not_panic() {
        let w = Period::Day.window_at(u64::MAX);
        assert_eq!((w.start_ms, w.reset_at_ms), (u64::MAX, u64::MAX));
    }

    #[test]
    fn parses_period_words() {
        assert_eq!("month".parse::<Period>(), Ok(Period::Month));
        let err = "weekly".parse::<Period>().unwrap_err();
        assert!(err.to_string().contains("weekly"));
    }
}
