//! The rules' unit tests: the step and clock sanity, admission, jumps of the clock.

use super::*;

/// A `try_record` (`priority`: `try_record_priority`) of `count` calls.
fn admit(count: u64, reduced_rate: bool, priority: bool) -> Request {
    Request {
        count,
        ask: if priority { Ask::Priority } else { Ask::Normal },
        reduced_rate,
        served: false,
    }
}

mod admission;
mod jumps;
mod step;
