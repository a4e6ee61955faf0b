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
//! Modules follow the concepts in ARCHITECTURE.md: [`window`] (periods and calendar windows),
//! [`clock`], configuration in [`service`], [`level`], plain values in [`usage`], and the
//! [`tracker`] itself.

pub mod clock;
pub mod error;
#[cfg(feature = "js")]
pub mod js;
pub mod level;
mod observers;
pub mod persistence;
pub mod service;
pub mod sim;
pub mod store;
mod sync;
pub mod tracker;
pub mod usage;
pub mod window;

pub use clock::{Clock, ManualClock, SystemClock};
pub use error::QuotaError;
pub use level::Level;
pub use observers::SubscriptionId;
pub use persistence::{ReducedRatePolicy, StoreEvent, StoreStats, SyncPolicy};
pub use service::{ServiceConfig, ServiceConfigBuilder, TrackerConfig};
#[cfg(not(target_arch = "wasm32"))]
pub use store::FileStore;
#[cfg(all(feature = "browser", target_arch = "wasm32"))]
pub use store::LocalStorageStore;
pub use store::{MemoryStore, PersistedService, PersistedState, Store, StoreError};
pub use tracker::{QuotaTracker, QuotaTrackerBuilder};
pub use usage::{Recorded, ServiceUsage, Snapshot, Transition};
pub use window::{Period, UnknownPeriod, Window};

/// The README's examples, compiled and run as doc tests.
#[cfg(doctest)]
#[doc = include_str!("../../README.md")]
pub struct ReadmeDoctests;
