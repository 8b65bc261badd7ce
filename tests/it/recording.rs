//! Recording files: real VP8 and Opus packets (made by the ffmpeg command line, as a
//! browser's encoders would) remuxed into WebM; checked with ffprobe, finished or cut off
//! as by `kill -9`, and repaired.

use std::path::{Path, PathBuf};
use std::process::Command;

use ffmpeg_next as ffmpeg;
use floo::recording::{ParticipantFile, TrackKind, repair};

pub fn scratch() -> PathBuf {
    let dir = std::env::temp_dir().join(format!("floo-rec-{}", crate::support::unique_suffix()));
    std::fs::create_dir_all(&dir).expect("dir");
    dir
}

/// Four seconds of VP8 (320x240, a keyframe a second) and mono Opus at 48 kHz.
pub fn source(dir: &Path) -> PathBuf {
    let path = dir.join("source.webm");
    let status = Command::new("ffmpeg")
        .args(["-v", "error", "-y", "-f", "lavfi", "-i", "testsrc=size=320x240:rate=30", "-f", "lavfi", "-i"])
        .args(["sine=frequency=440:sample_rate=48000", "-t", "4", "-c:v", "libvpx", "-g", "30", "-b:v", "300k"])
        .args(["-c:a", "libopus", "-ac", "1", "-ar", "48000"])
        .arg(&path)
        .status()
        .expect("ffmpeg runs (ops/test installs it)");
    assert!(status.success());
    path
}

/// (codec names, duration in seconds) as ffprobe reports them.
pub fn probe(path: &Path) -> (Vec<String>, f64) {
    let output = Command::new("ffprobe")
        .args(["-v", "error", "-show_entries", "stream=codec_name:format=duration", "-of", "json"])
        .arg(path)
        .output()
        .expect("ffprobe runs");
    assert!(output.status.success(), "ffprobe reads {}: {}", path.display(), String::from_utf8_lossy(&output.stderr));
    let json: serde_json::Value = serde_json::from_slice(&output.stdout).expect("json");
    let codecs = json["streams"]
        .as_array()
        .expect("streams")
        .iter()
        .map(|s| s["codec_name"].as_str().unwrap_or("").to_owned())
        .collect();
    let duration = json["format"]["duration"].as_str().and_then(|d| d.parse().ok()).unwrap_or(0.0);
    (codecs, duration)
}

/// Feeds the source's packets (up to `seconds`) to a recording file, as the relay would.
fn record(source: &Path, into: &Path, seconds: f64) -> ParticipantFile {
    ffmpeg::init().expect("ffmpeg");
    let mut input = ffmpeg::format::input(source).expect("source");
    let mut file = ParticipantFile::create(into, Some((320, 240)), true).expect("create");
    let streams: Vec<(usize, bool, ffmpeg::Rational)> = input
        .streams()
        .map(|s| (s.index(), s.parameters().medium() == ffmpeg::media::Type::Video, s.time_base()))
        .collect();
    for (stream, packet) in input.packets() {
        let Some(&(_, video, base)) = streams.iter().find(|(i, _, _)| *i == stream.index()) else { continue };
        let pts = packet.pts().unwrap_or(0);
        let micros = pts * 1_000_000 * i64::from(base.numerator()) / i64::from(base.denominator());
        if micros as f64 / 1e6 > seconds {
            continue;
        }
        let kind = if video { TrackKind::Video } else { TrackKind::Audio };
        file.write(kind, micros, packet.is_key(), packet.data().expect("data")).expect("write");
    }
    file
}

#[test]
fn a_finished_recording_has_vp8_and_opus_of_the_recorded_length() {
    let dir = scratch();
    let src = source(&dir);
    let out = dir.join("alice.webm");
    record(&src, &out, 10.0).finish().expect("finish");
    let (codecs, duration) = probe(&out);
    assert_eq!(codecs, vec!["vp8", "opus"]);
    assert!((duration - 4.0).abs() < 1.0, "duration {duration}");
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn a_recording_cut_off_by_a_crash_still_plays_and_repairs_to_its_length() {
    let dir = scratch();
    let src = source(&dir);
    let out = dir.join("bob.webm");
    // No trailer, no close: what `kill -9` leaves (the file handle is simply lost).
    std::mem::forget(record(&src, &out, 3.0));
    let (codecs, _) = probe(&out);
    assert_eq!(codecs, vec!["vp8", "opus"], "the cut-off file is readable");
    let fixed = dir.join("bob-fixed.webm");
    let recovered = repair(&out, &fixed).expect("repair");
    assert!((recovered - 3.0).abs() < 2.0, "recovered {recovered} s of 3");
    let (codecs, duration) = probe(&fixed);
    assert_eq!(codecs, vec!["vp8", "opus"]);
    assert!((duration - 3.0).abs() < 2.0, "repaired file lasts {duration} s");
    let _ = std::fs::remove_dir_all(dir);
}
