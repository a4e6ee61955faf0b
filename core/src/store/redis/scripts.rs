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

/// The parts, each after a newline.
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
/// `b<taken>` given back; an admission or lease of several windows adds each other window's
/// after a comma: `a5/0,40/1`, `d9,40`, `g5/0,1`). `ARGV[2]` is always the operation's `seq`,
/// `ARGV[3]` its `done_below` (canonical decimal text, from a `u64`).
const OPS: &str = include_str!("scripts/operations.lua");

/// KEYS: the instance's operations record, then per window its raise count and the window.
/// ARGV: grace, seq, done_below, then per window: calls, floor (0: none), end + grace, longest
/// life. A `seq` applied already or below the mark skips the calls but still applies the
/// floors (a maximum: a resend changes no total); each window given a floor counts a raise.
const SYNC: &str = include_str!("scripts/sync.lua");

/// Reads what admit, lease and give-back need: the record, and each window's total and raise
/// count; returns nil and an error reply if any is not valid. The three share one layout: KEYS
/// the operations record, then per window (the request's, then each of its `also`: a service
/// of several limits) its raise count and the window; ARGV grace, seq, done_below, the
/// operation's own arguments, then per window its end + grace, longest life and its own.
const OP_READ: &str = include_str!("scripts/op_read.lua");

/// ARGV after done_below: count, force (1 or 0); per window: end + grace, longest, below, cap.
/// Admits only if every window does. Answers {'1' admitted or '0' denied, then per window its
/// total and raise count (0 when denied)}.
const ADMIT: &str = include_str!("scripts/admit.lua");

/// ARGV after done_below: block; per window: end + grace, longest, ceiling. Grants the most
/// every window has room for, in all of them. Answers {granted, then per window the total now
/// and the raise count when granted}.
const LEASE: &str = include_str!("scripts/lease.lua");

/// ARGV after done_below: unused; per window: end + grace, longest, the raise count when the
/// calls were counted. Takes them off each window whose raise count is still that (forfeited
/// where it is not). Answers the fewest calls any window took off (a resend gets the first
/// answer).
const GIVE_BACK: &str = include_str!("scripts/give_back.lua");
