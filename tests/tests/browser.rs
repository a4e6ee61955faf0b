//! The JS module's suite, run in headless Chromium (`cargo xtask test`; see `suite/`).
#![cfg(target_arch = "wasm32")]

wasm_bindgen_test::wasm_bindgen_test_configure!(run_in_browser);

mod suite;

#[path = "storage/browser.rs"]
mod storage;
