//! The simulated clock the dashboard's store reads.

use quota_core::Clock;
use std::sync::{Arc, Mutex, MutexGuard};
use web_time::Instant;

/// Simulated time: runs at [`speed`](Self::speed) times real time while started, stands still
/// while paused. Clones share one time. A [`Clock`], so the tracker reads it like any other.
#[derive(Debug, Clone)]
pub struct SimClock {
    state: Arc<Mutex<State>>,
}

#[derive(Debug)]
struct State {
    /// Simulated ms since the Unix epoch at `since`.
    at_ms: f64,
    /// When the clock was last started; `None` while paused.
    since: Option<Instant>,
    speed: f64,
}

impl State {
    fn now_ms(&self) -> f64 {
        match self.since {
            Some(since) => self.at_ms + since.elapsed().as_secs_f64() * 1_000.0 * self.speed,
            None => self.at_ms,
        }
    }

    /// Folds the time run since `since` into `at_ms`.
    fn settle(&mut self) {
        self.at_ms = self.now_ms();
        if self.since.is_some() {
            self.since = Some(Instant::now());
        }
    }
}

impl SimClock {
    /// A paused clock at `start_ms`, at speed 1.
    pub fn new(start_ms: u64) -> Self {
        SimClock {
            state: Arc::new(Mutex::new(State {
                at_ms: start_ms as f64,
                since: None,
                speed: 1.0,
            })),
        }
    }

    /// Lets the clock run (no effect if it runs).
    pub fn start(&self) {
        let mut state = self.lock();
        if state.since.is_none() {
            state.since = Some(Instant::now());
        }
    }

    /// Stops the clock where it is.
    pub fn pause(&self) {
        let mut state = self.lock();
        state.settle();
        state.since = None;
    }

    /// Simulated ms per real ms from now on (at least 0).
    pub fn set_speed(&self, speed: f64) {
        let mut state = self.lock();
        state.settle();
        state.speed = speed.max(0.0);
    }

    /// The current speed.
    pub fn speed(&self) -> f64 {
        self.lock().speed
    }

    /// Moves the clock to `ms`.
    pub fn set(&self, ms: u64) {
        let mut state = self.lock();
        state.settle();
        state.at_ms = ms as f64;
    }

    /// Moves the clock forward by `ms`.
    pub fn advance(&self, ms: u64) {
        let mut state = self.lock();
        state.settle();
        state.at_ms += ms as f64;
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        crate::locks::lock(&self.state)
    }
}

/// Real time now, in ms since the Unix epoch (0 for a system clock set before it).
pub(crate) fn wall_ms() -> u64 {
    web_time::SystemTime::now()
        .duration_since(web_time::UNIX_EPOCH)
        .map_or(0, |since| since.as_millis() as u64)
}

impl Clock for SimClock {
    fn now_ms(&self) -> u64 {
        self.lock().now_ms() as u64
    }
}
