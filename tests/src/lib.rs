//! Tests of the JS module (`quota_core::js`); the suites live in `tests/`, the Node consumer
//! test and the benchmark in `node/`. See `cargo xtask test`.
