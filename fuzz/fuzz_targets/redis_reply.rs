//! The text rules of `RedisStore` that need no server: reading a stored total back
//! (`parse_total`) and escaping a service name into a key's hash tag (`escape`).
//!
//! - `parse_total` never panics; it accepts exactly the non-empty strings of ASCII digits, and
//!   answers their value capped at `StoredState::MAX_TOTAL` (any number of leading zeros);
//! - `escape` never panics; its output has no `{` or `}` (a name cannot break the hash tag),
//!   is never empty, and two different names never escape alike.

#![no_main]

use libfuzzer_sys::fuzz_target;
use quota_core::fuzzing::{escape, parse_total};
use quota_core::StoredState;

fuzz_target!(|input: (&str, &str)| {
    let (text, other) = input;
    let parsed = parse_total(text);
    let digits = !text.is_empty() && text.bytes().all(|b| b.is_ascii_digit());
    assert_eq!(parsed.is_some(), digits, "{text:?}");
    if let Some(total) = parsed {
        assert!(total <= StoredState::MAX_TOTAL);
        let value: u128 = text.trim_start_matches('0').parse::<u128>().unwrap_or(
            if text.trim_start_matches('0').is_empty() {
                0
            } else {
                u128::MAX
            },
        );
        assert_eq!(
            u128::from(total),
            value.min(u128::from(StoredState::MAX_TOTAL)),
            "{text:?}"
        );
    }
    for name in [text, other] {
        let escaped = escape(name);
        assert!(!escaped.is_empty());
        assert!(
            !escaped.contains('{') && !escaped.contains('}'),
            "{escaped:?}"
        );
    }
    if text != other {
        assert_ne!(
            escape(text),
            escape(other),
            "{text:?} and {other:?} escape alike"
        );
    }
});
