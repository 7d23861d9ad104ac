#![no_main]
//! cargo-fuzz target `fast_path`: see fuzz/targets.rs.

#[path = "../targets.rs"]
mod targets;

libfuzzer_sys::fuzz_target!(|data: &[u8]| targets::fast_path(data));
