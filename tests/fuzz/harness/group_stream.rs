//! A publisher's group stream as the relay reads it: the header, then frames, cut into
//! reads anywhere, ending cleanly or inside a frame. Every frame read is whole (its
//! length prefix and header agree with what the room is handed), none is over the limit,
//! and the reader never holds more than what it was given.
//!
//! Shared by the libFuzzer target (`fuzz_targets/group_stream.rs`, run with cargo-fuzz) and
//! the integration test `fuzz::` (random inputs on stable Rust, in the README's test command).

use floo::media::wire::{GroupReader, frame_payload};

const MAX_FRAME: usize = 16 * 1024;

pub fn run(data: &[u8]) {
    // The first two bytes pick how the stream is cut into reads, as the network would.
    let Some((&[a, b], data)) = data.split_first_chunk::<2>() else { return };
    let steps = [usize::from(a % 97) + 1, usize::from(b % 13) + 1];
    let mut reader = GroupReader::new(MAX_FRAME);
    let mut given = 0;
    let mut header = None;
    let mut frames = 0usize;
    let mut at = 0;
    let mut turn = 0;
    while at < data.len() {
        let step = steps[turn % 2].min(data.len() - at);
        turn += 1;
        reader.push(&data[at..at + step]);
        at += step;
        given += step;
        match reader.header() {
            Ok(Some(h)) => {
                if let Some(seen) = header {
                    assert_eq!(seen, h, "the header does not change");
                }
                header = Some(h);
            }
            Ok(None) => continue,
            Err(_) => return,
        }
        loop {
            match reader.next_frame() {
                Ok(Some((frame, info))) => {
                    frames += 1;
                    assert!(frame.len() <= MAX_FRAME + 16, "frame over the limit: {}", frame.len());
                    let (payload, again) = frame_payload(&frame).expect("a frame handed to the room has a payload");
                    assert_eq!(again, info, "the frame's header reads back");
                    assert!(payload.len() <= frame.len());
                }
                Ok(None) => break,
                Err(_) => return,
            }
        }
        assert!(reader.pending() <= given, "holds more than it was given");
    }
    assert!(frames <= data.len());
}
