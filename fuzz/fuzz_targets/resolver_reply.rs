#![no_main]
//! cargo-fuzz target `resolver_reply`: see fuzz/targets.rs.

#[path = "../targets.rs"]
mod targets;

libfuzzer_sys::fuzz_target!(|data: &[u8]| targets::resolver_reply(data));
