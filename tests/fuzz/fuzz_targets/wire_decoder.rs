//! Whatever bytes a peer sends, the wire decoders return frames, messages or an error:
//! they never panic, and never hold more than a frame's worth of input.
#![no_main]

use floo::media::wire::{ClientMessage, ControlReader, GroupReader, frame_info, get_varint};
use libfuzzer_sys::fuzz_target;

const MAX_FRAME: usize = 64 * 1024;

fuzz_target!(|data: &[u8]| {
    // The first byte picks how the stream is cut into reads, as the network would.
    let Some((&cut, data)) = data.split_first() else { return };
    let step = usize::from(cut % 64) + 1;

    let mut group = GroupReader::new(MAX_FRAME);
    let mut control = ControlReader::new(16 * 1024);
    for piece in data.chunks(step) {
        group.push(piece);
        loop {
            match group.next_frame() {
                Ok(Some((frame, _info))) => assert!(frame.len() <= MAX_FRAME + 8),
                Ok(None) | Err(_) => break,
            }
        }
        assert!(group.pending() <= data.len());
        control.push(piece);
        while let Ok(Some(_)) = control.next_message::<ClientMessage>() {}
    }
    let _ = frame_info(data);
    let _ = get_varint(data);
});
