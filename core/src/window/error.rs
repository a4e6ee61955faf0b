//! [`WindowSpecError`]: why a window spec, a time zone or a window key was refused.

use super::Period;
use crate::text::Quoted;

/// Why a [`WindowSpec`](crate::WindowSpec), a [`TimeZone`](crate::TimeZone) or a window key
/// was refused. Each message names the value at fault.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum WindowSpecError {
    /// Not a time zone this build knows: natively, not in the IANA database bundled with the
    /// crate; on wasm32, not one the JS engine's `Intl` accepts (or no `Intl` at all). Also a
    /// name with characters other than letters, digits and `/ _ - +`, or over 64 bytes. Holds
    /// the name as given (at most its first 100 bytes).
    #[error(
        "unknown time zone {}: expected an IANA time zone name such as \"America/Los_Angeles\"",
        Quoted(.0)
    )]
    UnknownTimeZone(String),
    /// `every` was 0.
    #[error("every must be at least 1 (got 0)")]
    ZeroEvery,
    /// `every` above [`WindowSpec::max_every`](crate::WindowSpec::max_every) for the period:
    /// a sub-day unit makes at most a day (longer windows are days), any other at most about a
    /// hundred years.
    #[error("every = {every} {period}s is too long: at most {max} (a window of N {period}s)")]
    EveryTooLarge {
        /// The period.
        period: Period,
        /// The number of periods asked for.
        every: u32,
        /// The most this period allows.
        max: u32,
    },
    /// An anchor day on a period other than a month.
    #[error(
        "anchor_day {} needs period \"month\" (got {})",
        u32::from(*.day),
        Quoted(.period.as_str())
    )]
    AnchorNeedsMonth {
        /// The period the anchor was given for.
        period: Period,
        /// The anchor day.
        day: u8,
    },
    /// An anchor day outside 1..=31.
    #[error("anchor_day must be a day of the month, 1 to 31 (got {})", u32::from(*.0))]
    AnchorOutOfRange(u8),
    /// A window key that is not one [`WindowSpec::key`](crate::WindowSpec::key) writes.
    #[error("invalid window key {}: {reason}", Quoted(.key))]
    InvalidKey {
        /// The key, as given (at most its first 100 bytes).
        key: String,
        /// What is wrong with it.
        reason: &'static str,
    },
}

impl WindowSpecError {
    /// An [`InvalidKey`](Self::InvalidKey) for `key`.
    pub(super) fn key(key: &str, reason: &'static str) -> Self {
        WindowSpecError::InvalidKey {
            key: cut(key).to_owned(),
            reason,
        }
    }
}

/// `text`, cut to at most 100 bytes (at a character's start) so that a hostile name or key
/// makes no huge message.
pub(super) fn cut(text: &str) -> &str {
    let mut end = text.len().min(100);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    text.get(..end).unwrap_or_default()
}
