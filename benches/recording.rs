//! Recording cost.
//! 1. Remux: CPU to write one participant's media (VP8 640x360 ~600 kbit/s and Opus
//!    48 kHz mono) into a WebM file, as the recorder does, compared with its duration:
//!    the share of one core one recorded participant takes.
//! 2. Composition: four such participants composed into the meeting's MP4 (1280x720
//!    H.264 + AAC, one encoder thread), as a multiple of real time per core used.
//! 3. Lip sync: a long meeting of two synthetic participants whose microphones' sample
//!    clocks run 100 ppm fast and 100 ppm slow (`support/marks.rs`), written to their files
//!    as the recorder does and composed (640x360); every mark's sound and picture found in
//!    the composed video: the error at the start, middle and end, and the composition speed.
//!
//! cargo bench --bench recording -- --seconds 60 [--preset superfast] [--keep DIR]
//!     [--lipsync-minutes 60]

#[path = "support/mod.rs"]
mod support;

use std::process::Command;
use std::time::Instant;

use ffmpeg_next as ffmpeg;
use floo::recording::compose::layout;
use floo::recording::{ParticipantFile, Settings, Source, TrackKind, compose};
use support::marks;

fn main() {
    let seconds: u64 = support::arg("--seconds").map(|v| v.parse().expect("--seconds S")).unwrap_or(60);
    let dir = std::env::temp_dir().join(format!("floo-bench-recording-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("dir");
    let source = dir.join("source.webm");
    let status = Command::new("ffmpeg")
        .args(["-v", "error", "-y", "-f", "lavfi", "-i", "testsrc=size=640x360:rate=30", "-f", "lavfi", "-i"])
        .args(["sine=frequency=440:sample_rate=48000", "-t", &seconds.to_string()])
        .args(["-c:v", "libvpx", "-deadline", "realtime", "-cpu-used", "8", "-g", "30", "-b:v", "600k"])
        .args(["-c:a", "libopus", "-ac", "1", "-ar", "48000"])
        .arg(&source)
        .status()
        .expect("ffmpeg");
    assert!(status.success());

    ffmpeg::init().expect("ffmpeg");
    let mut input = ffmpeg::format::input(&source).expect("source");
    let streams: Vec<(usize, bool, ffmpeg::Rational)> = input
        .streams()
        .map(|s| (s.index(), s.parameters().medium() == ffmpeg::media::Type::Video, s.time_base()))
        .collect();
    let mut packets = Vec::new();
    for (stream, packet) in input.packets() {
        let Some(&(_, video, base)) = streams.iter().find(|(i, _, _)| *i == stream.index()) else { continue };
        let us =
            packet.pts().unwrap_or(0).max(0) * 1_000_000 * i64::from(base.numerator()) / i64::from(base.denominator());
        packets.push((video, us, packet.is_key(), packet.data().unwrap_or_default().to_vec()));
    }
    let bytes: usize = packets.iter().map(|p| p.3.len()).sum();

    let runs = 20;
    let mut cpu = 0.0;
    let started = Instant::now();
    for run in 0..runs {
        let out = dir.join(format!("out-{run}.webm"));
        let before = support::cpu_seconds(std::process::id());
        let mut file = ParticipantFile::create(&out, Some((640, 360)), true).expect("create");
        for (video, us, key, data) in &packets {
            let kind = if *video { TrackKind::Video } else { TrackKind::Audio };
            file.write(kind, *us, *key, data).expect("write");
        }
        file.finish().expect("finish");
        cpu += support::cpu_seconds(std::process::id()) - before;
    }
    let per_run = cpu / f64::from(runs);
    println!(
        "recording remux: {seconds} s of media, {} packets, {:.1} MB; {runs} runs in {:.2} s wall",
        packets.len(),
        bytes as f64 / 1e6,
        started.elapsed().as_secs_f64()
    );
    println!(
        "CPU per run {:.3} s = {:.3} % of one core per recorded participant ({:.1} CPU-seconds per participant-hour)",
        per_run,
        100.0 * per_run / seconds as f64,
        per_run * 3600.0 / seconds as f64
    );

    // Composition: four participants, each joining half a second after the other.
    let mut sources = Vec::new();
    for (i, name) in ["Alice", "Bob", "Carol", "Dan"].into_iter().enumerate() {
        let path = dir.join(format!("{i}-{i}.webm"));
        let mut file = ParticipantFile::create(&path, Some((640, 360)), true).expect("create");
        for (video, us, key, data) in &packets {
            let kind = if *video { TrackKind::Video } else { TrackKind::Audio };
            file.write(kind, *us + i as i64 * 500_000, *key, data).expect("write");
        }
        file.finish().expect("finish");
        sources.push(Source { name: name.into(), path, screen: false });
    }
    let preset = support::arg("--preset").unwrap_or_else(|| "superfast".into());
    let settings = Settings { preset: preset.clone(), threads: 1, ..Settings::default() };
    let out = dir.join("meeting.mp4");
    let before = support::cpu_seconds(std::process::id());
    let wall = Instant::now();
    let composed = compose(&sources, &out, &settings, &mut |_| true).expect("compose");
    let wall = wall.elapsed().as_secs_f64();
    let cpu = support::cpu_seconds(std::process::id()) - before;
    let media = composed.duration_ms as f64 / 1000.0;
    let size = std::fs::metadata(&out).map(|m| m.len()).unwrap_or(0);
    println!(
        "composition: 4 participants at 640x360 into {}x{} @ {} fps (x264 {preset}, 1 thread): {media:.1} s of meeting \
         in {cpu:.2} CPU-s ({:.1}x real time per core), {wall:.2} s wall ({:.1}x), {:.1} MB",
        settings.width,
        settings.height,
        settings.fps,
        media / cpu,
        media / wall,
        size as f64 / 1e6
    );
    lip_sync(&dir, support::arg("--lipsync-minutes").map(|v| v.parse().expect("--lipsync-minutes M")).unwrap_or(60.0));
    match support::arg("--keep") {
        Some(keep) => {
            std::fs::create_dir_all(&keep).expect("keep dir");
            std::fs::copy(&out, std::path::Path::new(&keep).join("meeting.mp4")).expect("keep");
            let _ = std::fs::remove_dir_all(&dir);
        }
        None => {
            let _ = std::fs::remove_dir_all(&dir);
        }
    }
}

/// Part 3: the lip-sync error over a meeting of `minutes`, and how fast it composes.
fn lip_sync(dir: &std::path::Path, minutes: f64) {
    let seconds = minutes * 60.0;
    let marks = marks::marks_media(dir);
    // The recording's clock starts with the first frame; both join then.
    let start_us = 1_000_000_000;
    let people = [("Alice", 100.0, false), ("Bob", -100.0, true)];
    let mut sources = Vec::new();
    let mut senders = Vec::new();
    for (name, ppm, second_half) in people {
        let sender = marks::sender(&marks, start_us, seconds, &[(0.0, Some(ppm))], second_half);
        let path = dir.join(format!("lipsync-{name}.webm"));
        let mut file = ParticipantFile::create(&path, Some((320, 240)), true).expect("create");
        for f in &sender.frames {
            let kind = if f.video { TrackKind::Video } else { TrackKind::Audio };
            file.write(kind, (f.captured_us - start_us) as i64, true, &f.payload).expect("write");
        }
        file.finish().expect("finish");
        sources.push(Source { name: name.into(), path, screen: false });
        senders.push(sender);
    }
    let settings = Settings { width: 640, height: 360, ..Settings::default() };
    let out = dir.join("lipsync.mp4");
    let before = support::cpu_seconds(std::process::id());
    let wall = Instant::now();
    let composed = compose(&sources, &out, &settings, &mut |_| true).expect("compose");
    let (wall, cpu) = (wall.elapsed().as_secs_f64(), support::cpu_seconds(std::process::id()) - before);
    let media = composed.duration_ms as f64 / 1000.0;
    let (_, tiles) = layout(settings.width, settings.height, 2, false);
    let regions: Vec<_> = tiles.iter().map(|r| (r.x + r.w / 4, r.y + r.h / 4, r.w / 2, r.h / 4)).collect();
    let flashes = marks::flash_onsets(&out, &regions, settings.fps);
    let onsets = marks::sound_onsets(&out);
    println!(
        "lip sync: {minutes:.0} min, 2 participants composed at {}x{} in {cpu:.1} CPU-s ({:.1}x real time per core), \
         {wall:.1} s wall",
        settings.width,
        settings.height,
        media / cpu
    );
    for (((name, ppm, _), sender), flashes) in people.iter().zip(&senders).zip(&flashes) {
        let truths: Vec<f64> = sender.marks.iter().map(|m| (m - start_us) as f64 / 1e6).collect();
        let errors = marks::composed_errors(&truths, &onsets, flashes);
        let heard: Vec<f64> = errors.iter().map(|e| e.0).collect();
        let [first, middle, last] = marks::thirds(&heard);
        let worst = heard.iter().fold(0f64, |w, e| w.max(e.abs()));
        let seen = errors.iter().fold(0f64, |w, e| w.max(e.1.abs()));
        println!(
            "lip sync {name} ({ppm:+} ppm): sound vs truth {first:+.1} / {middle:+.1} / {last:+.1} ms \
             (mean of first, middle, last tenth), worst {worst:.1} ms; picture worst {seen:.1} ms late \
             (one frame is 40 ms); {} marks",
            truths.len()
        );
    }
}
