//! Marked media for lip-sync measurements, shared by the recording benchmark and the
//! lip-sync tests (`tests/it/lipsync.rs` includes this file): synthetic participants whose
//! camera shows white and whose microphone sounds a 20 ms tone burst at the same instant
//! every two seconds, with the microphone's sample clock running fast or slow against the
//! wall clock as asked; and the tools to find those marks again in a composed video.
#![allow(dead_code)] // the test and the bench use different parts

use std::path::Path;
use std::process::Command;

use bytes::Bytes;
use ffmpeg_next as ffmpeg;

/// The Opus frame of each marked second that starts the tone burst.
pub const CLICK_FRAME: usize = 25;
/// An Opus stream's packets read back from a WebM file are this much earlier than they
/// were written: the file's codec delay (libopus' 312 samples at 48 kHz), which the
/// decoder's output makes up for.
pub const OPUS_DELAY_US: i64 = 6_500;

/// A file's packets in file order: (video?, pts in µs, keyframe, data).
pub fn packets(path: &Path) -> Vec<(bool, i64, bool, Vec<u8>)> {
    ffmpeg::init().expect("ffmpeg");
    let mut input = ffmpeg::format::input(path).expect("a media file");
    let streams: Vec<(usize, bool, ffmpeg::Rational)> = input
        .streams()
        .map(|s| (s.index(), s.parameters().medium() == ffmpeg::media::Type::Video, s.time_base()))
        .collect();
    let mut out = Vec::new();
    for (stream, packet) in input.packets() {
        let Some(&(_, video, base)) = streams.iter().find(|(i, _, _)| *i == stream.index()) else { continue };
        let us = packet.pts().unwrap_or(0) * 1_000_000 * i64::from(base.numerator()) / i64::from(base.denominator());
        out.push((video, us, packet.is_key(), packet.data().unwrap_or_default().to_vec()));
    }
    out
}

/// The marks' media: a black and a white VP8 keyframe, and one second of Opus in 50
/// frames, silent but for a 20 ms tone burst starting with frame [`CLICK_FRAME`].
pub struct Marks {
    pub black: Bytes,
    pub white: Bytes,
    pub second: Vec<Bytes>,
}

pub fn marks_media(dir: &Path) -> Marks {
    let keyframe = |colour: &str| {
        let path = dir.join(format!("{colour}.webm"));
        let status = Command::new("ffmpeg")
            .args(["-v", "error", "-y", "-f", "lavfi", "-i", &format!("color=c={colour}:s=320x240:r=10")])
            .args(["-frames:v", "1", "-c:v", "libvpx", "-b:v", "200k"])
            .arg(&path)
            .status()
            .expect("ffmpeg runs");
        assert!(status.success());
        let packets = packets(&path);
        Bytes::from(packets.into_iter().find(|p| p.0 && p.2).expect("a keyframe").3)
    };
    // The burst starts with the first sample of frame 25 (0.5 s): that frame is stamped with
    // its capture time. (Decoded, it comes out 312 samples into the frame, libopus' delay,
    // which the file's codec delay takes back: see OPUS_DELAY_US.)
    let path = dir.join("second.webm");
    let burst = "0.8*sin(2*PI*1000*t)*between(t,0.5,0.5+959/48000)";
    let status = Command::new("ffmpeg")
        .args(["-v", "error", "-y", "-f", "lavfi", "-i", &format!("aevalsrc='{burst}':s=48000:d=1")])
        .args(["-c:a", "libopus", "-ac", "1", "-ar", "48000", "-b:a", "32k", "-frame_duration", "20"])
        .arg(&path)
        .status()
        .expect("ffmpeg runs");
    assert!(status.success());
    let second: Vec<Bytes> = packets(&path).into_iter().filter(|p| !p.0).map(|p| Bytes::from(p.3)).take(50).collect();
    assert_eq!(second.len(), 50);
    assert!(second.iter().filter(|p| **p == second[CLICK_FRAME]).count() == 1, "the burst's frame is unique");
    Marks { black: keyframe("black"), white: keyframe("white"), second }
}

/// One frame of a synthetic participant, as its browser would send it.
#[derive(Clone)]
pub struct Synthetic {
    pub video: bool,
    /// Its place in its track since the track (re)started: groups are cut by it.
    pub index: usize,
    /// Capture time, µs on the wall clock.
    pub captured_us: u64,
    /// RFC 6464 level (audio).
    pub level: u8,
    pub payload: Bytes,
}

/// One participant's synthetic media, in capture order, and the true capture instants of
/// its marks.
pub struct Sender {
    pub frames: Vec<Synthetic>,
    pub marks: Vec<u64>,
}

/// Stretches of a participant's time, in seconds from their start, with the microphone
/// as it was then: its sample clock's error (ppm), or None while muted.
pub type Microphones = [(f64, Option<f64>)];

/// `seconds` of a participant starting at `start_us` (wall clock): a 10 fps camera and a
/// microphone whose clock is as `microphones` says. A mark every two seconds of the
/// microphone's own count (so marks drift against the wall clock exactly as its samples
/// do), in the first of the two seconds or in the second (`second_half`: two participants'
/// bursts never meet); the camera shows white at each mark's capture instant.
pub fn sender(marks: &Marks, start_us: u64, seconds: f64, microphones: &Microphones, second_half: bool) -> Sender {
    let end_us = start_us + (seconds * 1e6) as u64;
    let mut frames = Vec::new();
    let mut mark_times = Vec::new();
    let burst_at = CLICK_FRAME + if second_half { 50 } else { 0 };
    for (i, &(from, ppm)) in microphones.iter().enumerate() {
        let Some(ppm) = ppm else { continue };
        let until = microphones.get(i + 1).map_or(end_us, |next| start_us + (next.0 * 1e6) as u64);
        // A microphone starts counting when it is opened: at `from`, on the wall clock.
        let opened = start_us + (from * 1e6) as u64;
        let frame_us = 20_000.0 / (1.0 + ppm * 1e-6);
        for k in 0.. {
            let captured = opened + (k as f64 * frame_us).round() as u64;
            if captured >= until {
                break;
            }
            let in_cycle = k % 100;
            let burst = in_cycle == burst_at;
            if burst {
                mark_times.push(captured);
            }
            // The burst's frame and the two after it (its tail) come from the marked
            // second; every other frame is a silent one.
            let packet = if (burst_at..burst_at + 3).contains(&in_cycle) {
                &marks.second[in_cycle % 50]
            } else {
                &marks.second[10]
            };
            let level = if burst { 20 } else { 127 };
            frames.push(Synthetic { video: false, index: k, captured_us: captured, level, payload: packet.clone() });
        }
    }
    // The camera: a frame every 100 ms on the wall clock, black but at the marks.
    let mut pictures: Vec<(u64, bool)> =
        (0..).map(|m| start_us + m * 100_000).take_while(|t| *t < end_us).map(|t| (t, false)).collect();
    for &mark in &mark_times {
        let m = ((mark - start_us) as f64 / 100_000.0).round() as usize;
        if let Some(p) = pictures.get_mut(m) {
            *p = (mark, true);
        }
    }
    for (m, (captured, white)) in pictures.into_iter().enumerate() {
        let payload = if white { marks.white.clone() } else { marks.black.clone() };
        frames.push(Synthetic { video: true, index: m, captured_us: captured, level: 127, payload });
    }
    frames.sort_by_key(|f| f.captured_us);
    Sender { frames, marks: mark_times }
}

/// When sound starts after at least 100 ms of quiet, in seconds on `path`'s clock (from
/// its first audio frame's time, or 0 if that is earlier).
pub fn sound_onsets(path: &Path) -> Vec<f64> {
    ffmpeg::init().expect("ffmpeg");
    let mut input = ffmpeg::format::input(path).expect("a media file");
    let stream = input.streams().best(ffmpeg::media::Type::Audio).expect("audio");
    let (index, base) = (stream.index(), stream.time_base());
    let mut decoder = ffmpeg::codec::context::Context::from_parameters(stream.parameters())
        .and_then(|c| c.decoder().audio())
        .expect("an audio decoder");
    let (mut onsets, mut position, mut quiet) = (Vec::new(), 0u64, u64::MAX);
    let mut origin: Option<f64> = None;
    let mut frame = ffmpeg::util::frame::Audio::empty();
    for (s, packet) in input.packets() {
        if s.index() != index {
            continue;
        }
        // A damaged packet costs its sound, not the measurement.
        if decoder.send_packet(&packet).is_err() {
            continue;
        }
        while decoder.receive_frame(&mut frame).is_ok() {
            assert_eq!(frame.rate(), 48_000);
            let start = *origin.get_or_insert_with(|| {
                let pts = frame.timestamp().or(frame.pts()).unwrap_or(0);
                (pts as f64 * f64::from(base)).max(0.0)
            });
            // Planar floats (AAC, Opus): the first channel is enough.
            let data = frame.data(0);
            for bytes in data.chunks_exact(4).take(frame.samples()) {
                let s = f32::from_ne_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]).abs();
                if s > 0.2 {
                    if quiet >= 4_800 {
                        onsets.push(start + position as f64 / 48_000.0);
                    }
                    quiet = 0;
                } else if s < 0.02 {
                    quiet = quiet.saturating_add(1);
                }
                position += 1;
            }
        }
    }
    onsets
}

/// When the picture of `path`'s video stream turns bright, in seconds on its clock (each
/// decoded picture at its own timestamp: no frame rate in between).
pub fn picture_flashes(path: &Path) -> Vec<f64> {
    ffmpeg::init().expect("ffmpeg");
    let mut input = ffmpeg::format::input(path).expect("a media file");
    let stream = input.streams().best(ffmpeg::media::Type::Video).expect("video");
    let (index, base) = (stream.index(), stream.time_base());
    let mut decoder = ffmpeg::codec::context::Context::from_parameters(stream.parameters())
        .and_then(|c| c.decoder().video())
        .expect("a video decoder");
    let (mut flashes, mut bright) = (Vec::new(), false);
    let mut frame = ffmpeg::util::frame::Video::empty();
    for (s, packet) in input.packets() {
        if s.index() != index || decoder.send_packet(&packet).is_err() {
            continue;
        }
        while decoder.receive_frame(&mut frame).is_ok() {
            // The luma plane, every eighth pixel of every eighth row.
            let (stride, data) = (frame.stride(0), frame.data(0));
            let (mut sum, mut n) = (0u64, 0u64);
            for y in (0..frame.height() as usize).step_by(8) {
                for x in (0..frame.width() as usize).step_by(8) {
                    sum += u64::from(data[y * stride + x]);
                    n += 1;
                }
            }
            let now = sum > 128 * n.max(1);
            if now && !bright {
                let pts = frame.timestamp().or(frame.pts()).unwrap_or(0);
                flashes.push(pts as f64 * f64::from(base));
            }
            bright = now;
        }
    }
    flashes
}

/// When each region (x, y, w, h) of the picture turns bright, in seconds. ffmpeg averages
/// each region down to one pixel: an hour of frames is then a few hundred kilobytes.
pub fn flash_onsets(path: &Path, regions: &[(u32, u32, u32, u32)], fps: u32) -> Vec<Vec<f64>> {
    let n = regions.len();
    let mut graph = format!("[0:v]format=gray,split={n}");
    graph.extend((0..n).map(|i| format!("[in{i}]")));
    for (i, (x, y, w, h)) in regions.iter().enumerate() {
        graph.push_str(&format!(";[in{i}]crop={w}:{h}:{x}:{y},scale=1:1:flags=area[out{i}]"));
    }
    if n == 1 {
        graph = graph.replace("[out0]", "[all]");
    } else {
        graph.push(';');
        graph.extend((0..n).map(|i| format!("[out{i}]")));
        graph.push_str(&format!("hstack=inputs={n}[all]"));
    }
    let frames = Command::new("ffmpeg")
        .args(["-v", "error", "-i"])
        .arg(path)
        .args(["-filter_complex", &graph, "-map", "[all]", "-f", "rawvideo", "-"])
        .output()
        .expect("ffmpeg");
    assert!(frames.status.success(), "{}", String::from_utf8_lossy(&frames.stderr));
    let mut out = vec![Vec::new(); n];
    let mut bright = vec![false; n];
    for (frame, pixels) in frames.stdout.chunks_exact(n).enumerate() {
        for (r, &luma) in pixels.iter().enumerate() {
            let now = luma > 128;
            if now && !bright[r] {
                out[r].push(frame as f64 / f64::from(fps));
            }
            bright[r] = now;
        }
    }
    out
}

/// Every mark of a participant in a composed video against its true time (seconds):
/// (how far the burst is heard from it, how long after it the picture is seen), in ms.
/// A mark with nothing within a second counts as a second off.
pub fn composed_errors(truths: &[f64], onsets: &[f64], flashes: &[f64]) -> Vec<(f64, f64)> {
    let nearest = |list: &[f64], truth: f64| {
        list.iter().copied().min_by(|a, b| (a - truth).abs().total_cmp(&(b - truth).abs())).unwrap_or(truth + 1.0)
    };
    truths
        .iter()
        .map(|&truth| ((nearest(onsets, truth) - truth) * 1000.0, (nearest(flashes, truth) - truth) * 1000.0))
        .collect()
}

/// Mean of the errors over the first, middle and last tenth.
pub fn thirds(errors: &[f64]) -> [f64; 3] {
    let n = errors.len();
    let tenth = (n / 10).max(1);
    let mean = |s: &[f64]| s.iter().sum::<f64>() / s.len().max(1) as f64;
    [mean(&errors[..tenth]), mean(&errors[n / 2 - tenth / 2..n / 2 + tenth / 2]), mean(&errors[n - tenth..])]
}

/// Each flash with the click nearest it (within `within` seconds): (flash time, click −
/// flash), in seconds, for sources whose flashes and clicks come from separate clocks (a
/// browser's fake camera and microphone each loop their own file).
pub fn pairs(flashes: &[f64], clicks: &[f64], within: f64) -> Vec<(f64, f64)> {
    flashes
        .iter()
        .filter_map(|&flash| {
            let click = clicks.iter().copied().min_by(|a, b| (a - flash).abs().total_cmp(&(b - flash).abs()))?;
            ((click - flash).abs() <= within).then_some((flash, click - flash))
        })
        .collect()
}
