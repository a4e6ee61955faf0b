//! The Lua scripts, one per operation, read from the `.lua` files beside this one: what each
//! is given (KEYS, ARGV) and answers. Each script is the prelude, the operations record and
//! its own part, run atomically by the server.

#[cfg(doc)]
use crate::store::{Store, StoredState};
use ::redis::Script;
use std::sync::LazyLock;

pub(super) struct Scripts {
    pub(super) sync: Script,
    pub(super) admit: Script,
    pub(super) lease: Script,
    pub(super) give_back: Script,
}

pub(super) static SCRIPTS: LazyLock<Scripts> = LazyLock::new(|| Scripts {
    sync: script(&[PRELUDE, OPS, SYNC]),
    admit: script(&[PRELUDE, OPS, OP_READ, ADMIT]),
    lease: script(&[PRELUDE, OPS, OP_READ, LEASE]),
    give_back: script(&[PRELUDE, OPS, OP_READ, GIVE_BACK]),
});

/// The parts, each after a newline: the text (and so the SHA1 the server caches it under) is
/// the one the scripts had when the parts were Rust string constants.
fn script(parts: &[&str]) -> Script {
    let mut text = String::new();
    for part in parts {
        text.push('\n');
        text.push_str(part);
    }
    Script::new(&text)
}

/// Shared by every script: exact arithmetic on decimal text, the server's time, reading and
/// writing a window's total, expiries. `ARGV[1]` is always the grace in ms.
const PRELUDE: &str = include_str!("scripts/prelude.lua");

/// An instance's operations record on a service, the rule of [`Store`] (as [`StoredState`]
/// keeps it): a hash with `low`, the low-water mark, and one field per `seq` applied at or
/// above it, holding its answer as `StoredState` writes it (`1` a sync applied,
/// `a<total>/<raise count>` admitted, `d<total>` denied, `g<granted>/<raise count>` granted,
/// `b<taken>` given back). `ARGV[2]` is always the operation's `seq`,
/// `ARGV[3]` its `done_below` (canonical decimal text, from a `u64`).
const OPS: &str = include_str!("scripts/operations.lua");

/// KEYS: the instance's operations record, then per window its raise count and the window.
/// ARGV: grace, seq, done_below, then per window: calls, floor (0: none), end + grace, longest
/// life. A `seq` applied already or below the mark skips the calls but still applies the
/// floors (a maximum: a resend changes no total); each window given a floor counts a raise.
const SYNC: &str = include_str!("scripts/sync.lua");

/// Reads what admit, lease and give-back need: the record, the window's total and raise count
/// (KEYS 1 to 3); returns nil and an error reply if any is not valid.
const OP_READ: &str = include_str!("scripts/op_read.lua");

/// KEYS: the operations record, the window, its raise count. ARGV: grace, seq, done_below,
/// end + grace, longest, count, below, cap, force (1 or 0). Answers {1 admitted or 0 denied,
/// total, raise count}.
const ADMIT: &str = include_str!("scripts/admit.lua");

/// KEYS: the operations record, the window, its raise count. ARGV: grace, seq, done_below,
/// end + grace, longest, block, ceiling. Answers {granted, the total now, the raise count when
/// granted}.
const LEASE: &str = include_str!("scripts/lease.lua");

/// KEYS: the operations record, the window, its raise count. ARGV: grace, seq, done_below,
/// end + grace, longest, unused, the raise count when the calls were counted. Answers the
/// calls taken off (0: the window was raised since, forfeited; a resend gets the first answer).
const GIVE_BACK: &str = include_str!("scripts/give_back.lua");
