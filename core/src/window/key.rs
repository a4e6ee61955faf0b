//! A spec's canonical key string (store keys, stored documents) and its parser.
//!
//! ```text
//! key    = [every] period ["+" anchor] ["@" zone]
//! every  = an integer from 2 to the period's maximum, no leading zero (1 is left out)
//! period = "second" | "minute" | "hour" | "day" | "week" | "month"
//! anchor = an integer from 2 to 31, no leading zero (months only; day 1 is left out)
//! zone   = the IANA name as the zone spells it: everything after the first "@"
//! ```
//!
//! So the plain UTC period's key is its word (`"day"`), as stores have always written it, and
//! others read `5minute`, `3month+15`, `day@America/Los_Angeles`, `month+15@Europe/Paris`.
//! Every spec has one key and every key one spec: the parser takes only what `key` writes.
//! A key holds ASCII letters, digits and `+ @ / _ -` only: never `{`, `}`, `:` or whitespace
//! (it goes inside Redis keys with hash tags, and into JSON).

use super::{Period, TimeZone, WindowSpec, WindowSpecError};
use std::fmt::Write;

/// The longest key [`WindowSpec::from_key`] reads (far more than any spec's).
const MAX_KEY_LEN: usize = 128;

/// What a key looks like, for the error of one that does not.
const GRAMMAR: &str = "expected [N]period[+anchor][@zone], the period one of second, minute, \
    hour, day, week, month";

impl WindowSpec {
    /// The canonical key string: the period's word for N = 1 in UTC without an anchor
    /// (`"minute"`, `"day"`), otherwise `[N]period[+anchor][@zone]` (`"5minute"`,
    /// `"3month+15"`, `"day@America/Los_Angeles"`). [`from_key`](Self::from_key) reads it
    /// back. It holds ASCII letters, digits and `+ @ / _ -` only.
    pub fn key(&self) -> String {
        let mut key = String::new();
        if self.every > 1 {
            let _ = write!(key, "{}", self.every);
        }
        key.push_str(self.period.as_str());
        if let Some(day) = self.anchor_day {
            let _ = write!(key, "+{}", u32::from(day));
        }
        if let Some(zone) = &self.timezone {
            key += "@";
            key += zone.name();
        }
        key
    }

    /// The spec whose [`key`](Self::key) is `key`. Only canonical keys are read (no `1day`,
    /// `05minute`, `month+1` or `day@america/los_angeles`), so a spec has exactly one key; an
    /// unknown zone is [`WindowSpecError::UnknownTimeZone`], anything else
    /// [`WindowSpecError::InvalidKey`].
    pub fn from_key(key: &str) -> Result<Self, WindowSpecError> {
        let bad = |reason| WindowSpecError::key(key, reason);
        if key.len() > MAX_KEY_LEN {
            return Err(bad("longer than any window key"));
        }
        let (head, zone) = match key.split_once('@') {
            Some((head, zone)) => (head, Some(zone)),
            None => (key, None),
        };
        let (unit, anchor) = match head.split_once('+') {
            Some((unit, anchor)) => (unit, Some(anchor)),
            None => (head, None),
        };
        let digits = unit.bytes().take_while(u8::is_ascii_digit).count();
        // Never splits a character (the digits are ASCII); `split_at` would bring in its panic
        // message's formatting, kilobytes of the JS module.
        let (every, word) = unit.split_at_checked(digits).unwrap_or(("", unit));
        let period: Period = word.parse().map_err(|_| bad(GRAMMAR))?;
        let every = match every {
            "" => 1,
            every => match number(every) {
                Some(n) if n >= 2 => n,
                _ => {
                    return Err(bad(
                        "N must be written without leading zeros, and left out when 1",
                    ))
                }
            },
        };
        let mut spec = WindowSpec::new(period).every(every)?;
        if let Some(anchor) = anchor {
            match number(anchor) {
                Some(day @ 2..=31) => spec = spec.anchor_day(day as u8)?,
                _ => return Err(bad("the anchor day must be 2 to 31, without leading zeros")),
            }
        }
        if let Some(name) = zone {
            let zone = TimeZone::new(name)?;
            if zone.name() != name {
                return Err(bad(
                    "the zone must be spelled as the time zone database spells it",
                ));
            }
            spec = spec.in_zone(zone);
        }
        Ok(spec)
    }
}

/// A decimal number without a leading zero that fits a `u32`.
fn number(digits: &str) -> Option<u32> {
    let canonical = !digits.is_empty()
        && !digits.starts_with('0')
        && digits.bytes().all(|b| b.is_ascii_digit());
    canonical.then(|| digits.parse().ok()).flatten()
}
