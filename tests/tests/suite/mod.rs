//! Test bodies shared by the Node (`node.rs`) and browser (`browser.rs`) targets.
//!
//! They drive the JS class through the real wasm-bindgen boundary: the class and its methods
//! are looked up on JS objects and called with `Reflect`, the way JavaScript calls them.

mod bad_input;
mod callbacks;
mod concurrency;
mod document;
pub(crate) mod js;
mod methods;
mod service;
mod shared_admission;
pub(crate) mod storage;
