//! Which services' blocking calls run off the executor: those whose calls may wait for the
//! store.

use quota_core::{Admission, QuotaTracker, ServiceId};

/// Whether the calls of service `id` may wait for the store (`Exact`, `Leased`): their
/// blocking calls run on the tracker's I/O threads, never on the executor.
pub(crate) fn asks_store(tracker: &QuotaTracker, id: ServiceId) -> bool {
    tracker
        .service_by_id(id)
        .is_some_and(|service| service.admission() != Admission::Local)
}
