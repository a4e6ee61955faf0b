//! The page's settings, as the engine and the instances view hold them: the workload and mode
//! ([`Settings`], [`CallMode`]), and how the instances share their store ([`SyncMode`]). Plain
//! values with no dependency on the rest of the dashboard, so the engine, the instances view
//! and the page's model can all name them.

use quota_core::sim::{Mode, Workload};

/// The workload and how it runs.
#[derive(Debug, Clone, PartialEq)]
pub struct Settings {
    /// Workers, rate, mix, call sizes, bursts, seed.
    pub workload: Workload,
    /// Locked (the tracker) or racy (the demonstration of the bug).
    pub mode: Mode,
    /// How locked-mode workers ask the tracker (racy mode always counts).
    pub call_mode: CallMode,
    /// Simulated time per real time: 60 makes a minute window pass in a second.
    pub speed: f64,
}

/// How a locked-mode worker asks the tracker for a call.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum CallMode {
    /// [`QuotaTracker::try_record`](quota_core::QuotaTracker::try_record): a careful client
    /// that makes the call only if the tracker admits it; refused calls are counted as denied.
    #[default]
    Try,
    /// [`QuotaTracker::record_call`](quota_core::QuotaTracker::record_call): every call is made
    /// and counted, past the limit too (the tracker stops nothing).
    Count,
}

impl CallMode {
    /// `"try"` or `"count"`, the values of the page's select.
    pub fn as_str(self) -> &'static str {
        match self {
            CallMode::Try => "try",
            CallMode::Count => "count",
        }
    }
}

impl std::str::FromStr for CallMode {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        choose(
            "admission",
            [CallMode::Try, CallMode::Count],
            CallMode::as_str,
            text,
        )
    }
}

/// How the instances share the store.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SyncMode {
    /// DEMONSTRATION ONLY: each instance writes its whole view over the store (the old
    /// protocol); calls get lost.
    Snapshot,
    /// Each instance sends its deltas and the store adds them (the
    /// [`Store`](quota_core::Store) protocol).
    #[default]
    Delta,
}

impl SyncMode {
    /// `"snapshot"` or `"delta"`, the values of the page's select.
    pub fn as_str(self) -> &'static str {
        match self {
            SyncMode::Snapshot => "snapshot",
            SyncMode::Delta => "delta",
        }
    }
}

impl std::str::FromStr for SyncMode {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        choose(
            "instances mode",
            [SyncMode::Snapshot, SyncMode::Delta],
            SyncMode::as_str,
            text,
        )
    }
}

/// The one of `choices` that `name` spells `text` (a select's value), or else the message that
/// says which values `what` takes.
fn choose<T: Copy>(
    what: &str,
    choices: [T; 2],
    name: fn(T) -> &'static str,
    text: &str,
) -> Result<T, String> {
    let [first, second] = choices.map(name);
    choices
        .into_iter()
        .find(|&choice| name(choice) == text)
        .ok_or_else(|| format!("{what} must be {first:?} or {second:?} (got {text:?})"))
}
