//! The text rules of `RedisStore` that need no Redis: how a stored total is read back, and how
//! a service name is escaped into a key. Kept apart so they can be fuzzed without a server
//! (`fuzz/fuzz_targets/redis_reply.rs`).

use super::StoredState;

/// A stored total: decimal digits, capped at [`StoredState::MAX_TOTAL`].
pub fn parse_total(text: &str) -> Option<u64> {
    if text.is_empty() || !text.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let digits = text.trim_start_matches('0');
    if digits.len() > 19 {
        return Some(StoredState::MAX_TOTAL);
    }
    Some(
        digits
            .parse::<u64>()
            .unwrap_or(0)
            .min(StoredState::MAX_TOTAL),
    )
}

/// `%`, `{` and `}` escaped (so a name cannot break the hash tag); the empty name is `%`.
pub fn escape(name: &str) -> String {
    if name.is_empty() {
        return "%".to_owned();
    }
    let mut out = String::with_capacity(name.len());
    for c in name.chars() {
        match c {
            '%' => out.push_str("%25"),
            '{' => out.push_str("%7B"),
            '}' => out.push_str("%7D"),
            c => out.push(c),
        }
    }
    out
}
