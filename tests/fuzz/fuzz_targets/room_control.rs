//! libFuzzer target: see `../harness/room_control.rs`.
#![no_main]

#[path = "../harness/room_control.rs"]
mod harness;

libfuzzer_sys::fuzz_target!(|data: &[u8]| harness::run(data));
