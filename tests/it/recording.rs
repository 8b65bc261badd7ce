//! Recording files: real VP8 and Opus packets (made by the ffmpeg command line, as a
//! browser's encoders would) remuxed into WebM; checked with ffprobe, finished or cut off
//! as by `kill -9`, and repaired.

use std::path::{Path, PathBuf};
use std::process::Command;

use ffmpeg_next as ffmpeg;
use floo::recording::{ComposeError, ParticipantFile, Settings, Source, TrackKind, compose, repair};

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
    record_at(source, into, seconds, 0)
}

/// The same, as if the participant joined `offset_us` after the recording started.
fn record_at(source: &Path, into: &Path, seconds: f64, offset_us: i64) -> ParticipantFile {
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
        file.write(kind, micros.max(0) + offset_us, packet.is_key(), packet.data().expect("data")).expect("write");
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

/// Every stream of a file: (codec, width, duration in seconds).
pub fn streams(path: &Path) -> Vec<(String, u64, f64)> {
    let output = Command::new("ffprobe")
        .args(["-v", "error", "-show_entries", "stream=codec_name,width,duration", "-of", "json"])
        .arg(path)
        .output()
        .expect("ffprobe runs");
    assert!(output.status.success(), "ffprobe reads {}", path.display());
    let json: serde_json::Value = serde_json::from_slice(&output.stdout).expect("json");
    json["streams"]
        .as_array()
        .expect("streams")
        .iter()
        .map(|s| {
            (
                s["codec_name"].as_str().unwrap_or("").to_owned(),
                s["width"].as_u64().unwrap_or(0),
                s["duration"].as_str().and_then(|d| d.parse().ok()).unwrap_or(0.0),
            )
        })
        .collect()
}

/// The mean luma of the picture at `second` in `path`, over a region (x, y, w, h).
pub fn luma(path: &Path, second: f64, region: (u32, u32, u32, u32)) -> f64 {
    let grey = grey(path, second, region);
    grey.iter().map(|&b| f64::from(b)).sum::<f64>() / grey.len() as f64
}

#[test]
fn a_meeting_composes_into_one_h264_and_aac_video_that_follows_who_is_there() {
    let dir = scratch();
    let src = source(&dir);
    // Alice is there from the start for 4 s; Bob joins at 2 s and stays 4 s: 6 s in all.
    let alice = dir.join("1-1.webm");
    let bob = dir.join("2-2.webm");
    record(&src, &alice, 10.0).finish().expect("alice");
    record_at(&src, &bob, 10.0, 2_000_000).finish().expect("bob");
    let out = dir.join("meeting.mp4");
    let mut seen = Vec::new();
    let sources = vec![
        Source { name: "Alice".into(), path: alice, screen: false },
        Source { name: "Bob".into(), path: bob, screen: false },
    ];
    let composed = compose(&sources, &out, &Settings::default(), &mut |f| {
        seen.push(f);
        true
    })
    .expect("compose");
    assert!((composed.duration_ms - 6_000).abs() < 500, "{} ms", composed.duration_ms);
    assert!(
        seen.windows(2).all(|w| w[0] <= w[1]) && *seen.last().expect("progress") > 0.9,
        "progress rises to the end"
    );
    let found = streams(&out);
    let codecs: Vec<&str> = found.iter().map(|(c, _, _)| c.as_str()).collect();
    assert_eq!(codecs, vec!["h264", "aac"], "{found:?}");
    assert_eq!(found[0].1, 1280);
    // faststart: the index (moov) comes before the media (mdat), so playback and seeking
    // start before the download ends.
    let bytes = std::fs::read(&out).expect("mp4");
    let at = |atom: &[u8]| bytes.windows(4).position(|w| w == atom).expect("atom");
    assert!(at(b"moov") < at(b"mdat"), "moov before mdat");
    for (codec, _, seconds) in &found {
        assert!((seconds - 6.0).abs() < 0.5, "{codec} lasts {seconds} s of 6");
    }
    // Alone, Alice fills the middle of the picture; with Bob, the picture splits in two
    // and the far right (empty while she is alone) shows his test pattern.
    let right = (1100, 300, 100, 100);
    assert!(luma(&out, 1.0, right) < 40.0, "the right edge is background while Alice is alone");
    assert!(luma(&out, 3.0, right) > 40.0, "Bob's tile fills the right half once he joins");
    let _ = std::fs::remove_dir_all(dir);
}

/// The picture at `second` in `path` as grey levels, over a region (x, y, w, h).
fn grey(path: &Path, second: f64, region: (u32, u32, u32, u32)) -> Vec<u8> {
    let (x, y, w, h) = region;
    let output = Command::new("ffmpeg")
        .args(["-v", "error", "-ss", &second.to_string()])
        .arg("-i")
        .arg(path)
        .args(["-frames:v", "1", "-vf", &format!("crop={w}:{h}:{x}:{y},format=gray"), "-f", "rawvideo", "-"])
        .output()
        .expect("ffmpeg runs");
    assert!(output.status.success() && output.stdout.len() == (w * h) as usize, "a frame at {second} s");
    output.stdout
}

#[test]
fn names_in_every_script_are_drawn_on_the_name_cards_of_a_composed_recording() {
    let dir = scratch();
    // Four people with their cameras off (sound only): four name cards, two by two.
    let voice = dir.join("voice.webm");
    let status = Command::new("ffmpeg")
        .args(["-v", "error", "-y", "-f", "lavfi", "-i", "sine=frequency=330:sample_rate=48000", "-t", "2"])
        .args(["-c:a", "libopus", "-ac", "1"])
        .arg(&voice)
        .status()
        .expect("ffmpeg runs");
    assert!(status.success());
    let names = ["Zoë", "Ωμέγα", "李雷", "محمد"];
    let compose_as = |names: &[String], out: &str| {
        let sources: Vec<Source> = names
            .iter()
            .enumerate()
            .map(|(i, name)| {
                let path = dir.join(format!("{i}-{out}.webm"));
                std::fs::copy(&voice, &path).expect("copy");
                Source { name: name.clone(), path, screen: false }
            })
            .collect();
        let out = dir.join(out);
        compose(&sources, &out, &Settings::default(), &mut |_| true).expect("compose");
        out
    };
    let named = compose_as(&names.map(String::from), "named.mp4");
    // The same names as question marks, as the old bitmap font drew them.
    let questions = compose_as(&names.map(|n| "?".repeat(n.chars().count())), "questions.mp4");
    // Tiles are placed by name; look at the middle of each quarter for each name card.
    let quarters = [(160, 110, 320, 140), (800, 110, 320, 140), (160, 470, 320, 140), (800, 470, 320, 140)];
    for quarter in quarters {
        let (a, b) = (grey(&named, 1.0, quarter), grey(&questions, 1.0, quarter));
        let inked = a.iter().filter(|&&v| v > 150).count();
        let differ = a.iter().zip(&b).filter(|(x, y)| x.abs_diff(**y) > 60).count();
        assert!(inked > 200, "a name is drawn in {quarter:?}: {inked} light pixels");
        assert!(differ > 200, "what is drawn in {quarter:?} is not question marks: {differ} pixels differ");
    }
    let _ = std::fs::copy(&named, std::env::temp_dir().join("floo-names.mp4"));
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn a_full_disk_fails_the_composition_with_a_readable_reason() {
    let dir = scratch();
    let src = source(&dir);
    let alice = dir.join("1-1.webm");
    record(&src, &alice, 10.0).finish().expect("alice");
    let sources = vec![Source { name: "Alice".into(), path: alice, screen: false }];
    // /dev/full takes the open and refuses every write with ENOSPC, as a full disk does.
    let error = compose(&sources, Path::new("/dev/full"), &Settings::default(), &mut |_| true)
        .expect_err("nothing can be written");
    assert!(error.to_string().contains("No space left on device"), "{error}");

    // The recorder's own files meet a full disk the same way: the error says so, and the
    // relay marks the recording failed with it.
    let refused = ParticipantFile::create(Path::new("/dev/full"), Some((320, 240)), true)
        .and_then(|mut f| f.write(TrackKind::Audio, 0, true, &[0u8; 200]));
    let error = refused.expect_err("nothing can be written").to_string();
    assert!(error.contains("No space left on device"), "{error}");

    // Whatever the files claim, the video is no longer than the recording ran.
    let sources = vec![Source { name: "Alice".into(), path: dir.join("1-1.webm"), screen: false }];
    let capped = Settings { max_duration_ms: Some(2_000), ..Settings::default() };
    let composed = compose(&sources, &dir.join("capped.mp4"), &capped, &mut |_| true).expect("compose");
    assert_eq!(composed.duration_ms, 2_000);
    let (_, seconds) = probe(&dir.join("capped.mp4"));
    assert!((seconds - 2.0).abs() < 0.2, "capped video lasts {seconds} s");

    let broken = dir.join("2-2.webm");
    std::fs::write(&broken, b"not a recording at all").expect("write");
    let sources = vec![Source { name: "Bob".into(), path: broken, screen: false }];
    match compose(&sources, &dir.join("out.mp4"), &Settings::default(), &mut |_| true) {
        Err(e @ ComposeError::Input { .. }) => assert!(e.to_string().contains("Bob's file"), "{e}"),
        other => panic!("a broken file is named: {other:?}"),
    }
    let _ = std::fs::remove_dir_all(dir);
}

/// Four seconds of black and silence with a white flash and a 1 kHz beep together from
/// 2.0 to 2.5 s: a clap, to see where sound and picture end up.
fn clap(dir: &Path) -> PathBuf {
    let path = dir.join("clap.webm");
    let status = Command::new("ffmpeg")
        .args(["-v", "error", "-y", "-f", "lavfi", "-i", "color=c=black:s=320x240:r=30:d=4"])
        .args(["-f", "lavfi", "-i", "sine=frequency=1000:sample_rate=48000:duration=4"])
        .args(["-vf", "drawbox=c=white:t=fill:enable='between(t,2,2.5)'"])
        .args(["-af", "volume=0:enable='lt(t,2)+gt(t,2.5)'"])
        .args(["-c:v", "libvpx", "-g", "30", "-b:v", "300k", "-c:a", "libopus", "-ac", "1", "-ar", "48000"])
        .arg(&path)
        .status()
        .expect("ffmpeg runs");
    assert!(status.success());
    path
}

/// When the picture in `region` (x, y, w, h) first turns bright after `from` seconds, and
/// when the sound first turns loud, in seconds.
fn clap_times(path: &Path, region: (u32, u32, u32, u32), from: f64) -> (f64, f64) {
    let (x, y, w, h) = region;
    let frames = Command::new("ffmpeg")
        .args(["-v", "error", "-i"])
        .arg(path)
        .args(["-vf", &format!("crop={w}:{h}:{x}:{y},format=gray"), "-r", "25", "-f", "rawvideo", "-"])
        .output()
        .expect("ffmpeg");
    let skip = (from * 25.0) as usize;
    let flash = frames
        .stdout
        .chunks((w * h) as usize)
        .skip(skip)
        .position(|f| f.iter().map(|&b| f64::from(b)).sum::<f64>() / f.len() as f64 > 128.0)
        .map(|i| i + skip);
    let audio = Command::new("ffmpeg")
        .args(["-v", "error", "-i"])
        .arg(path)
        .args(["-vn", "-ac", "1", "-ar", "48000", "-f", "f32le", "-"])
        .output()
        .expect("ffmpeg");
    let samples: Vec<f32> =
        audio.stdout.chunks_exact(4).map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]])).collect();
    let beep = samples.iter().position(|s| s.abs() > 0.1);
    (flash.expect("a flash") as f64 / 25.0, beep.expect("a beep") as f64 / 48_000.0)
}

#[test]
fn sound_and_picture_stay_together_for_someone_who_joins_late() {
    let dir = scratch();
    let clap = clap(&dir);
    let src = source(&dir);
    // Alice is there from the start; Bob joins 1.5 s in and claps 2 s after that.
    let alice = dir.join("1-1.webm");
    let bob = dir.join("2-2.webm");
    // Alice's own test tone would hide the clap's beep: she is muted (video only).
    let mut file = ParticipantFile::create(&alice, Some((320, 240)), true).expect("alice");
    let mut input = ffmpeg::format::input(&src).expect("source");
    for (stream, packet) in input.packets() {
        if stream.parameters().medium() != ffmpeg::media::Type::Video {
            continue;
        }
        let base = stream.time_base();
        let us =
            packet.pts().unwrap_or(0).max(0) * 1_000_000 * i64::from(base.numerator()) / i64::from(base.denominator());
        file.write(TrackKind::Video, us, packet.is_key(), packet.data().expect("data")).expect("write");
    }
    file.finish().expect("alice");
    record_at(&clap, &bob, 10.0, 1_500_000).finish().expect("bob");
    let out = dir.join("meeting.mp4");
    let sources = vec![
        Source { name: "Alice".into(), path: alice, screen: false },
        Source { name: "Bob".into(), path: bob, screen: false },
    ];
    compose(&sources, &out, &Settings { width: 640, height: 360, ..Settings::default() }, &mut |_| true)
        .expect("compose");
    // Bob's tile is the right half (people are in name order); look above his name label.
    let (flash, beep) = clap_times(&out, (400, 110, 160, 60), 1.6);
    assert!((flash - 3.5).abs() < 0.1, "the flash is at {flash} s, not 3.5");
    assert!((beep - 3.5).abs() < 0.1, "the beep is at {beep} s, not 3.5");
    assert!((flash - beep).abs() < 0.08, "sound and picture drift apart: flash {flash} s, beep {beep} s");
    let _ = std::fs::remove_dir_all(dir);
}

crate::on_both_backends!(recording_states_and_file_kinds_are_the_databases_to_check);

/// A recording's state and a file's kind are closed sets: the database refuses others
/// (whatever code writes them), and a screen share is known by its kind, not its name.
async fn recording_states_and_file_kinds_are_the_databases_to_check(backend: crate::support::Backend) {
    use floo::store::{FileKind, NewFile, RecordingState, Store};
    let dir = scratch();
    let url = match backend {
        crate::support::Backend::Sqlite => format!("sqlite://{}?mode=rwc", dir.join("floo.db").display()),
        crate::support::Backend::Postgres => crate::support::create_postgres_database().await.0,
    };
    let store = Store::connect(&url, 2).await.expect("store");
    let user = store.upsert_user("dev", "alice", "Alice", None, None, 1).await.expect("user");
    let team = store.create_team("Typed", user.id, 1, || "code-typed".into()).await.expect("team");
    let meeting = store.create_meeting(team.id, user.id, "Call", 1).await.expect("meeting");
    let id = store.start_recording(meeting, user.id, 2).await.expect("start").expect("a recording");
    let files = [
        NewFile { user_id: user.id, file_name: "7-1.webm".into(), kind: FileKind::Camera, bytes: 10 },
        // Named like a camera file: its kind says what it holds.
        NewFile { user_id: user.id, file_name: "7-2.webm".into(), kind: FileKind::Screen, bytes: 20 },
    ];
    assert!(store.finish_recording(id, RecordingState::Composing, None, false, &files, 3).await.expect("finish"));
    let recordings = store.meeting_recordings(meeting).await.expect("recordings");
    assert_eq!(recordings[0].state, RecordingState::Composing);
    let kinds: Vec<_> = recordings[0].files.iter().map(|f| (f.file_name.as_str(), f.kind)).collect();
    assert_eq!(kinds, [("7-1.webm", FileKind::Camera), ("7-2.webm", FileKind::Screen)]);
    let sources = store.composition_sources(id).await.expect("sources");
    assert_eq!(sources.iter().map(|f| f.kind).collect::<Vec<_>>(), [FileKind::Camera, FileKind::Screen]);

    // Anything else is refused by the database itself.
    let refused = |sql: String| {
        let url = url.clone();
        async move {
            let result = match backend {
                crate::support::Backend::Sqlite => {
                    let mut db = <sqlx::SqliteConnection as sqlx::Connection>::connect(&url).await.expect("db");
                    sqlx::query(sqlx::AssertSqlSafe(sql.clone())).execute(&mut db).await.map(|_| ())
                }
                crate::support::Backend::Postgres => {
                    let mut db = <sqlx::PgConnection as sqlx::Connection>::connect(&url).await.expect("db");
                    sqlx::query(sqlx::AssertSqlSafe(sql.clone())).execute(&mut db).await.map(|_| ())
                }
            };
            assert!(result.is_err(), "the database took {sql}");
        }
    };
    refused(format!("UPDATE recordings SET state = 'paused' WHERE id = {id}")).await;
    refused(format!(
        "INSERT INTO recordings (meeting_id, started_by, started_at, state) VALUES ({meeting}, {}, 4, 'Recording')",
        user.id
    ))
    .await;
    refused(format!("UPDATE recording_files SET kind = 'audio' WHERE recording_id = {id}")).await;
    let recordings = store.meeting_recordings(meeting).await.expect("recordings");
    assert_eq!(recordings.len(), 1);
    assert_eq!(recordings[0].state, RecordingState::Composing, "nothing changed");
    let _ = std::fs::remove_dir_all(&dir);
}
