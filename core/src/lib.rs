//! # quota-core
//!
//! A thread-safe API quota tracker: count every call per service against a quota (per minute,
//! hour, day or calendar month, aligned to UTC), see the level rise from Normal to Warning,
//! Critical and Exhausted, refuse calls before the limit, and get told about each level change.
//!
//! The same code runs natively and on `wasm32-unknown-unknown`.
//!
//! ```
//! use quota_core::{QuotaTracker, Level};
//!
//! let tracker = QuotaTracker::with_defaults(); // tiingo 500/month, finnhub 60/minute, sendgrid 100/day
//! tracker.on_transition(|t| println!("{} went {} -> {}", t.service, t.from, t.to));
//! let recorded = tracker.record_call("finnhub", 50)?;
//! assert_eq!(recorded.usage.level(), Level::Critical);
//! assert!(!tracker.can_call("finnhub")?);
//! # Ok::<(), quota_core::QuotaError>(())
//! ```
//!
//! The implementation modules follow the concepts in ARCHITECTURE.md (windows, clocks,
//! configuration, levels, the per-service step, the tracker, observers, persistence, stores);
//! they are private and everything public is re-exported here, once. Two public modules are
//! namespaces of their own: `sim` (feature `sim`, the workload simulator and the demonstration
//! of the lost-update bug) and `js` (feature `js`, the JavaScript bindings). With the feature
//! `metrics`, the tracker reports gauges and counters through the `metrics` facade to the
//! recorder the program installs (`describe_metrics` lists them; `QuotaTracker::publish_metrics`
//! refreshes the gauges before a scrape).

#[cfg(not(target_arch = "wasm32"))]
mod caller;
mod clock;
mod config;
mod error;
#[cfg(feature = "js")]
pub mod js;
mod level;
mod locks;
#[cfg(feature = "metrics")]
mod metrics;
mod observers;
mod persistence;
mod rules;
mod secrets;
#[cfg(feature = "sim")]
pub mod sim;
mod sorted;
mod store;
mod text;
mod tracker;
mod usage;
mod window;

#[cfg(feature = "metrics")]
pub use self::metrics::{deny_reason_label, describe_metrics};
pub use clock::{Clock, ManualClock, SystemClock};
pub use config::{
    Admission, ConfigError, ConfigFormat, Limit, QuotaFile, RedisUrl, ReducedRatePolicy,
    ServiceConfig, ServiceConfigBuilder, StoreUrl, StoreUrlError, SyncPolicy, TrackerConfig,
};
pub use error::{DenyReason, QuotaError};
pub use level::Level;
pub use observers::{StoreEventSubscription, TransitionSubscription};
pub use persistence::{StoreEvent, StoreStats};
#[cfg(not(target_arch = "wasm32"))]
pub use store::FileStore;
#[cfg(all(feature = "browser", target_arch = "wasm32"))]
pub use store::LocalStorageStore;
pub use store::{
    AdmitReply, AdmitRequest, AdmitWindow, Delta, GiveBack, GiveBackWindow, InstanceId, LeaseReply,
    LeaseRequest, LeaseWindow, MemoryStore, Raise, Store, StoreError, StoredState, StoredWindow,
    SyncBatch, WindowKey, WindowTotal,
};
#[cfg(all(feature = "redis", not(target_arch = "wasm32")))]
pub use store::{RedisClock, RedisStore};
#[cfg(not(target_arch = "wasm32"))]
pub use tracker::{AsyncCall, AsyncRecorded, HoldWhenReady, ReadyResult, UntilReady};
pub use tracker::{
    Hold, OwnedHold, QuotaTracker, QuotaTrackerBuilder, Reconfigured, Service, ServiceId,
    Settlement,
};
pub use usage::{Raised, Recorded, ServiceUsage, Snapshot, Transition};
pub use window::{Period, TimeZone, UnknownPeriod, Window, WindowSpec, WindowSpecError};

/// Internals the fuzz targets in `fuzz/` drive directly. Not part of the API.
#[doc(hidden)]
pub mod fuzzing {
    pub use crate::store::redis_text::{escape, parse_total};
}

/// The README's examples, compiled and run as doc tests.
#[cfg(doctest)]
#[doc = include_str!("../../README.md")]
pub struct ReadmeDoctests;
