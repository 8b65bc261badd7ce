//! Lips and voice together for an hour: synthetic participants whose microphones' sample
//! clocks run 100 ppm fast and 100 ppm slow against the wall clock (their frames carry
//! exact capture times, as a browser's do) publish an hour of marked media — a white
//! picture and a tone burst at the same instant every second — through the relay and the
//! recorder, many times faster than real time (the recorder goes by the frames'
//! timestamps). Then every mark is found in each participant's file and in the composed
//! meeting video, and compared with where it truly belongs.

use std::path::{Path, PathBuf};

use bytes::Bytes;
use floo::media::wire::{FrameInfo, encode_frame};
use floo::recording::compose::layout;
use floo::recording::{Settings, Source, compose};

use crate::media::{join, meeting};
use crate::support::{Backend, TestApp};

#[path = "../../benches/support/marks.rs"]
pub mod marks;
use marks::{CLICK_FRAME, Marks, Microphones, OPUS_DELAY_US, Sender, Synthetic, marks_media, sender};

const CAMERA: u64 = 1;
const MICROPHONE: u64 = 2;
/// Each track's frames go in one group per run of the track (a browser sends a group per
/// 40 ms of audio and per second of video; at this test's speed those would race each
/// other on their separate streams far more than a real call's do, and a group may hold
/// 8 MiB: an hour of these frames is less). See `wire_frames`.
///
/// How many times faster than real time the hour is pushed through the relay.
const SPEED: f64 = 100.0;
/// The composed video's size and rate (small: the test composes an hour).
const WIDTH: u32 = 320;
const HEIGHT: u32 = 180;
const FPS: u32 = 25;

/// The packets of a participant file: (video?, µs, data).
fn file_packets(path: &Path) -> Vec<(bool, i64, Vec<u8>)> {
    marks::packets(path).into_iter().map(|(video, us, _, data)| (video, us, data)).collect()
}

/// Checks a participant file against the truth: every mark's picture and burst are there,
/// at their capture time moved by the file's one offset (to the millisecond the file
/// keeps). Returns that offset (µs from capture time to recording time).
fn check_file(path: &Path, marks: &Marks, sender: &Sender, who: &str) -> i64 {
    let packets = file_packets(path);
    let first_captured = sender.frames.iter().find(|f| f.video).expect("a picture").captured_us as i64;
    let first_written = packets.iter().find(|p| p.0).expect("a picture in the file").1;
    let offset = first_written - first_captured;
    let flashes: Vec<i64> = packets.iter().filter(|p| p.0 && p.2 == marks.white).map(|p| p.1).collect();
    let bursts: Vec<i64> = packets.iter().filter(|p| !p.0 && p.2 == marks.second[CLICK_FRAME]).map(|p| p.1).collect();
    assert_eq!(flashes.len(), sender.marks.len(), "{who}: every white picture is in the file");
    assert_eq!(
        bursts.len(),
        sender.marks.len(),
        "{who}: every burst is in the file: found {:?}, marks {:?} with offset {offset}",
        bursts.iter().map(|b| b / 1000).collect::<Vec<_>>(),
        sender.marks.iter().map(|m| (*m as i64 + offset) / 1000).collect::<Vec<_>>()
    );
    for (j, &mark) in sender.marks.iter().enumerate() {
        let truth = mark as i64 + offset;
        for (what, at) in [("picture", flashes[j]), ("burst", bursts[j] + OPUS_DELAY_US)] {
            assert!((at - truth).abs() <= 1_500, "{who}: mark {j}'s {what} is at {at} µs in the file, not {truth}");
        }
    }
    offset
}

/// Lip-sync figures for one participant: every mark's burst and picture in the composed
/// video against its true time. Returns the bursts' errors in ms, in mark order.
fn check_composed(who: &str, truths: &[f64], onsets: &[f64], flashes: &[f64]) -> Vec<f64> {
    let errors = marks::composed_errors(truths, onsets, flashes);
    for (j, (&truth, &(heard, seen))) in truths.iter().zip(&errors).enumerate() {
        assert!(
            heard.abs() <= 20.0,
            "{who}: mark {j} (at {truth:.3} s) is heard {heard:.1} ms off; sound starts around it at {:?}",
            onsets.iter().filter(|o| (*o - truth).abs() < 3.0).collect::<Vec<_>>()
        );
        // A picture is shown from the first composed frame at or after its time: at 25
        // frames a second, up to 40 ms later.
        assert!((-1.0..41.0).contains(&seen), "{who}: mark {j} (at {truth:.3} s) is seen {seen:.1} ms off");
    }
    errors.into_iter().map(|(heard, _)| heard).collect()
}

/// The frames as a browser sends them: (track, starts a group, capture µs, wire frame).
fn wire_frames(frames: &[Synthetic]) -> Vec<(u64, bool, u64, Bytes)> {
    frames
        .iter()
        .map(|f| {
            let info = FrameInfo { keyframe: true, timestamp_us: f.captured_us, level: f.level };
            (if f.video { CAMERA } else { MICROPHONE }, f.index == 0, f.captured_us, encode_frame(&info, &f.payload))
        })
        .collect()
}

/// The meeting's recording files, by name.
fn files_in(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .expect("the recording's directory")
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e == "webm"))
        .collect();
    files.sort();
    files
}

/// How long the synthetic meeting lasts: an hour, or `FLOO_LIPSYNC_MINUTES` when set.
fn minutes() -> f64 {
    std::env::var("FLOO_LIPSYNC_MINUTES").ok().and_then(|m| m.parse().ok()).unwrap_or(60.0)
}

crate::on_both_backends!(an_hour_long_recording_keeps_every_voice_with_its_lips_whatever_the_microphones_clock);

async fn an_hour_long_recording_keeps_every_voice_with_its_lips_whatever_the_microphones_clock(backend: Backend) {
    let seconds = minutes() * 60.0;
    // Alice's microphone runs 100 ppm fast, and she is muted for a minute a third of the way
    // in; Bob's runs 100 ppm slow until he switches to another that runs 100 ppm fast.
    let muted = (seconds / 3.0).round();
    let alice = [(0.0, Some(100.0)), (muted, None), (muted + 60.0, Some(100.0))];
    let bob = [(0.0, Some(-100.0)), ((seconds / 2.0).round(), Some(100.0))];
    record_and_check(backend, seconds, SPEED, &alice, &bob, None).await;
}

/// Dropping out and coming back is a new connection, placed on the recording's clock by
/// when its first frame arrives: that takes real time, so this meeting is short and runs
/// at the speed of life.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn someone_who_drops_out_and_comes_back_is_in_sync_after() {
    let steady = [(0.0, Some(0.0))];
    record_and_check(Backend::Sqlite, 14.0, 1.0, &steady, &steady, Some((6.0, 8.0))).await;
}

/// Alice and Bob publish `seconds` of marked media with microphones as given, at `speed`
/// times real time, while the meeting is recorded; Bob is away from `dropout.0` to
/// `dropout.1` seconds if given. Then their files and the composed video are checked.
async fn record_and_check(
    backend: Backend,
    seconds: f64,
    speed: f64,
    alice_microphones: &Microphones,
    bob_microphones: &Microphones,
    dropout: Option<(f64, f64)>,
) {
    let app = TestApp::spawn(backend).await;
    let (clients, meeting_path) = meeting(&app, &["Alice", "Bob"]).await;
    let dir = crate::recording::scratch();
    let marks = marks_media(&dir);
    let start_us = floo::clock::now_ms() as u64 * 1000;
    let alice = sender(&marks, start_us, seconds, alice_microphones, false);
    let bob = sender(&marks, start_us, seconds, bob_microphones, true);
    let (away, back) = dropout.unwrap_or((seconds, seconds));
    let (away, back) = (start_us + (away * 1e6) as u64, start_us + (back * 1e6) as u64);
    let bob_wire = wire_frames(&bob.frames);
    let bob_before: Vec<_> = bob_wire.iter().filter(|f| f.2 < away).cloned().collect();
    let bob_after: Vec<_> = bob_wire.iter().filter(|f| f.2 >= back).cloned().collect();
    let alice_wire = wire_frames(&alice.frames);

    let mut alice_peer = join(&app, &clients[0], &meeting_path).await;
    let mut bob_peer = join(&app, &clients[1], &meeting_path).await;
    alice_peer.announce_camera_and_microphone(0).await;
    bob_peer.announce_camera_and_microphone(0).await;
    alice_peer.drain_groups();
    bob_peer.drain_groups();
    clients[0].post_form(&format!("{meeting_path}/recordings"), &[]).await.expect_ok_with("Stop recording");
    let clock = (tokio::time::Instant::now(), start_us);
    let pushed = std::time::Instant::now();
    let bob_side = async {
        bob_peer.publish_at_speed(&bob_before, speed, clock).await;
        if bob_after.is_empty() {
            return None;
        }
        bob_peer.leave();
        let mut again = join(&app, &clients[1], &meeting_path).await;
        again.announce_camera_and_microphone(0).await;
        again.drain_groups();
        again.publish_at_speed(&bob_after, speed, clock).await;
        Some(again)
    };
    let (_, _bob_again) = tokio::join!(alice_peer.publish_at_speed(&alice_wire, speed, clock), bob_side);
    // Let the last frames reach the recorder before it stops.
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    clients[0].post_form(&format!("{meeting_path}/recordings/stop"), &[]).await.expect_ok_with("Alice's tracks");
    let pushed = pushed.elapsed();

    // Each participant file: the marks at their capture times, to the millisecond.
    // Copied out of the app's data directory, so that they outlive a failed test.
    let recorded = app.data_dir.join("recordings").join("1");
    let kept = dir.join("recorded");
    std::fs::create_dir_all(&kept).expect("dir");
    for file in files_in(&recorded) {
        std::fs::copy(&file, kept.join(file.file_name().expect("a name"))).expect("copy");
    }
    let files = files_in(&kept);
    let user =
        |path: &PathBuf| path.file_name().and_then(|n| n.to_str()).and_then(|n| n.split('-').next()).map(str::to_owned);
    let alice_id = user(&files[0]);
    let alice_file = files.iter().find(|f| user(f) == alice_id).expect("Alice's file").clone();
    let bob_files: Vec<PathBuf> = files.iter().filter(|f| user(f) != alice_id).cloned().collect();
    let bob_connections = if dropout.is_some() { 2 } else { 1 };
    assert_eq!(files.len(), 1 + bob_connections, "Alice's file and one of Bob's per connection: {files:?}");
    let bob_marks = |from: u64, to: u64| Sender {
        frames: bob.frames.iter().filter(|f| f.captured_us >= from && f.captured_us < to).cloned().collect(),
        marks: bob.marks.iter().copied().filter(|m| *m >= from && *m < to).collect(),
    };
    let bobs = [bob_marks(0, away), bob_marks(back, u64::MAX)];
    // Bob's files are named by session: the first connection's is the lower number.
    let mut bob_files = bob_files;
    bob_files.sort_by_key(|f| {
        f.file_stem().and_then(|s| s.to_str()).and_then(|s| s.split('-').nth(1)).and_then(|s| s.parse::<u64>().ok())
    });
    let alice_offset = check_file(&alice_file, &marks, &alice, "Alice");
    let bob_offsets: Vec<i64> =
        bob_files.iter().zip(&bobs).map(|(file, part)| check_file(file, &marks, part, "Bob")).collect();

    // The composed meeting video.
    let out = dir.join("meeting.mp4");
    let mut sources = vec![Source { name: "Alice".into(), path: alice_file, screen: false }];
    sources.extend(bob_files.iter().map(|path| Source { name: "Bob".into(), path: path.clone(), screen: false }));
    let settings = Settings { width: WIDTH, height: HEIGHT, fps: FPS, ..Settings::default() };
    let composing = std::time::Instant::now();
    let sources_for = sources.clone();
    let out_for = out.clone();
    tokio::task::spawn_blocking(move || compose(&sources_for, &out_for, &settings, &mut |_| true))
        .await
        .expect("composer")
        .expect("composed");
    let composing = composing.elapsed();
    let (_, tiles) = layout(WIDTH, HEIGHT, 2, false);
    let inner = |r: &floo::recording::compose::Rect| (r.x + r.w / 4, r.y + r.h / 4, r.w / 2, r.h / 4);
    let flashes = marks::flash_onsets(&out, &[inner(&tiles[0]), inner(&tiles[1])], FPS);
    let onsets = marks::sound_onsets(&out);
    let truth = |sender: &Sender, offset: i64| -> Vec<f64> {
        sender.marks.iter().map(|&m| (m as i64 + offset) as f64 / 1e6).collect()
    };
    let alice_errors = check_composed("Alice", &truth(&alice, alice_offset), &onsets, &flashes[0]);
    let mut bob_errors = Vec::new();
    for (part, offset) in bobs.iter().zip(&bob_offsets) {
        bob_errors.extend(check_composed("Bob", &truth(part, *offset), &onsets, &flashes[1]));
    }
    for (who, errors) in [("Alice", &alice_errors), ("Bob", &bob_errors)] {
        let [first, middle, last] = marks::thirds(errors);
        println!("{who}: lip-sync error {first:.1} / {middle:.1} / {last:.1} ms (first, middle, last tenth)");
        assert!(first.abs() <= 20.0 && middle.abs() <= 20.0 && last.abs() <= 20.0, "{who}: on average off");
        assert!((last - first).abs() <= 10.0, "{who}: the error grew from {first:.1} to {last:.1} ms");
    }
    println!(
        "{:.0} min of media pushed through the relay in {:.1} s, composed in {:.1} s",
        seconds / 60.0,
        pushed.as_secs_f64(),
        composing.as_secs_f64()
    );
    let _ = std::fs::remove_dir_all(dir);
    app.finish().await;
}
