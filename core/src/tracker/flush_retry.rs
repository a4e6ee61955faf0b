//! How long `flush` keeps resending to a store that fails.

/// How long `flush` keeps resending: pauses doubling from 10 ms to 500 ms until
/// `flush_timeout_ms` has passed (native; on wasm and under loom it never waits).
pub(super) struct FlushRetry {
    #[cfg(not(any(target_arch = "wasm32", loom)))]
    pub(super) until: std::time::Instant,
    #[cfg(not(any(target_arch = "wasm32", loom)))]
    pub(super) pause: std::time::Duration,
}

impl FlushRetry {
    pub(super) fn new(timeout_ms: u64) -> Self {
        let _ = timeout_ms;
        FlushRetry {
            #[cfg(not(any(target_arch = "wasm32", loom)))]
            // At most a day: a larger setting must not overflow the instant.
            until: std::time::Instant::now()
                + std::time::Duration::from_millis(timeout_ms.min(86_400_000)),
            #[cfg(not(any(target_arch = "wasm32", loom)))]
            pause: std::time::Duration::from_millis(10),
        }
    }

    /// Whether time is up (never on wasm or under loom, where a flush tries once).
    pub(super) fn expired(&self) -> bool {
        #[cfg(not(any(target_arch = "wasm32", loom)))]
        {
            std::time::Instant::now() >= self.until
        }
        #[cfg(any(target_arch = "wasm32", loom))]
        {
            false
        }
    }

    /// Waits before the next try; `false` when time is up.
    pub(super) fn pause(&mut self) -> bool {
        #[cfg(not(any(target_arch = "wasm32", loom)))]
        {
            let left = self
                .until
                .saturating_duration_since(std::time::Instant::now());
            if !left.is_zero() {
                std::thread::sleep(self.pause.min(left));
                self.pause = (self.pause * 2).min(std::time::Duration::from_millis(500));
                return true;
            }
        }
        false
    }
}
