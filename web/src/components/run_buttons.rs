//! Start, pause and reset, and the status word: the same buttons for the simulation and the
//! instances view.

use crate::dynamic::{flag, text, Handler};
use crate::model::Status;
use leptos::ev::MouseEvent;
use leptos::prelude::*;

/// A simulation's status, as [`RunButtons`] reads it.
pub type StatusOf = std::sync::Arc<dyn Fn() -> Status + Send + Sync>;

/// The buttons that run one simulation, and its status. While its workers run, Start is done
/// (disabled, showing the running label) and Pause is the action. The test ids are `prefix`
/// followed by `start`, `pause`, `reset` and `status`.
#[component]
pub fn RunButtons(
    /// The simulation's status, read from its frame (a closure rather than a `Memo<Status>`:
    /// each memo type is its own copy of the memo code).
    status: StatusOf,
    /// The group's accessible name.
    label: &'static str,
    /// Start's label when ready, while running, and when paused (or pausing).
    start_labels: [&'static str; 3],
    /// The words before the status word.
    status_label: &'static str,
    /// The test ids' prefix.
    prefix: &'static str,
    start: Handler<MouseEvent>,
    pause: Handler<MouseEvent>,
    reset: Handler<MouseEvent>,
) -> impl IntoView {
    // A closure rather than a `Memo<bool>` (each memo type is its own copy of the memo code).
    let running = {
        let status = status.clone();
        flag(move || status() == Status::Running)
    };
    let idle = {
        let status = status.clone();
        flag(move || status() != Status::Running)
    };
    let [ready_label, running_label, paused_label] = start_labels;
    let start_label = text({
        let status = status.clone();
        move || {
            match status() {
                Status::Ready => ready_label,
                Status::Running => running_label,
                Status::Pausing | Status::Paused => paused_label,
            }
            .to_owned()
        }
    });
    let word = text(move || status().as_str().to_owned());
    view! {
        <div class="buttons" role="group" aria-label=label>
            <button
                type="button"
                class:primary=idle.clone()
                data-testid=format!("{prefix}start")
                prop:disabled=running.clone()
                on:click=start
            >
                {start_label}
            </button>
            <button
                type="button"
                class:primary=running
                data-testid=format!("{prefix}pause")
                prop:disabled=idle
                on:click=pause
            >
                "Pause"
            </button>
            <button type="button" data-testid=format!("{prefix}reset") on:click=reset>
                "Reset"
            </button>
            <span class="status" role="status">
                {status_label} <strong data-testid=format!("{prefix}status")>{word}</strong>
            </span>
        </div>
    }
}
