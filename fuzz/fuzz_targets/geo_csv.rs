#![no_main]
//! cargo-fuzz target `geo_csv`: see fuzz/targets.rs.

#[path = "../targets.rs"]
mod targets;

libfuzzer_sys::fuzz_target!(|data: &[u8]| targets::geo_csv(data));
