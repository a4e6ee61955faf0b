//! Quota windows: periods aligned to UTC calendar boundaries ([`Period`]), and window specs
//! ([`WindowSpec`]): N units of a period, in a time zone, a month from an anchor day.
//!
//! - `mod.rs`: [`Period`] and its UTC window, [`Window`];
//! - `calendar.rs`: the proleptic Gregorian calendar on day numbers (no time zone);
//! - `spec.rs`: [`WindowSpec`] (its rules, words and serde form), `error.rs`: [`WindowSpecError`];
//! - `key.rs`: the spec's canonical key string and its parser;
//! - `compute.rs`: the window of an instant for a spec, and its longest window;
//! - `zone/`: [`TimeZone`] and the offset it gives at an instant: jiff with its bundled
//!   database natively (`native.rs`), the JS engine's `Intl` on wasm32 (`intl.rs`).

mod calendar;
mod compute;
mod error;
mod key;
mod spec;
mod zone;

pub use error::WindowSpecError;
pub use spec::WindowSpec;
pub use zone::TimeZone;

use calendar::{civil_from_days, days_from_civil, DAY_MS};
use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;

/// The unit of a quota window. A period's own windows ([`Period::window_at`]) are aligned to
/// UTC calendar boundaries: a `Second` starts at millisecond 0, a `Minute` at second 0, an
/// `Hour` at minute 0, a `Day` at 00:00 UTC, a `Week` on Monday 00:00 UTC (ISO weeks) and a
/// `Month` on the 1st 00:00 UTC, and each ends where the next begins. A [`WindowSpec`] takes
/// N of a period, in a time zone, from an anchor day.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Period {
    /// A second.
    Second,
    /// A calendar minute.
    Minute,
    /// A calendar hour.
    Hour,
    /// A UTC day.
    Day,
    /// An ISO week: Monday 00:00 UTC to the next Monday.
    Week,
    /// A calendar month in UTC (28 to 31 days).
    Month,
}

impl Period {
    /// All periods, shortest first.
    pub const ALL: [Period; 6] = [
        Period::Second,
        Period::Minute,
        Period::Hour,
        Period::Day,
        Period::Week,
        Period::Month,
    ];

    /// The lowercase word for this period: `second`, `minute`, `hour`, `day`, `week` or
    /// `month`.
    pub fn as_str(self) -> &'static str {
        match self {
            Period::Second => "second",
            Period::Minute => "minute",
            Period::Hour => "hour",
            Period::Day => "day",
            Period::Week => "week",
            Period::Month => "month",
        }
    }

    /// The longest window of this period, in ms (31 days for a month).
    pub fn max_ms(self) -> u64 {
        match self {
            Period::Second => 1_000,
            Period::Minute => 60_000,
            Period::Hour => 3_600_000,
            Period::Day => 86_400_000,
            Period::Week => 7 * 86_400_000,
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
    /// years on) the window never resets, rather than panicking. Time starts at the epoch: the
    /// first week (1970-01-01 was a Thursday) starts there, not on the Monday before.
    pub fn window_at(self, now_ms: u64) -> Window {
        const DAY: u64 = DAY_MS as u64;
        let (start_ms, reset_at_ms) = match self {
            Period::Second | Period::Minute | Period::Hour | Period::Day => {
                let start_ms = now_ms - now_ms % self.max_ms();
                (start_ms, start_ms.checked_add(self.max_ms()))
            }
            Period::Week => {
                // Days since the Monday on or before: 1970-01-01 was a Thursday (3).
                let day = now_ms / DAY;
                let monday = (day + 3) / 7 * 7; // days from Monday 1969-12-29 to that Monday
                let start_ms = (monday.saturating_sub(3)) * DAY;
                (start_ms, (monday + 4).checked_mul(DAY))
            }
            Period::Month => {
                let (year, month, _) = civil_from_days((now_ms / DAY) as i64);
                let start_ms = days_from_civil(year, month, 1) as u64 * DAY;
                let (year, month) = if month == 12 {
                    (year + 1, 1)
                } else {
                    (year, month + 1)
                };
                (
                    start_ms,
                    (days_from_civil(year, month, 1) as u64).checked_mul(DAY),
                )
            }
        };
        Window {
            start_ms,
            reset_at_ms: reset_at_ms.unwrap_or(u64::MAX),
        }
    }
}

impl fmt::Display for Period {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The error of parsing a [`Period`] from a word other than second, minute, hour, day, week
/// or month.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "unknown period {}: expected \"second\", \"minute\", \"hour\", \"day\", \"week\" or \"month\"",
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
mod tests;
