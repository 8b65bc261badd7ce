//! The fuzz harnesses of `tests/fuzz/harness/` on stable Rust: pseudo-random inputs (and
//! random mutations of realistic ones) for a few seconds each, so that they keep building
//! and the properties they check keep holding in every test run. The coverage-guided runs
//! (minutes each, with libFuzzer) are `cargo +nightly fuzz run --fuzz-dir tests/fuzz …`:
//! see BENCHMARKS.md.

use std::time::{Duration, Instant};

#[path = "../fuzz/harness/room_control.rs"]
mod room_control;

#[path = "../fuzz/harness/group_stream.rs"]
mod group_stream;

/// xorshift64*: a fixed seed, so a failure is the same on every run.
struct Random(u64);

impl Random {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn bytes(&mut self, max: usize) -> Vec<u8> {
        let len = (self.next() as usize) % max;
        (0..len).map(|_| self.next() as u8).collect()
    }
}

/// Runs `harness` on random inputs for `time`; returns how many.
fn run_for(time: Duration, seed: u64, max_len: usize, harness: fn(&[u8])) -> u64 {
    let mut random = Random(seed);
    let started = Instant::now();
    let mut runs = 0;
    while started.elapsed() < time {
        let input = random.bytes(max_len);
        harness(&input);
        runs += 1;
    }
    runs
}

#[test]
fn the_room_survives_random_scripts_of_joins_control_messages_and_groups() {
    let runs = run_for(Duration::from_secs(5), 0x9e37_79b9_7f4a_7c15, 2048, room_control::run);
    println!("{runs} scripts");
    assert!(runs > 100);
}

#[test]
fn the_group_reader_survives_random_streams_cut_anywhere() {
    let runs = run_for(Duration::from_secs(3), 0xd1b5_4a32_d192_ed03, 4096, group_stream::run);
    // Well-formed groups too: real frames, cut at random, ending anywhere.
    let mut random = Random(7);
    for _ in 0..2_000 {
        let mut stream = vec![random.next() as u8, random.next() as u8];
        stream.extend_from_slice(&floo::media::wire::GroupHeader { track: 1, sequence: random.next() % 9 }.encode());
        for i in 0..(random.next() % 20) {
            let info = floo::media::wire::FrameInfo { keyframe: i == 0, timestamp_us: i * 20_000, level: 3 };
            stream.extend_from_slice(&floo::media::wire::encode_frame(&info, &random.bytes(3000)));
        }
        stream.truncate(stream.len() - (random.next() as usize % 4).min(stream.len()));
        group_stream::run(&stream);
    }
    println!("{runs} random streams");
    assert!(runs > 100);
}
