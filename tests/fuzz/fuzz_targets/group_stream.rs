//! libFuzzer target: see `../harness/group_stream.rs`.
#![no_main]

#[path = "../harness/group_stream.rs"]
mod harness;

libfuzzer_sys::fuzz_target!(|data: &[u8]| harness::run(data));
