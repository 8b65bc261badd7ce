//! End to end in real headless browsers: Debian's Chromium (driven by playwright-core)
//! and Firefox ESR (driven by puppeteer-core over WebDriver BiDi), scripts in
//! `tests/e2e/`. Screenshots land in `tests/e2e/artifacts/<test>/`.

use std::path::Path;
use std::process::Stdio;

use crate::support::{Backend, TestApp};

/// Runs `tests/e2e/<script>` against `app`; fails with the script's output if it fails.
pub async fn run_browser_script(app: &TestApp, script: &str, artifact_dir: &str) {
    run_browser_script_with(app, script, artifact_dir, &[]).await;
}

/// The same, with more environment variables for the script.
pub async fn run_browser_script_with(app: &TestApp, script: &str, artifact_dir: &str, env: &[(&str, String)]) {
    run_browser_script_at(&app.base, script, artifact_dir, env).await;
}

/// The same against a Floo that is not a `TestApp` (nodes, the container image).
pub async fn run_browser_script_at(base: &str, script: &str, artifact_dir: &str, env: &[(&str, String)]) {
    run_browser_script_steering(base, script, artifact_dir, env, async |request: String| -> String {
        panic!("{script} asked the test for `{request}`, which it does not answer")
    })
    .await;
}

/// Runs a script against `base` that asks the test to act while it runs: each stdout
/// line `floo-ctl: REQUEST` is passed to `answer`, whose reply goes back on the script's
/// stdin as one line (e.g. the rolling-restart walk asks for a node to be restarted).
pub async fn run_browser_script_steering(
    base: &str,
    script: &str,
    artifact_dir: &str,
    env: &[(&str, String)],
    mut answer: impl AsyncFnMut(String) -> String,
) {
    use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};

    let _turn = crate::support::WHOLE_MACHINE.lock().await;
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let e2e = root.join("tests/e2e");
    assert!(
        e2e.join("node_modules/playwright-core").is_dir(),
        "browser tests need `npm ci --prefix tests/e2e` (ops/test does it)"
    );
    let chromium = std::env::var("FLOO_CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".into());
    assert!(Path::new(&chromium).exists(), "browser tests need Chromium at {chromium} (ops/test installs it)");
    let artifacts = e2e.join("artifacts").join(artifact_dir);
    let firefox = std::env::var("FLOO_FIREFOX").unwrap_or_else(|_| "/usr/bin/firefox-esr".into());
    assert!(Path::new(&firefox).exists(), "browser tests need Firefox at {firefox} (ops/test installs firefox-esr)");
    let sound = SoundServer::start();
    let mut child = tokio::process::Command::new("node")
        .arg(e2e.join(script))
        .arg(base)
        .arg(&artifacts)
        .env("FLOO_CHROMIUM", &chromium)
        .env("FLOO_FIREFOX", &firefox)
        .env("FLOO_PULSE_SERVER", &sound.address)
        .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("node runs (ops/test installs it)");
    let mut stdin = child.stdin.take().expect("stdin");
    let mut lines = BufReader::new(child.stdout.take().expect("stdout")).lines();
    let mut stderr_pipe = child.stderr.take().expect("stderr");
    let stderr = tokio::spawn(async move {
        let mut text = String::new();
        let _ = stderr_pipe.read_to_string(&mut text).await;
        text
    });
    let mut stdout = String::new();
    while let Some(line) = lines.next_line().await.expect("read the script's output") {
        match line.strip_prefix("floo-ctl: ") {
            Some(request) => {
                let reply = answer(request.to_owned()).await;
                stdin.write_all(format!("{reply}\n").as_bytes()).await.expect("answer the script");
            }
            None => {
                stdout.push_str(&line);
                stdout.push('\n');
            }
        }
    }
    let status = child.wait().await.expect("the script ends");
    drop(sound);
    let stderr = stderr.await.unwrap_or_default();
    assert!(status.success(), "{script} failed ({status}):\n{stdout}\n{stderr}");
    // What the walk measured, for `--nocapture`.
    print!("{stdout}");
}

/// A PulseAudio server with a null sink, for one browser walk: Firefox reads microphones
/// and plays sound only through a sound server, and a test machine has no sound card.
/// Stopped when dropped. (`FLOO_PULSE_SERVER` names an existing server instead.)
struct SoundServer {
    address: String,
    server: Option<(std::process::Child, std::path::PathBuf)>,
}

impl SoundServer {
    fn start() -> SoundServer {
        if let Ok(address) = std::env::var("FLOO_PULSE_SERVER") {
            return SoundServer { address, server: None };
        }
        let dir = std::env::temp_dir().join(format!("floo-test-pulse-{}", crate::support::unique_suffix()));
        std::fs::create_dir_all(&dir).expect("a directory for the sound server");
        let socket = dir.join("native");
        let child = std::process::Command::new("pulseaudio")
            .args(["--daemonize=no", "--exit-idle-time=-1", "--system=false", "-n", "--use-pid-file=no"])
            .arg("--load=module-null-sink sink_name=floo_test")
            .arg(format!("--load=module-native-protocol-unix socket={} auth-anonymous=1", socket.display()))
            .env("XDG_RUNTIME_DIR", &dir)
            .env("HOME", &dir)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("Firefox tests need PulseAudio (ops/test installs the pulseaudio package)");
        let server = SoundServer { address: format!("unix:{}", socket.display()), server: Some((child, dir)) };
        for _ in 0..200 {
            if socket.exists() {
                return server;
            }
            std::thread::sleep(std::time::Duration::from_millis(25));
        }
        panic!("PulseAudio did not open {}", socket.display());
    }
}

impl Drop for SoundServer {
    fn drop(&mut self) {
        if let Some((mut child, dir)) = self.server.take() {
            let _ = child.kill();
            let _ = child.wait();
            let _ = std::fs::remove_dir_all(dir);
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_people_meet_in_chromium_create_a_team_join_it_post_and_see_a_meeting() {
    let app = TestApp::spawn(Backend::Sqlite).await;
    run_browser_script(&app, "foundation.mjs", "foundation").await;
    app.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn meeting_chat_is_live_for_two_participants_and_a_reader_on_the_forum() {
    let app = TestApp::spawn(Backend::Sqlite).await;
    run_browser_script(&app, "chat.mjs", "chat").await;
    app.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_people_hold_a_video_call_with_mute_late_join_leave_and_reconnect() {
    let app = TestApp::spawn(Backend::Sqlite).await;
    run_browser_script(&app, "call.mjs", "call").await;
    app.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_people_record_a_call_and_get_a_playable_file_each_and_the_meeting_video() {
    let app = TestApp::spawn(Backend::Sqlite).await;
    run_browser_script(&app, "record.mjs", "record").await;
    let artifacts = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/e2e/artifacts/record");
    let timing: serde_json::Value =
        serde_json::from_slice(&std::fs::read(artifacts.join("timing.json")).expect("timing.json")).expect("json");
    let at = |key: &str| timing[key].as_f64().expect("a time") / 1000.0;
    let (recorded, share_from, share_until, camera_off) =
        (at("recorded"), at("shareFrom"), at("shareUntil"), at("cameraOffAt"));

    let dir = app.data_dir.join("recordings").join("1");
    let mut files: Vec<_> =
        std::fs::read_dir(&dir).expect("recording directory").filter_map(Result::ok).map(|e| e.path()).collect();
    files.sort();
    let name = |p: &Path| p.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let names: Vec<String> = files.iter().map(|p| name(p)).collect();
    assert_eq!(names.len(), 4, "two participants' tracks, a screen share and the meeting video: {names:?}");
    for file in &files {
        let file_name = name(file);
        if file_name == "meeting.mp4" {
            let streams = crate::recording::streams(file);
            let codecs: Vec<&str> = streams.iter().map(|(c, _, _)| c.as_str()).collect();
            assert_eq!(codecs, vec!["h264", "aac"], "the meeting video: {streams:?}");
            for (codec, _, seconds) in &streams {
                assert!(
                    (seconds - recorded).abs() < 1.0,
                    "the meeting video's {codec} lasts {seconds} s of {recorded}"
                );
            }
            // The picture follows the meeting: Bob's camera, then (his camera off) his
            // name card on grey; Alice's camera all along. Pictures of the moments go
            // beside the screenshots for people to look at.
            let bob_tile = (700, 200, 100, 60);
            let alice_tile = (60, 200, 100, 60);
            let before = share_from - 0.2;
            let card = (camera_off + recorded) / 2.0 + 0.6;
            assert!(crate::recording::luma(file, before, bob_tile) > 70.0, "Bob's camera at {before} s");
            let grey = crate::recording::luma(file, card.min(recorded - 0.2), bob_tile);
            assert!((40.0..65.0).contains(&grey), "Bob's name card (luma {grey}) once his camera is off");
            assert!(crate::recording::luma(file, card.min(recorded - 0.2), alice_tile) > 70.0, "Alice's camera");
            let moments = [("cameras", before), ("screen", (share_from + share_until) / 2.0 + 0.3), ("card", card)];
            for (what, second) in moments {
                let status = std::process::Command::new("ffmpeg")
                    .args(["-v", "error", "-y", "-ss", &format!("{:.2}", second.min(recorded - 0.2)), "-i"])
                    .arg(file)
                    .args(["-frames:v", "1"])
                    .arg(artifacts.join(format!("video-{what}.png")))
                    .status()
                    .expect("ffmpeg runs");
                assert!(status.success(), "a picture of the meeting video at {second} s");
            }
        } else if file_name.ends_with("-screen.webm") {
            // On the recording's clock: the file ends when sharing did.
            let (codecs, duration) = crate::recording::probe(file);
            assert_eq!(codecs, vec!["vp8"], "{file_name}");
            assert!(
                (duration - share_until).abs() < 1.0,
                "{file_name}: sharing ended at {duration} s, not {share_until}"
            );
        } else {
            let (codecs, duration) = crate::recording::probe(file);
            assert_eq!(codecs, vec!["vp8", "opus"], "{file_name}");
            assert!((duration - recorded).abs() < 1.0, "{file_name} lasts {duration} s of {recorded}");
        }
    }
    app.finish().await;
}

/// Every kind of page (signed out, home, team, forum, topic, members, invite, lobby, call)
/// passes axe-core's WCAG 2.1 A and AA rules in Chromium.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_kind_of_page_passes_an_accessibility_scan() {
    let app = TestApp::spawn(Backend::Sqlite).await;
    run_browser_script(&app, "a11y.mjs", "a11y").await;
    app.finish().await;
}

/// A call of three from a phone (Chromium's mobile emulation, 390×844, touch): the call
/// fills the screen, the controls are thumb-sized at the bottom, the chat, the people and
/// the devices open as panels over it, nothing is wider than the screen, in portrait and
/// landscape, and axe-core finds nothing at that size.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_call_of_three_works_from_a_phone_with_the_chat_and_people_in_panels() {
    let app = TestApp::spawn(Backend::Sqlite).await;
    run_browser_script(&app, "phone.mjs", "phone").await;
    app.finish().await;
}

/// WebKit (Safari's engine: Debian's WebKitGTK through WebKitWebDriver, tests/e2e/webkit.mjs):
/// sign-in, a team, the forum live both ways with a Chromium user, the lobby's preview and
/// microphone meter, and a call with the Chromium user over the WebSocket in which each sees
/// and hears the other (around this WebKit's bugs: src/media/PROTOCOL.md, "WebKitGTK").
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_webkit_user_shares_the_live_forum_with_chromium_and_meets_them_over_the_websocket() {
    assert!(
        Path::new("/usr/bin/WebKitWebDriver").exists(),
        "the WebKit walk needs WebKitWebDriver (ops/test installs webkit2gtk-driver and xvfb)"
    );
    let app = TestApp::spawn(Backend::Sqlite).await;
    run_browser_script(&app, "webkit.mjs", "webkit").await;
    app.finish().await;
}

/// A few minutes of a browser whose camera flashes and whose microphone clicks together
/// (as far as Chromium's fake devices keep them together: each loops its own file on its
/// own clock, so the truth is what entered Alice's encoders, taken on her page): in her
/// recorded file and in the composed meeting video, each flash-to-click offset matches the
/// one she sent, as closely at the end as at the start.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_recording_from_a_browser_keeps_lips_and_voice_as_together_at_its_end_as_at_its_start() {
    use crate::lipsync::marks;
    let app = TestApp::spawn(Backend::Sqlite).await;
    let dir = crate::recording::scratch();
    let (video, audio) = (dir.join("flash.y4m"), dir.join("click.wav"));
    // Two seconds each, looped by Chromium: a white flash of 100 ms, a 20 ms click.
    let ffmpeg = |args: &[&str], out: &Path| {
        let made = std::process::Command::new("ffmpeg").args(["-v", "error", "-y"]).args(args).arg(out).status();
        assert!(made.expect("ffmpeg runs").success(), "ffmpeg makes {}", out.display());
    };
    ffmpeg(
        &["-f", "lavfi", "-i", "color=c=black:s=640x360:r=20:d=2", "-vf", "drawbox=c=white:t=fill:enable='lt(t,0.1)'"]
            .iter()
            .chain(&["-pix_fmt", "yuv420p"])
            .copied()
            .collect::<Vec<_>>(),
        &video,
    );
    ffmpeg(
        &["-f", "lavfi", "-i", "aevalsrc='0.8*sin(2*PI*1000*t)*lt(t,0.02)':s=48000:d=2", "-c:a", "pcm_s16le"],
        &audio,
    );
    let seconds = std::env::var("FLOO_LIPSYNC_SECONDS").unwrap_or_else(|_| "180".into());
    let env = [
        ("FLOO_LIPSYNC_VIDEO", video.display().to_string()),
        ("FLOO_LIPSYNC_AUDIO", audio.display().to_string()),
        ("FLOO_LIPSYNC_SECONDS", seconds),
    ];
    run_browser_script_with(&app, "lipsync.mjs", "lipsync", &env).await;
    let artifacts = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/e2e/artifacts/lipsync");
    let sent: serde_json::Value =
        serde_json::from_slice(&std::fs::read(artifacts.join("marks.json")).expect("marks.json")).expect("json");
    let times = |key: &str| -> Vec<f64> {
        sent[key].as_array().expect("times").iter().filter_map(|t| t.as_f64()).map(|us| us / 1e6).collect()
    };
    let started = sent["startedUs"].as_f64().expect("start") / 1e6;
    let sent_pairs = marks::pairs(&times("flashes"), &times("clicks"), 0.5);
    assert!(sent_pairs.len() > 10, "Alice sent {} flash-and-click pairs", sent_pairs.len());

    let recorded = app.data_dir.join("recordings").join("1");
    let alice_file = std::fs::read_dir(&recorded)
        .expect("the recording")
        .filter_map(Result::ok)
        .map(|e| e.path())
        .find(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with("1-") && n.ends_with(".webm") && !n.contains("screen"))
        })
        .expect("Alice's file");
    let meeting = recorded.join("meeting.mp4");
    // Alice's tile: the first of two (both were there from the start; she is first by name).
    let (_, tiles) = floo::recording::compose::layout(1280, 720, 2, false);
    let t = &tiles[0];
    let region = (t.x + t.w / 4, t.y + t.h / 4, t.w / 2, t.h / 4);
    let composed_flashes = marks::flash_onsets(&meeting, &[region], 25).remove(0);
    for (what, flashes, clicks) in [
        ("her file", marks::picture_flashes(&alice_file), marks::sound_onsets(&alice_file)),
        ("the meeting video", composed_flashes, marks::sound_onsets(&meeting)),
    ] {
        // Each recorded pair against the pair sent at about the same moment (the recording
        // starts within a fraction of a second of `started`; pairs are two seconds apart).
        let errors: Vec<f64> = marks::pairs(&flashes, &clicks, 0.5)
            .into_iter()
            .filter_map(|(flash, offset)| {
                let (_, sent) = sent_pairs
                    .iter()
                    .copied()
                    .min_by(|a, b| (a.0 - started - flash).abs().total_cmp(&(b.0 - started - flash).abs()))?;
                Some((offset - sent) * 1000.0)
            })
            .collect();
        assert!(errors.len() > 10, "{what}: only {} pairs found", errors.len());
        let third = errors.len() / 3;
        let mean = |e: &[f64]| e.iter().sum::<f64>() / e.len() as f64;
        let (first, last) = (mean(&errors[..third]), mean(&errors[errors.len() - third..]));
        println!(
            "lip sync in {what}: {} pairs, error {first:+.1} ms over the first third, {last:+.1} ms over the last",
            errors.len()
        );
        assert!(first.abs() <= 45.0 && last.abs() <= 45.0, "{what}: lips and voice {first:+.1} / {last:+.1} ms apart");
        assert!((last - first).abs() <= 10.0, "{what}: the error grew from {first:+.1} to {last:+.1} ms");
    }
    let _ = std::fs::remove_dir_all(dir);
    // Its call over before the next walk (the dashboard's figures count every call in this process).
    app.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_participant_on_a_slow_link_switches_to_the_small_layer_and_keeps_a_moving_picture() {
    let app = TestApp::spawn(Backend::Sqlite).await;
    run_browser_script(&app, "slowlink.mjs", "slowlink").await;
    app.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chromium_and_firefox_users_see_and_hear_each_other_over_both_transports_and_are_recorded() {
    let app = TestApp::spawn(Backend::Sqlite).await;
    run_browser_script(&app, "browsers.mjs", "browsers").await;
    let artifacts = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/e2e/artifacts/browsers");
    let facts: serde_json::Value =
        serde_json::from_slice(&std::fs::read(artifacts.join("recording.json")).expect("recording.json"))
            .expect("json");
    let recorded = facts["recorded"].as_f64().expect("recorded ms") / 1000.0;
    let dir = app.data_dir.join("recordings").join("1");
    for name in ["Alice", "Bob", "Carol"] {
        let user = facts["ids"][name].as_i64().expect("a user id");
        let file = std::fs::read_dir(&dir)
            .expect("the recording's directory")
            .filter_map(Result::ok)
            .map(|e| e.path())
            .find(|p| {
                let file_name = p.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
                file_name.starts_with(&format!("{user}-"))
                    && file_name.ends_with(".webm")
                    && !file_name.contains("screen")
            })
            .unwrap_or_else(|| panic!("{name}'s tracks in the recording"));
        let (codecs, duration) = crate::recording::probe(&file);
        assert_eq!(codecs, vec!["vp8", "opus"], "{name}'s camera and microphone are both recorded");
        assert!(duration > 2.0 && (duration - recorded).abs() < 1.5, "{name}'s tracks last {duration} s of {recorded}");
    }
    app.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_participant_behind_a_firewall_that_blocks_udp_joins_over_the_websocket_and_reconnects_by_itself() {
    // Served on every address (so the page can be opened at 127.0.0.2, the blocked
    // network's way in), relay on both IP versions; the dev login allowed off loopback.
    let flags = ["--http-addr", "0.0.0.0:0", "--quic-addr", "[::]:0", "--allow-dev-login"];
    let app = TestApp::spawn_with(Backend::Sqlite, &flags).await;
    run_browser_script(&app, "udpblock.mjs", "udpblock").await;
    app.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn over_a_delayed_lossy_link_audio_plays_on_recovers_from_a_stall_and_video_from_a_lost_decoder() {
    // Served on every address so that Bob's page can be opened at 127.0.0.2, where the
    // impairment proxy listens on the relay's port (the relay itself is on 127.0.0.1).
    let app = TestApp::spawn_with(Backend::Sqlite, &["--http-addr", "0.0.0.0:0", "--allow-dev-login"]).await;
    let port = app.quic_addr.port();
    let impairment = crate::impair::Impairment {
        delay: std::time::Duration::from_millis(40),
        jitter: std::time::Duration::from_millis(15),
        loss: 0.02,
    };
    let front = format!("127.0.0.2:{port}").parse().expect("address");
    let proxy = crate::impair::Proxy::start(front, app.quic_addr, impairment).await;
    let control = proxy.control.to_string();
    run_browser_script_with(&app, "quality.mjs", "quality", &[("FLOO_IMPAIR_CONTROL", control)]).await;
    let (passed, dropped) = proxy.counts();
    assert!(dropped > 0 && passed > 1000, "the proxy carried Bob's call and dropped some of it ({passed} / {dropped})");
    app.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_meeting_of_a_hundred_shows_pages_of_tiles_and_the_speaker_and_decodes_only_what_is_on_screen() {
    use crate::synthetic::{Sends, participate, recording};
    let app = TestApp::spawn(Backend::Sqlite).await;
    // A team of a host and 96 synthetic people, who all join the meeting (30 with their
    // camera on, one speaking); four browsers join them (bigmeeting.mjs).
    let host = app.signed_in("Host").await;
    let team = host.post_form("/teams", &[("name", "Town")]).await;
    let team_path = team.url.trim_start_matches(&app.base).to_owned();
    let invite = host
        .get(&format!("{team_path}/invite"))
        .await
        .between("id=\"invite-link\" type=\"text\" readonly value=\"", "\"");
    let invite = invite.trim_start_matches(&app.base).to_owned();
    let code = invite.rsplit('/').next().expect("code").to_owned();
    let meeting = host.post_form(&format!("{team_path}/meetings"), &[("title", "All hands")]).await;
    let meeting = meeting.url.trim_start_matches(&app.base).to_owned();
    let frames = recording();
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let mut people = Vec::new();
    for i in 0..96 {
        let client = app.signed_in(&format!("Synthetic {i:02}")).await;
        client.post_form("/join", &[("code", &code)]).await.expect_ok_with("Town");
        let ticket = crate::media::ticket(&client, &meeting).await;
        let sends = Sends { camera: i < 30, voice: (i == 7).then_some(20) };
        people.push(tokio::spawn(participate(ticket, frames.clone(), sends, stopped.clone())));
    }
    let env = [
        ("FLOO_MEETING", meeting.clone()),
        ("FLOO_INVITE", invite),
        ("FLOO_TEAM", "Town".to_owned()),
        ("FLOO_SPEAKER", "Synthetic 07".to_owned()),
    ];
    run_browser_script_with(&app, "bigmeeting.mjs", "bigmeeting", &env).await;
    let _ = stop.send(true);
    for person in people {
        person.await.expect("a synthetic participant ends cleanly");
    }
    app.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_host_asks_one_to_mute_lowers_a_hand_removes_someone_and_lets_someone_in_from_the_lobby() {
    let app = TestApp::spawn(Backend::Sqlite).await;
    run_browser_script(&app, "hosts.mjs", "hosts").await;
    app.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn in_a_call_of_five_small_tiles_get_the_small_layer_and_a_pinned_person_the_large_one() {
    let app = TestApp::spawn(Backend::Sqlite).await;
    run_browser_script(&app, "layers.mjs", "layers").await;
    app.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn people_who_join_at_once_refuse_their_camera_or_switch_devices_are_still_seen_and_heard() {
    let app = TestApp::spawn(Backend::Sqlite).await;
    run_browser_script(&app, "devices.mjs", "devices").await;
    // Carol's stereo 44.1 kHz microphone is in the recording, as sound, not silence.
    let artifacts = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/e2e/artifacts/devices");
    let facts: serde_json::Value =
        serde_json::from_slice(&std::fs::read(artifacts.join("recording.json")).expect("recording.json"))
            .expect("json");
    let carol = facts["ids"]["Carol"].as_i64().expect("Carol's id");
    let dir = app.data_dir.join("recordings").join("1");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    let file = loop {
        let found = std::fs::read_dir(&dir).into_iter().flatten().filter_map(Result::ok).map(|e| e.path()).find(|p| {
            let name = p.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
            name.starts_with(&format!("{carol}-")) && name.ends_with(".webm") && !name.contains("screen")
        });
        if let Some(file) = found {
            break file;
        }
        assert!(std::time::Instant::now() < deadline, "Carol's tracks in the recording");
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    };
    let (codecs, _) = crate::recording::probe(&file);
    assert!(codecs.contains(&"opus".to_owned()), "Carol's voice is recorded: {codecs:?}");
    let output = std::process::Command::new("ffmpeg")
        .args(["-v", "info", "-nostats", "-i"])
        .arg(&file)
        .args(["-map", "0:a", "-af", "volumedetect", "-f", "null", "-"])
        .output()
        .expect("ffmpeg runs");
    let log = String::from_utf8_lossy(&output.stderr);
    let mean: f64 = log
        .lines()
        .find_map(|l| l.split("mean_volume:").nth(1))
        .and_then(|v| v.trim().trim_end_matches(" dB").parse().ok())
        .unwrap_or_else(|| panic!("no volume measured: {log}"));
    println!("Carol's recorded voice: mean volume {mean} dB");
    assert!(mean > -50.0, "Carol's recorded audio is silence ({mean} dB)");
    app.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_meeting_scheduled_for_tomorrow_is_upcoming_then_started_early_and_joined() {
    let app = TestApp::spawn(Backend::Sqlite).await;
    run_browser_script(&app, "schedule.mjs", "schedule").await;
    app.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_admin_watches_a_call_on_the_dashboard() {
    // With the other walks, alone: the figures it checks are the whole process's.
    let app = TestApp::spawn(Backend::Sqlite).await;
    let _admin = app.signed_in("Olga").await;
    let (ok, _, err) = crate::ops::floo_admin(&app, &["grant", "--identity", "dev:olga"]);
    assert!(ok, "{err}");
    // A call of two (Rust clients): Alice sends her camera to Bob all along.
    let (clients, meeting) = crate::media::meeting(&app, &["Alice", "Bob"]).await;
    let mut alice = crate::media::join(&app, &clients[0], &meeting).await;
    let mut bob = crate::media::join(&app, &clients[1], &meeting).await;
    alice.announce_camera_and_microphone(0).await;
    crate::media::subscribe_to_others(&mut bob, 2).await;
    let call = tokio::spawn(async move {
        for sequence in 0.. {
            alice.publish_group(1, sequence, &crate::media::frames(10)).await;
            let _ = bob.receive_group().await;
            tokio::time::sleep(std::time::Duration::from_millis(300)).await;
        }
    });
    run_browser_script(&app, "dashboard.mjs", "dashboard").await;
    call.abort();
    app.finish().await;
}
