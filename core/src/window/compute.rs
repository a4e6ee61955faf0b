//! The window of an instant for a [`WindowSpec`], and its longest window. One calendar for
//! every target and for UTC and zoned specs alike; only the zone's offsets differ per target
//! (`zone/`). The rules are on [`WindowSpec`].

use super::calendar::{
    civil_from_days, days_from_civil, days_in_month, month_index, month_of_index, DAY_MS,
};
use super::{Period, TimeZone, Window, WindowSpec};

/// Instants are computed up to here (2^62 ms, about 146 million years on): the window that
/// reaches past it never resets, which keeps every sum below in an `i64`.
const LAST_MS: i64 = 1 << 62;

/// Day number of Monday 1970-01-05, where weeks are counted from.
const FIRST_MONDAY: i64 = 4;

/// How much longer than N units a window of days, weeks or months may be in a time zone: the
/// most a zone's clock was set back in one change since 1970 (daylight saving time: 1 hour,
/// 2 in Antarctica/Troll, 3 in Antarctica/Casey; 7 when Antarctica/Vostok closed in 1994),
/// with an hour to spare. The tests check every zone of jiff's database against it.
const ZONE_SLACK_MS: u64 = 8 * 3_600_000;

impl WindowSpec {
    /// The window containing `now_ms` (milliseconds since the Unix epoch). The spec's rules
    /// are on [`WindowSpec`]; this never panics, and every instant belongs to exactly one
    /// window (`start_ms <= now_ms < reset_at_ms`, and the next window starts at
    /// `reset_at_ms`), except past about 146 million years, where the last window never
    /// resets (`reset_at_ms` is `u64::MAX`).
    pub fn window_at(&self, now_ms: u64) -> Window {
        match self.as_period() {
            Some(period) => period.window_at(now_ms),
            None => self.general_window_at(now_ms),
        }
    }

    /// [`window_at`](Self::window_at) for any spec (the plain period's windows too, which
    /// `window_at` takes from [`Period::window_at`], up to [`LAST_MS`]).
    pub(super) fn general_window_at(&self, now_ms: u64) -> Window {
        let t = now_ms.min(LAST_MS as u64) as i64;
        let (start, reset) = match self.period {
            Period::Second | Period::Minute | Period::Hour => {
                let unit = self.period.max_ms() as i64 * i64::from(self.every);
                clock_window(self.timezone.as_ref(), unit, t)
            }
            Period::Day | Period::Week | Period::Month => self.calendar_window(t),
        };
        Window {
            start_ms: start.max(0) as u64,
            reset_at_ms: if reset > LAST_MS {
                u64::MAX
            } else {
                reset as u64
            },
        }
    }

    /// The longest window of this spec, in ms, for clock sanity and store expiry: N units (31
    /// days a month), and for days, weeks and months in a time zone 8 hours more, for a day
    /// whose clock was set back (25-hour days under daylight saving time; no zone's clock was
    /// set back more than 7 hours in one change since 1970). Windows of seconds, minutes and
    /// hours are never longer than N units: a change of offset ends them.
    pub fn max_ms(&self) -> u64 {
        let units = self.period.max_ms() * u64::from(self.every);
        match (self.period, &self.timezone) {
            (Period::Day | Period::Week | Period::Month, Some(_)) => units + ZONE_SLACK_MS,
            _ => units,
        }
    }

    /// The window of `t` for days, weeks and months: from the local midnight of the window's
    /// first date to the next window's, read as jiff's `start_of_day` reads it.
    fn calendar_window(&self, t: i64) -> (i64, i64) {
        let Some(zone) = &self.timezone else {
            let index = self.window_of_day(t.div_euclid(DAY_MS));
            return (
                self.first_day(index) * DAY_MS,
                self.first_day(index + 1) * DAY_MS,
            );
        };
        let local = t + zone.offset_ms(t);
        let mut index = self.window_of_day(local.div_euclid(DAY_MS));
        let start_of = |index: i64| zone.to_instant(self.first_day(index) * DAY_MS);
        let (mut start, mut reset) = (start_of(index), start_of(index + 1));
        // The local date of `t` names its window, except near a gap or fold at midnight
        // (`t` after a day's start but back on the day before's date, or in a gap whose
        // midnight reads later): then a neighbour. Bounded, though one step is all it takes.
        for _ in 0..4 {
            if t < start {
                index -= 1;
                reset = start;
                start = start_of(index);
            } else if t >= reset {
                index += 1;
                start = reset;
                reset = start_of(index + 1);
            } else {
                break;
            }
        }
        (start, reset)
    }

    /// The number of the window (counted from the epoch's, 0) that local date `day` (days
    /// since 1970-01-01) belongs to.
    fn window_of_day(&self, day: i64) -> i64 {
        let every = i64::from(self.every);
        match self.period {
            Period::Week => (day - FIRST_MONDAY).div_euclid(7 * every),
            Period::Month => {
                let (year, month, day_of_month) = civil_from_days(day);
                let mut index = month_index(year, month);
                if day_of_month < self.month_start_day(year, month) {
                    index -= 1;
                }
                index.div_euclid(every)
            }
            _ => day.div_euclid(every),
        }
    }

    /// The local date (days since 1970-01-01) window number `index` starts on.
    fn first_day(&self, index: i64) -> i64 {
        let every = i64::from(self.every);
        match self.period {
            Period::Week => FIRST_MONDAY + 7 * every * index,
            Period::Month => {
                let (year, month) = month_of_index(index * every);
                days_from_civil(year, month, self.month_start_day(year, month))
            }
            _ => every * index,
        }
    }

    /// The day a month starts on: the anchor day, or the month's last day if it is shorter.
    fn month_start_day(&self, year: i64, month: u32) -> u32 {
        self.anchor_day
            .map_or(1, |day| u32::from(day).min(days_in_month(year, month)))
    }
}

/// The window of `t` for windows of `unit` ms of clock time (N seconds, minutes or hours):
/// multiples of `unit` since 1970-01-01T00:00 on the clock of the offset at `t`, cut where the
/// offset changes.
fn clock_window(zone: Option<&TimeZone>, unit: i64, t: i64) -> (i64, i64) {
    let offset = zone.map_or(0, |zone| zone.offset_ms(t));
    let local = t + offset;
    let line = local - local.rem_euclid(unit);
    let (mut start, mut reset) = (line - offset, line + unit - offset);
    if let Some(zone) = zone {
        if zone.offset_ms(start) != offset {
            start = zone.change_after(start, t);
        }
        if zone.offset_ms(reset - 1) != offset {
            reset = zone.change_after(t, reset - 1);
        }
    }
    (start, reset)
}
