//! Was a bug: a sync cut before a hold was settled, and answered after, raised the view back
//! by the calls given back (a reply never lowers `used`): the service stayed that much fuller
//! until its window ended, refusing calls the store had room for. A store that settles the
//! hold while it answers a sync lands the settle exactly in that gap.

use quota_core::{
    Admission, MemoryStore, OwnedHold, Period, QuotaTracker, ServiceConfig, Store, StoreError,
    SyncBatch, TrackerConfig,
};
use std::sync::{Arc, Mutex};

/// A `MemoryStore` that settles `hold` at `actual` while it answers the next sync (after the
/// tracker cut the batch, before its reply is taken in).
#[derive(Clone, Default)]
struct SettlingStore {
    inner: MemoryStore,
    hold: Arc<Mutex<Option<(OwnedHold, u64)>>>,
}

impl Store for SettlingStore {
    fn sync(&self, batch: &SyncBatch) -> Result<Vec<u64>, StoreError> {
        let answer = self.inner.sync(batch);
        if let Some((hold, actual)) = self.hold.lock().unwrap().take() {
            hold.settle(actual).unwrap();
        }
        answer
    }
    fn admit(
        &self,
        request: &quota_core::AdmitRequest,
    ) -> Result<quota_core::AdmitReply, StoreError> {
        self.inner.admit(request)
    }
    fn give_back(&self, request: &quota_core::GiveBack) -> Result<u64, StoreError> {
        self.inner.give_back(request)
    }
}

fn total(store: &SettlingStore) -> u64 {
    store
        .inner
        .state()
        .unwrap()
        .windows()
        .map(|w| w.total)
        .sum()
}

#[test]
fn a_settle_between_a_sync_and_its_reply_keeps_the_view_down() {
    for admission in [Admission::Local, Admission::Exact] {
        let store = SettlingStore::default();
        let llm = ServiceConfig::builder("llm", 1_000, Period::Hour)
            .admission(admission)
            .build()
            .unwrap();
        let tracker = Arc::new(
            QuotaTracker::builder(TrackerConfig::new([llm]))
                .store(store.clone())
                .build()
                .unwrap(),
        );
        let hold = tracker.hold_owned("llm", 400).unwrap();
        tracker.flush().unwrap(); // the store has the 400
        *store.hold.lock().unwrap() = Some((hold, 100));
        tracker.flush().unwrap(); // settled at 100 while this sync is answered
        tracker.flush().unwrap(); // the give-back of 300 reaches the store
        assert_eq!(total(&store), 100, "{admission:?}: the store");
        assert_eq!(
            tracker.usage("llm").unwrap().used,
            100,
            "{admission:?}: the view"
        );
    }
}
