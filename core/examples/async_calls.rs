//! The async API: calls that may wait for the store never block the executor. `Exact` and
//! `Leased` calls that need the store run on the tracker's own I/O threads (no runtime of its
//! own: any executor can await them); `Local` ones are decided at once.

use quota_core::{Admission, MemoryStore, Period, QuotaTracker, ServiceConfig, TrackerConfig};
use std::sync::Arc;

type Error = Box<dyn std::error::Error>;

/// Runs the example (the README's copy is checked against this file).
pub fn main() -> Result<(), Error> {
    let runtime = tokio::runtime::Builder::new_current_thread().build()?;
    runtime.block_on(async {
        let search = ServiceConfig::builder("search", 100, Period::Minute)
            .admission(Admission::Exact) // every call asks the shared store
            .build()?;
        let llm = ServiceConfig::new("llm-tokens", 10_000, Period::Minute);
        // Shared with the other instances (in memory here; a `RedisStore` in production).
        let tracker = Arc::new(
            QuotaTracker::builder(TrackerConfig::new([search, llm]))
                .store(MemoryStore::new())
                .build()?,
        );

        // Asked of the store on an I/O thread: this task only awaits the answer.
        let recorded = tracker.try_record_async("search", 1).await?;
        assert_eq!(recorded.usage.used, 1);

        // A `Local` service: held and settled at once, on this thread.
        let hold = tracker.hold_async("llm-tokens", 2_000).await?;
        assert_eq!(hold.settle_async(1_234).await?.used, 1_234);

        // Blocking calls that must follow one another, off the executor.
        let used = tracker
            .run_async(|tracker| tracker.usage("search").map(|usage| usage.used))
            .await??;
        assert_eq!(used, 1);

        // Last: flush, and let the tracker drop on an I/O thread, not here.
        tracker.close().await?;
        Ok::<(), Error>(())
    })
}
