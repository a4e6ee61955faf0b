//! What a provider's response headers say about its count, read leniently: a header that is
//! missing, repeated with a bad first value, not ASCII, negative, fractional where a whole
//! number is needed, or out of range is ignored, never an error and never a panic.

use http::header::{HeaderMap, HeaderName, RETRY_AFTER};
use std::time::{Duration, UNIX_EPOCH};

/// `X-RateLimit-Remaining` (GitHub, Twitter/X, many others).
static X_REMAINING: HeaderName = HeaderName::from_static("x-ratelimit-remaining");
/// `X-RateLimit-Reset`: epoch seconds (or ms), or seconds from now (see [`parse_x_reset`]).
static X_RESET: HeaderName = HeaderName::from_static("x-ratelimit-reset");
/// `RateLimit-Remaining` (the IETF draft's field).
static REMAINING: HeaderName = HeaderName::from_static("ratelimit-remaining");
/// `RateLimit-Reset`: seconds from now (the IETF draft's field).
static RESET: HeaderName = HeaderName::from_static("ratelimit-reset");

/// Values at or above this are epoch milliseconds (2001-09-09 in ms is 10^12).
const EPOCH_MS_FROM: u64 = 1_000_000_000_000;
/// Values at or above this (and below [`EPOCH_MS_FROM`]) are epoch seconds: 10^9 s is
/// 2001-09-09, and no window resets 31 years from now.
const EPOCH_S_FROM: u64 = 1_000_000_000;

/// One remaining-calls report: the calls the provider says remain, and when its count resets
/// (ms since the Unix epoch), if it said.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Remaining {
    pub(crate) remaining: u64,
    pub(crate) resets_at_ms: Option<u64>,
    /// The provider's quota for this count, where it says (the IETF `RateLimit-Policy`'s
    /// `q`): its count is then `quota - remaining`; otherwise our limit's.
    pub(crate) quota: Option<u64>,
}

/// Everything read from one response's headers.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub(crate) struct ProviderWord {
    /// One per header family present (`X-RateLimit-*`, then `RateLimit-*`).
    pub(crate) remaining: Vec<Remaining>,
    /// The first reset time any family gave (a 429's count is taken to reset then).
    pub(crate) resets_at_ms: Option<u64>,
    /// A reset header was sent but none parsed: the window of the provider's count (a 429's
    /// included) is unknown.
    pub(crate) reset_malformed: bool,
    /// `Retry-After`, as a delay from now.
    pub(crate) retry_after: Option<Duration>,
}

impl ProviderWord {
    /// Reads `headers` at `now_ms` (ms since the Unix epoch, the tracker's clock).
    pub(crate) fn read(headers: &HeaderMap, now_ms: u64) -> Self {
        // Per family: `None` without a reset header, `Some(None)` with one that does not parse
        // (its count's window is unknown: the count is ignored).
        let read_reset = |name: &HeaderName, parse: fn(&str, u64) -> Option<u64>| {
            headers
                .get(name)
                .map(|value| value.to_str().ok().and_then(|v| parse(v, now_ms)))
        };
        let x_reset = read_reset(&X_RESET, parse_x_reset);
        let reset = read_reset(&RESET, parse_delta_reset);
        let resets_at_ms = x_reset.flatten().or(reset.flatten());
        let mut word = ProviderWord {
            resets_at_ms,
            reset_malformed: (x_reset.is_some() || reset.is_some()) && resets_at_ms.is_none(),
            retry_after: first(headers, &RETRY_AFTER).and_then(|v| parse_retry_after(v, now_ms)),
            ..ProviderWord::default()
        };
        for (name, reset) in [(&X_REMAINING, x_reset), (&REMAINING, reset)] {
            let resets_at_ms = match reset {
                None => None,
                Some(Some(at)) => Some(at),
                Some(None) => continue,
            };
            if let Some(remaining) = first(headers, name).and_then(parse_whole) {
                word.remaining.push(Remaining {
                    remaining,
                    resets_at_ms,
                    quota: None,
                });
            }
        }
        word
    }
}

/// The first value of `name`, as text; `None` if absent or not visible ASCII.
fn first<'h>(headers: &'h HeaderMap, name: &HeaderName) -> Option<&'h str> {
    headers.get(name)?.to_str().ok()
}

/// A non-negative whole number, surrounding spaces allowed (`" 42 "`), nothing else (no sign,
/// no fraction, no list).
pub(crate) fn parse_whole(text: &str) -> Option<u64> {
    let text = text.trim();
    if text.is_empty() || !text.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    text.parse().ok()
}

/// A non-negative number of seconds, whole or decimal (`"30"`, `"1.5"`), as milliseconds
/// (rounded up: a count that resets "in 1.2 s" has not reset after 1 s).
pub(crate) fn parse_seconds_ms(text: &str) -> Option<u64> {
    let text = text.trim();
    if let Some(whole) = parse_whole(text) {
        return whole.checked_mul(1_000);
    }
    let (int, frac) = text.split_once('.')?;
    if frac.is_empty() || !frac.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let int = if int.is_empty() { 0 } else { parse_whole(int)? };
    // Milliseconds from the first three digits, plus one if any digit beyond is not zero.
    let mut ms: u64 = 0;
    for (i, digit) in frac
        .bytes()
        .chain(std::iter::repeat(b'0'))
        .take(3)
        .enumerate()
    {
        ms += u64::from(digit - b'0') * [100, 10, 1][i];
    }
    if frac.bytes().skip(3).any(|b| b != b'0') {
        ms += 1;
    }
    int.checked_mul(1_000)?.checked_add(ms)
}

/// `X-RateLimit-Reset`: a value from 10^12 up is epoch milliseconds, from 10^9 up epoch
/// seconds, anything smaller seconds from now (providers use all three). Each may have a
/// decimal fraction (`1718003600.5` is epoch seconds, `0.5` half a second from now), rounded
/// up to the next millisecond.
pub(crate) fn parse_x_reset(text: &str, now_ms: u64) -> Option<u64> {
    // The value times 1000, rounded up: the scale is told by the value, fraction and all.
    let thousandths = parse_seconds_ms(text)?;
    if thousandths >= EPOCH_MS_FROM * 1_000 {
        Some(thousandths.div_ceil(1_000))
    } else if thousandths >= EPOCH_S_FROM * 1_000 {
        Some(thousandths)
    } else {
        now_ms.checked_add(thousandths)
    }
}

/// `RateLimit-Reset`: seconds from now.
pub(crate) fn parse_delta_reset(text: &str, now_ms: u64) -> Option<u64> {
    now_ms.checked_add(parse_seconds_ms(text)?)
}

/// `Retry-After`: delay-seconds (a whole number) or an HTTP-date; a date in the past is no
/// delay.
pub(crate) fn parse_retry_after(text: &str, now_ms: u64) -> Option<Duration> {
    if let Some(seconds) = parse_whole(text) {
        return Some(Duration::from_secs(seconds));
    }
    let at = httpdate::parse_http_date(text.trim()).ok()?;
    let at_ms = u64::try_from(at.duration_since(UNIX_EPOCH).ok()?.as_millis()).ok()?;
    Some(Duration::from_millis(at_ms.saturating_sub(now_ms)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    const NOW: u64 = 1_718_000_000_000;

    fn headers(pairs: &[(&'static str, &[u8])]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.append(
                HeaderName::from_static(name),
                HeaderValue::from_bytes(value).unwrap(),
            );
        }
        map
    }

    #[test]
    fn whole_numbers_only_where_counts_are_meant() {
        assert_eq!(parse_whole(" 42 "), Some(42));
        assert_eq!(parse_whole("0"), Some(0));
        for bad in [
            "",
            " ",
            "-1",
            "+1",
            "1.5",
            "1e3",
            "4,2",
            "0x10",
            "١٢",
            "99999999999999999999",
        ] {
            assert_eq!(parse_whole(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn seconds_may_be_decimal_and_round_up() {
        assert_eq!(parse_seconds_ms("30"), Some(30_000));
        assert_eq!(parse_seconds_ms("1.5"), Some(1_500));
        assert_eq!(parse_seconds_ms(".25"), Some(250));
        assert_eq!(parse_seconds_ms("0.0001"), Some(1));
        assert_eq!(parse_seconds_ms("2.000"), Some(2_000));
        for bad in ["1.", "-1.5", "1.-5", "a", "1.5s", "18446744073709551615"] {
            assert_eq!(parse_seconds_ms(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn x_reset_is_epoch_seconds_epoch_ms_or_a_delay() {
        assert_eq!(parse_x_reset("60", NOW), Some(NOW + 60_000));
        assert_eq!(parse_x_reset("1718003600", NOW), Some(1_718_003_600_000));
        assert_eq!(parse_x_reset("1718003600123", NOW), Some(1_718_003_600_123));
        assert_eq!(parse_x_reset("0.5", NOW), Some(NOW + 500));
        assert_eq!(parse_x_reset("soon", NOW), None);
        assert_eq!(parse_x_reset("999", u64::MAX - 5), None, "overflow");
        assert_eq!(
            parse_x_reset("999999999.5", NOW),
            Some(NOW + 999_999_999_500)
        );
        assert_eq!(parse_x_reset("1000000000", NOW), Some(1_000_000_000_000));
        assert_eq!(
            parse_x_reset("999999999999", NOW),
            Some(999_999_999_999_000)
        );
        assert_eq!(parse_x_reset("1000000000000", NOW), Some(1_000_000_000_000));
        assert_eq!(
            parse_delta_reset("1718003600", NOW),
            Some(NOW + 1_718_003_600_000)
        );
    }

    #[test]
    fn a_fractional_x_reset_keeps_the_scale_of_its_value() {
        // Epoch seconds with a fraction: an instant, not 1.7 billion seconds from now.
        assert_eq!(parse_x_reset("1718003600.5", NOW), Some(1_718_003_600_500));
        assert_eq!(
            parse_x_reset("1718003600.0001", NOW),
            Some(1_718_003_600_001)
        );
        assert_eq!(
            parse_x_reset(" 1718003600.25 ", NOW),
            Some(1_718_003_600_250)
        );
        // Epoch milliseconds with a fraction: rounded up to the next millisecond.
        assert_eq!(
            parse_x_reset("1718003600123.4", NOW),
            Some(1_718_003_600_124)
        );
        assert_eq!(
            parse_x_reset("1718003600123.0", NOW),
            Some(1_718_003_600_123)
        );
        // Seconds from now with a fraction, as before.
        assert_eq!(parse_x_reset("30.25", NOW), Some(NOW + 30_250));
        for bad in [
            "1718003600.",
            "1718003600.5.5",
            "-1718003600.5",
            "1718003600,5",
        ] {
            assert_eq!(parse_x_reset(bad, NOW), None, "{bad:?}");
        }
    }

    #[test]
    fn retry_after_is_seconds_or_an_http_date() {
        assert_eq!(
            parse_retry_after("120", NOW),
            Some(Duration::from_secs(120))
        );
        // 2024-06-10 06:14:20 GMT is 60 s after NOW (06:13:20).
        assert_eq!(
            parse_retry_after("Mon, 10 Jun 2024 06:14:20 GMT", NOW),
            Some(Duration::from_secs(60))
        );
        assert_eq!(
            parse_retry_after("Mon, 10 Jun 2024 06:00:00 GMT", NOW),
            Some(Duration::ZERO),
            "a date in the past: retry now"
        );
        for bad in ["-5", "1.5", "tomorrow", "Mon, 99 Jun 2024 06:14:20 GMT", ""] {
            assert_eq!(parse_retry_after(bad, NOW), None, "{bad:?}");
        }
    }

    #[test]
    fn a_response_is_read_family_by_family_and_bad_values_are_skipped() {
        let word = ProviderWord::read(
            &headers(&[
                ("x-ratelimit-remaining", b"7"),
                ("x-ratelimit-reset", b"30"),
                ("ratelimit-remaining", b"9"),
                ("ratelimit-reset", b"45"),
                ("retry-after", b"12"),
            ]),
            NOW,
        );
        assert_eq!(
            word.remaining,
            [
                Remaining {
                    remaining: 7,
                    resets_at_ms: Some(NOW + 30_000),
                    quota: None
                },
                Remaining {
                    remaining: 9,
                    resets_at_ms: Some(NOW + 45_000),
                    quota: None
                }
            ]
        );
        assert_eq!(word.resets_at_ms, Some(NOW + 30_000));
        assert_eq!(word.retry_after, Some(Duration::from_secs(12)));

        let junk = ProviderWord::read(
            &headers(&[
                ("x-ratelimit-remaining", b"-3"),
                ("x-ratelimit-reset", b"\xff\xfe"),
                ("ratelimit-remaining", b"ten"),
                ("retry-after", b"later"),
            ]),
            NOW,
        );
        assert_eq!(
            junk,
            ProviderWord {
                reset_malformed: true,
                ..ProviderWord::default()
            }
        );
        // A reset that does not parse: that family's count is for an unknown window.
        let unknown = ProviderWord::read(
            &headers(&[
                ("x-ratelimit-remaining", b"3"),
                ("x-ratelimit-reset", b"never"),
                ("ratelimit-remaining", b"4"),
            ]),
            NOW,
        );
        assert_eq!(
            unknown.remaining,
            [Remaining {
                remaining: 4,
                resets_at_ms: None,
                quota: None
            }]
        );
        assert!(unknown.reset_malformed, "a 429's window is unknown too");
        // One family's reset still tells the window when the other's does not parse.
        let either = ProviderWord::read(
            &headers(&[("x-ratelimit-reset", b"never"), ("ratelimit-reset", b"9")]),
            NOW,
        );
        assert_eq!(
            (either.resets_at_ms, either.reset_malformed),
            (Some(NOW + 9_000), false)
        );
        let none = ProviderWord::read(&headers(&[("ratelimit-remaining", b"4")]), NOW);
        assert!(
            !none.reset_malformed,
            "no reset header is not a malformed one"
        );
        // Only the first of repeated headers counts.
        let repeated = ProviderWord::read(
            &headers(&[("ratelimit-remaining", b"x"), ("ratelimit-remaining", b"5")]),
            NOW,
        );
        assert!(repeated.remaining.is_empty());
        // Remaining without a reset: reported with no reset time.
        let bare = ProviderWord::read(&headers(&[("ratelimit-remaining", b"5")]), NOW);
        assert_eq!(
            bare.remaining,
            [Remaining {
                remaining: 5,
                resets_at_ms: None,
                quota: None
            }]
        );
    }
}
