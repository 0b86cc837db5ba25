//! The benches' shared harness. Each bench's setup and one pass of its measured code
//! live here, so `tests/bench_harness.rs` can `#[path]`-include this module and run
//! them once: a broken bench then fails `cargo test` without any timing loop.
#![allow(dead_code)]

pub mod inputs;
