//! # quota-web
//!
//! The dashboard: a Leptos (client-side) app that runs the [`quota_core::sim`] workload in the
//! browser and shows, per service, the quota usage, levels and transitions, and the units
//! issued, recorded and lost — with the locked tracker, or with the racy counter that loses
//! updates.
//!
//! Built by Trunk from the repository's `index.html`; `cargo xtask serve` serves it. The crate
//! is empty on native targets: the app only runs on `wasm32-unknown-unknown`.
//!
//! - [`engine`]: the simulation itself — the counter (the tracker, or the racy demonstration),
//!   the virtual workers (async tasks), and the counters they update.
//! - [`instances`]: the instances view, several trackers sharing one store (by deltas, or by
//!   the old overwriting snapshots, a demonstration).
//! - [`persist`]: what a reload continues from ([`DashboardStorage`](persist::DashboardStorage)
//!   in `localStorage`), and the store outage switch.
//! - [`settings`]: the workload, mode and admission the engine runs, and how the instances
//!   share their store.
//! - [`state`]: the signals the components read (read-only), refreshed once per animation
//!   frame, and the actions that change the engine and write them.
//! - [`components`]: one file per part of the page.
//! - [`dynamic`]: how the views stay small in the `.wasm` (boxed reactive values and event
//!   handlers). Every part of the page is a Leptos view: a frame changes text nodes and
//!   attributes in place, and elements are made only for what is new (a row, an entry).

// The whole crate is the browser app: nothing of it on other targets.
#![cfg(target_arch = "wasm32")]

pub mod app;
pub mod clock;
pub mod components;
pub mod dynamic;
pub mod engine;
pub mod format;
pub mod instances;
mod locks;
pub mod model;
pub mod persist;
pub mod settings;
pub mod state;

pub use app::App;
