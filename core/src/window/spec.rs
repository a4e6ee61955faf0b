//! [`WindowSpec`]: what a quota window is (N units of a period, a time zone, an anchor day),
//! its rules, its words and its serde form. The window of an instant is in `compute.rs`, the
//! key string in `key.rs`.

use super::{Period, TimeZone, WindowSpecError};
use serde::{Deserialize, Serialize};
use std::fmt;

/// What a quota window is: `every` N units of a [`Period`], in a [`TimeZone`] (UTC if none),
/// and for months an anchor day (a billing cycle that starts on the 15th).
///
/// Windows follow each other without gap or overlap, counted from the Unix epoch in the
/// zone's local calendar:
///
/// - **N seconds, minutes or hours**: multiples of N units of local clock time since
///   1970-01-01T00:00 local, so 5-minute windows start at :00, :05, ... Where the zone's
///   offset changes (daylight saving time), a window ends at the change and the next starts
///   there, on the new offset's clock: a skipped hour has no window, a repeated hour has one
///   window each time it passes. For a zone whose offsets are whole hours, hours coincide
///   with UTC hours. A window is never longer than its N units.
/// - **N days**: from local midnight to local midnight (23 and 25 hours across daylight saving
///   time), starting on the dates whose day number since 1970-01-01 is a multiple of N. Where
///   local midnight does not exist (a zone that moves its clock from 00:00 to 01:00, or
///   Pacific/Apia, which skipped 2011-12-30), the day starts at the first instant after the
///   gap: jiff's `start_of_day`, the "compatible" reading of local midnight (the earlier of
///   two midnights, if the clock passes midnight twice). A skipped day has no window.
/// - **N weeks**: ISO weeks from Monday's local midnight, counted from Monday 1970-01-05.
/// - **N months**: from the 1st's local midnight, on the months since January 1970 that are
///   multiples of N (3 months: January, April, July, October). With an anchor day, a month
///   starts on that day, or on the month's last day if it has fewer days: anchor 31 starts
///   months on Jan 31, Feb 28 (29), Mar 31, Apr 30, ...; N months count from those starts.
///
/// Without a time zone and with N = 1 and no anchor, the windows are exactly
/// [`Period::window_at`]'s. Time starts at the epoch: a window that would begin before
/// 1970-01-01T00:00Z begins there, and one whose end lies past about 146 million years from
/// now never resets.
///
/// Two specs are equal when their [`key`](Self::key)s are: an hour in UTC and an hour in
/// Europe/Paris differ. Anchor day 1 is the calendar month itself, so it is no anchor, and
/// UTC's own names (`UTC`, `Etc/UTC`, `GMT`, ...) are no zone. Any other zone is kept as named:
/// a link such as `US/Pacific` has `America/Los_Angeles`'s windows but is another spec.
///
/// ```
/// use quota_core::{Period, WindowSpec};
///
/// // Google's daily quotas reset at midnight Pacific time.
/// let daily = WindowSpec::new(Period::Day).timezone("America/Los_Angeles")?;
/// // 2024-03-10 is the day clocks spring forward: 23 hours.
/// let w = daily.window_at(1_710_072_000_000); // 2024-03-10T12:00:00Z
/// assert_eq!(w.start_ms, 1_710_057_600_000); // 2024-03-10T00:00:00-08:00
/// assert_eq!(w.reset_at_ms - w.start_ms, 23 * 3_600_000);
/// assert_eq!(daily.key(), "day@America/Los_Angeles");
/// assert_eq!(daily.to_string(), "day in America/Los_Angeles");
///
/// // A quarterly plan billed from the 15th.
/// let quarter = WindowSpec::new(Period::Month).every(3)?.anchor_day(15)?;
/// assert_eq!(quarter.key(), "3month+15");
/// assert_eq!(WindowSpec::from_key("3month+15")?, quarter);
///
/// // The plain period: its key is the period's word.
/// assert_eq!(WindowSpec::from(Period::Hour).key(), "hour");
/// # Ok::<(), quota_core::WindowSpecError>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "Fields", into = "Fields")]
pub struct WindowSpec {
    pub(super) period: Period,
    pub(super) every: u32,
    /// 2..=31 (1 is the calendar month: `None`), months only.
    pub(super) anchor_day: Option<u8>,
    pub(super) timezone: Option<TimeZone>,
}

impl WindowSpec {
    /// One `period` in UTC: exactly [`Period::window_at`]'s windows.
    pub fn new(period: Period) -> Self {
        WindowSpec {
            period,
            every: 1,
            anchor_day: None,
            timezone: None,
        }
    }

    /// Every field at once, as a config file gives them: `every` units of `period` (at least
    /// 1, at most [`max_every`](Self::max_every)), in the IANA time zone `timezone` (UTC if
    /// none), months from `anchor_day` (1..=31; months only).
    pub fn from_parts(
        period: Period,
        every: u32,
        timezone: Option<&str>,
        anchor_day: Option<u8>,
    ) -> Result<Self, WindowSpecError> {
        let mut spec = WindowSpec::new(period).every(every)?;
        if let Some(day) = anchor_day {
            spec = spec.anchor_day(day)?;
        }
        if let Some(name) = timezone {
            spec = spec.timezone(name)?;
        }
        Ok(spec)
    }

    /// `n` units of the period per window (5 minutes, 2 weeks, 3 months): at least 1, at most
    /// [`max_every`](Self::max_every).
    pub fn every(mut self, n: u32) -> Result<Self, WindowSpecError> {
        let max = Self::max_every(self.period);
        if n == 0 {
            return Err(WindowSpecError::ZeroEvery);
        }
        if n > max {
            return Err(WindowSpecError::EveryTooLarge {
                period: self.period,
                every: n,
                max,
            });
        }
        self.every = n;
        Ok(self)
    }

    /// Windows in the IANA time zone `name` (such as `"America/Los_Angeles"`) instead of UTC.
    /// See [`TimeZone::new`] for what is accepted. The names of UTC itself (`UTC`, `Etc/UTC`,
    /// `GMT`, `Zulu`, ... in any case) are no zone: the spec stays the plain UTC one, so
    /// writing the default down in a config file does not start another window.
    pub fn timezone(self, name: &str) -> Result<Self, WindowSpecError> {
        const UTC: [&str; 9] = [
            "UTC",
            "UCT",
            "GMT",
            "GMT0",
            "GMT+0",
            "GMT-0",
            "Zulu",
            "Universal",
            "Greenwich",
        ];
        let bare = name.strip_prefix("Etc/").unwrap_or(name);
        if UTC.iter().any(|utc| utc.eq_ignore_ascii_case(bare)) {
            return Ok(self);
        }
        Ok(self.in_zone(TimeZone::new(name)?))
    }

    /// Windows in `zone` instead of UTC.
    pub fn in_zone(mut self, zone: TimeZone) -> Self {
        self.timezone = Some(zone);
        self
    }

    /// Months that start on day `day` (1..=31) of the month at local midnight, or on the
    /// month's last day in a month without that day. Months only; day 1 is the calendar month.
    pub fn anchor_day(mut self, day: u8) -> Result<Self, WindowSpecError> {
        if self.period != Period::Month {
            return Err(WindowSpecError::AnchorNeedsMonth {
                period: self.period,
                day,
            });
        }
        if !(1..=31).contains(&day) {
            return Err(WindowSpecError::AnchorOutOfRange(day));
        }
        self.anchor_day = (day > 1).then_some(day);
        Ok(self)
    }

    /// The most units a window may have: 86,400 seconds, 1,440 minutes or 24 hours (a window
    /// of a sub-day unit is at most a day: longer ones are days), 36,525 days, 5,218 weeks or
    /// 1,200 months (about a hundred years).
    pub const fn max_every(period: Period) -> u32 {
        match period {
            Period::Second => 86_400,
            Period::Minute => 1_440,
            Period::Hour => 24,
            Period::Day => 36_525,
            Period::Week => 5_218,
            Period::Month => 1_200,
        }
    }

    /// The unit.
    pub fn period(&self) -> Period {
        self.period
    }

    /// Units per window (1 unless [`every`](Self::every) said otherwise).
    pub fn units(&self) -> u32 {
        self.every
    }

    /// The time zone; `None` is UTC.
    pub fn zone(&self) -> Option<&TimeZone> {
        self.timezone.as_ref()
    }

    /// The day months start on (2..=31); `None` is the 1st.
    pub fn anchor(&self) -> Option<u8> {
        self.anchor_day
    }

    /// The period, if this spec is just that period (N = 1, no anchor, UTC): its windows are
    /// [`Period::window_at`]'s and its key is the period's word.
    pub fn as_period(&self) -> Option<Period> {
        (self.every == 1 && self.anchor_day.is_none() && self.timezone.is_none())
            .then_some(self.period)
    }
}

impl From<Period> for WindowSpec {
    fn from(period: Period) -> Self {
        WindowSpec::new(period)
    }
}

/// In words: `minute`, `5 minutes`, `day in America/Los_Angeles`, `month from day 15`,
/// `3 months from day 15 in Europe/Paris`.
impl fmt::Display for WindowSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.every == 1 {
            f.write_str(self.period.as_str())?;
        } else {
            write!(f, "{} {}s", self.every, self.period.as_str())?;
        }
        if let Some(day) = self.anchor_day {
            write!(f, " from day {}", u32::from(day))?;
        }
        if let Some(zone) = &self.timezone {
            f.write_str(" in ")?;
            f.write_str(zone.name())?;
        }
        Ok(())
    }
}

/// The serde form: plain fields, so that a config file can flatten them into a limit's table
/// (`period = "month"`, `every = 3`, `timezone = "Europe/Paris"`, `anchor_day = 15`); `every`
/// is left out when 1, `timezone` and `anchor_day` when absent.
#[derive(Serialize, Deserialize)]
struct Fields {
    period: Period,
    #[serde(default = "one", skip_serializing_if = "is_one")]
    every: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    timezone: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    anchor_day: Option<u8>,
}

fn one() -> u32 {
    1
}

fn is_one(every: &u32) -> bool {
    *every == 1
}

impl TryFrom<Fields> for WindowSpec {
    type Error = WindowSpecError;

    fn try_from(fields: Fields) -> Result<Self, Self::Error> {
        WindowSpec::from_parts(
            fields.period,
            fields.every,
            fields.timezone.as_deref(),
            fields.anchor_day,
        )
    }
}

impl From<WindowSpec> for Fields {
    fn from(spec: WindowSpec) -> Self {
        Fields {
            period: spec.period,
            every: spec.every,
            timezone: spec.timezone.map(|zone| zone.name().to_owned()),
            anchor_day: spec.anchor_day,
        }
    }
}
