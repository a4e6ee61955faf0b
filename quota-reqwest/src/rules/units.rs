//! Per-unit headers: a provider that counts one response in several units sends a remaining
//! count and a reset per unit (OpenAI: `x-ratelimit-remaining-requests` and
//! `x-ratelimit-remaining-tokens`, each with its `x-ratelimit-reset-*`, a refill time such as
//! `6m0s`), each mapped explicitly to a service of the tracker.

use super::which_limit::limit_for_refill;
use super::QuotaRules;
use crate::body::Pending;
use crate::headers::{parse_seconds_ms, parse_whole};
use http::{HeaderMap, HeaderName};
use quota_core::{QuotaError, ServiceId};

/// One unit's headers and the service they report on.
#[derive(Debug, Clone)]
pub(crate) struct UnitHeaders {
    remaining: HeaderName,
    reset: HeaderName,
    service: ServiceId,
}

impl QuotaRules {
    /// Takes `remaining` (a count left) and `reset` (when the provider's count is whole again)
    /// of every counted response into `service`, whichever service the request itself counted
    /// against: `.unit_headers("openai-tokens", "x-ratelimit-remaining-tokens",
    /// "x-ratelimit-reset-tokens")?` beside the same for `-requests`.
    ///
    /// Such limits are rolling (a bucket refilled continuously), and a reset is a refill time
    /// (`6m0s`, `1.5s`, `20ms`; Go's duration syntax, or plain seconds), not the end of a
    /// window. `remaining r` says the provider counts `limit - r` now, in a rolling window of
    /// at most the refill time. It is taken as a floor ([`QuotaTracker::raise_used`], never
    /// added) of the *current* window of the service's shortest limit whose window is at
    /// least that long (the longest limit's if none is; the shortest's without a reset): the
    /// provider refuses until its bucket refills, so our count may not be lower now. Our
    /// window is fixed, so a floor taken just after it starts may hold calls of the one
    /// before: an under-admission at worst, never an over-admission. A header that is missing
    /// or does not parse is ignored.
    ///
    /// Errors: [`QuotaError::UnknownService`]; [`QuotaError::InvalidConfig`] for a header
    /// name that is not one.
    ///
    /// [`QuotaTracker::raise_used`]: quota_core::QuotaTracker::raise_used
    pub fn unit_headers(
        mut self,
        service: &str,
        remaining: &str,
        reset: &str,
    ) -> Result<Self, QuotaError> {
        let id = self.tracker.service(service)?.id();
        let name = |field: &'static str, text: &str| {
            HeaderName::try_from(text).map_err(|_| QuotaError::InvalidConfig {
                service: Some(service.to_owned()),
                field,
                value: format!("{text:?}"),
                reason: "must be an HTTP header name".to_owned(),
            })
        };
        self.units.push(UnitHeaders {
            remaining: name("remaining", remaining)?,
            reset: name("reset", reset)?,
            service: id,
        });
        Ok(self)
    }

    /// Takes every unit's headers of a counted response in; the floors of the service whose
    /// hold is `pending` on the body are raised again once it settles.
    pub(crate) fn take_units(&self, headers: &HeaderMap, mut pending: Option<&mut Pending>) {
        for unit in &self.units {
            let Some(remaining) = text(headers, &unit.remaining).and_then(parse_whole) else {
                continue;
            };
            let refill_ms = match headers.get(&unit.reset) {
                None => None,
                Some(value) => match value.to_str().ok().and_then(parse_refill_ms) {
                    Some(ms) => Some(ms),
                    // A reset that does not parse: the count's window is unknown.
                    None => continue,
                },
            };
            let Some(service) = self.tracker.service_by_id(unit.service) else {
                continue;
            };
            let limits = service.usage_limits();
            let Some(at) = limit_for_refill(&limits, refill_ms) else {
                continue;
            };
            let at_least = limits[at].limit.saturating_sub(remaining);
            if at_least > 0 {
                // The current window's end names that limit to `raise_used` (a shorter limit
                // ending at the same instant would take it: the stricter reading).
                let _ = service.raise_used(at_least, Some(limits[at].reset_at_ms));
                if let Some(pending) = pending.as_mut().filter(|p| p.service() == unit.service) {
                    pending.floor(at_least, limits[at].reset_at_ms);
                }
            }
        }
    }
}

fn text<'h>(headers: &'h HeaderMap, name: &HeaderName) -> Option<&'h str> {
    headers.get(name)?.to_str().ok()
}

/// A refill time: Go's duration syntax (`6m0s`, `1h2m3.5s`, `20ms`, `150us`, `0s`), or plain
/// seconds (`30`, `1.5`), as whole milliseconds (rounded up). `None` if it does not parse.
pub(crate) fn parse_refill_ms(text: &str) -> Option<u64> {
    let text = text.trim();
    if let Some(ms) = parse_seconds_ms(text) {
        return Some(ms);
    }
    if text.is_empty() {
        return None;
    }
    // In nanoseconds, so that `1.5ms` and `150us` add up exactly.
    let mut total: u128 = 0;
    let mut rest = text;
    while !rest.is_empty() {
        let number_end = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        let (number, after) = rest.split_at(number_end);
        let unit_end = after
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(after.len());
        let (unit, after) = after.split_at(unit_end);
        let ns_per: u128 = match unit {
            "h" => 3_600_000_000_000,
            "m" => 60_000_000_000,
            "s" => 1_000_000_000,
            "ms" => 1_000_000,
            "us" | "µs" => 1_000,
            "ns" => 1,
            _ => return None,
        };
        let (whole, fraction) = number.split_once('.').unwrap_or((number, ""));
        if whole.is_empty() && fraction.is_empty() {
            return None;
        }
        let whole: u128 = if whole.is_empty() {
            0
        } else {
            whole.parse().ok()?
        };
        if !fraction.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        let mut part = whole.checked_mul(ns_per)?;
        let mut scale = ns_per;
        for digit in fraction.bytes().take(18) {
            scale /= 10;
            part = part.checked_add(u128::from(digit - b'0') * scale)?;
        }
        total = total.checked_add(part)?;
        rest = after;
    }
    u64::try_from(total.div_ceil(1_000_000)).ok()
}

#[cfg(test)]
mod tests {
    use super::parse_refill_ms;

    #[test]
    fn refill_times_read_as_go_durations_or_seconds() {
        let cases = [
            ("6m0s", Some(360_000)),
            ("1s", Some(1_000)),
            ("20ms", Some(20)),
            ("1h2m3.5s", Some(3_723_500)),
            ("1.5ms", Some(2)),
            ("150us", Some(1)),
            ("150µs", Some(1)),
            ("0s", Some(0)),
            ("30", Some(30_000)),
            ("1.25", Some(1_250)),
            (" 2m ", Some(120_000)),
            ("", None),
            ("s", None),
            ("6x", None),
            ("-1s", None),
            ("1.2.3s", None),
            ("m5", None),
            ("99999999999999999999h", None),
        ];
        for (text, expected) in cases {
            assert_eq!(parse_refill_ms(text), expected, "{text:?}");
        }
    }
}
