//! The JS module's suite, run in Node (`cargo xtask test`; see `suite/`).
#![cfg(target_arch = "wasm32")]

mod suite;

#[path = "storage/node.rs"]
mod storage;
