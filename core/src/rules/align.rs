//! Clock sanity: which window a reading belongs in, and moving a service there.

use super::{Change, Left, ServiceRules, ServiceState};
use crate::window::Window;

impl ServiceRules {
    /// Moves `state` to the window `now_ms` belongs in, if it is not the current one.
    ///
    /// - At or past the window's end, into the next window: a roll-over, `used` from 0.
    /// - Before the window's start by at most one period: stays (a small step back, such as
    ///   an NTP correction or a thread that read the clock and then waited for the lock).
    /// - Anything else is a *jump*, maybe on a bogus reading. The first jump remembers the
    ///   window it left (`left`); the calls counted after it, in whatever windows, are added
    ///   there, so that a reading back in that window returns to it with its count plus the
    ///   calls counted meanwhile: `used` never drops. A jump forward starts at 0 in the new
    ///   window; a jump far back keeps its count.
    ///
    /// Returns the level change, if any, and (when the window moved) the calls of the new
    /// window's `used` that a shared store does not hold under it yet.
    #[cfg_attr(not(target_arch = "wasm32"), inline(always))]
    pub(crate) fn align(
        &self,
        state: &mut ServiceState,
        now_ms: u64,
    ) -> (Option<Change>, Option<u64>) {
        let forward = now_ms >= state.window.reset_at_ms;
        let far_back = now_ms < self.earliest_reading(state.window);
        if !forward && !far_back {
            return (None, None);
        }
        self.realign(state, now_ms, forward)
    }

    /// The earliest reading that still counts in `window`: one period before its start (a
    /// small step back); [`align`](Self::align) takes an earlier one for a jump.
    #[inline]
    pub(crate) fn earliest_reading(&self, window: Window) -> u64 {
        window.start_ms.saturating_sub(self.window.max_ms())
    }

    /// [`align`](Self::align) when `now_ms` is not in the current window (`forward`: at or
    /// past its end).
    #[cold]
    #[inline(never)]
    fn realign(
        &self,
        state: &mut ServiceState,
        now_ms: u64,
        forward: bool,
    ) -> (Option<Change>, Option<u64>) {
        let window = self.window.window_at(now_ms);
        if window == state.window {
            // Only the last window, past the calendar's range, ends at u64::MAX itself.
            return (None, None);
        }
        let before = self.level(state.used);
        let (used, left, carried) = match state.left {
            // Back (or on) to the window a jump left: its count and everything since.
            Some(left) if left.window == window => {
                let used = left.used.saturating_add(state.used);
                (used, None, used.saturating_sub(left.own))
            }
            // Moving on after a jump: what was counted here belongs to the window left too.
            Some(left) if forward => (
                0,
                Some(Left {
                    used: left.used.saturating_add(state.used),
                    ..left
                }),
                0,
            ),
            // Far back again: the count comes along (so it is not added to `left` as well).
            Some(left) => (state.used, Some(left), state.used),
            // A plain roll-over into the next window.
            None if forward && window.start_ms == state.window.reset_at_ms => (0, None, 0),
            // A first jump forward.
            None if forward => (
                0,
                Some(Left {
                    window: state.window,
                    used: state.used,
                    own: state.used,
                }),
                0,
            ),
            // A first jump far back: keep the count, carried back (not twice) on return.
            None => (
                state.used,
                Some(Left {
                    window: state.window,
                    used: 0,
                    own: state.used,
                }),
                state.used,
            ),
        };
        state.used = used;
        state.window = window;
        state.left = left;
        (self.change(before, used, now_ms), Some(carried))
    }
}
