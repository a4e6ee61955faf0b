//! The rules' unit tests: the step and clock sanity, admission, jumps of the clock.

use super::*;

mod admission;
mod jumps;
mod step;
