//! The proleptic Gregorian calendar from a day count since 1970-01-01 and back: Howard
//! Hinnant's `civil_from_days` / `days_from_civil` (the algorithm jiff itself uses), shifted to
//! eras of 400 years that start on March 1st so that the leap day is the last day of a year.
//! Days may be negative (a local date before the epoch: the window of an instant near it may
//! start there). Checked against jiff over random instants and every month end of several
//! centuries (the tests); no time zone here: the UTC path needs nothing else, and a zoned
//! window is this calendar on local days plus the zone's offsets (`zone/`).

/// Milliseconds in a day of 24 hours.
pub(super) const DAY_MS: i64 = 86_400_000;

/// `(year, month 1..=12, day 1..=31)` of `days` since 1970-01-01.
pub(super) fn civil_from_days(days: i64) -> (i64, u32, u32) {
    // 719_468 days from 0000-03-01 to 1970-01-01.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let day_of_era = z.rem_euclid(146_097); // [0, 146096]
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
    let year = year_of_era + era * 400 + i64::from(month <= 2);
    (year, month as u32, day as u32)
}

/// Days since 1970-01-01 of `year-month-day` (`month` 1..=12, `day` 1..=31).
pub(super) fn days_from_civil(year: i64, month: u32, day: u32) -> i64 {
    let year = year - i64::from(month <= 2);
    let era = year.div_euclid(400);
    let year_of_era = year.rem_euclid(400);
    let shifted_month = i64::from(if month > 2 { month - 3 } else { month + 9 });
    let day_of_year = (153 * shifted_month + 2) / 5 + i64::from(day) - 1;
    let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
    era * 146_097 + day_of_era - 719_468
}

/// The number of days of `month` (1..=12) in `year`.
pub(super) fn days_in_month(year: i64, month: u32) -> u32 {
    match month {
        4 | 6 | 9 | 11 => 30,
        2 if year % 4 == 0 && (year % 100 != 0 || year % 400 == 0) => 29,
        2 => 28,
        _ => 31,
    }
}

/// Months since January 1970 (`0` is January 1970) of `year-month`, and back.
pub(super) fn month_index(year: i64, month: u32) -> i64 {
    (year - 1970) * 12 + i64::from(month) - 1
}

/// `(year, month 1..=12)` of a [`month_index`].
pub(super) fn month_of_index(index: i64) -> (i64, u32) {
    (1970 + index.div_euclid(12), index.rem_euclid(12) as u32 + 1)
}
