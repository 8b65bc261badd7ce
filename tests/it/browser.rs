//! End to end in real headless Chromium (Debian's), driven by playwright-core scripts in
//! `tests/e2e/`. Screenshots land in `tests/e2e/artifacts/<test>/`.

use std::path::Path;
use std::process::Stdio;

use crate::support::{Backend, TestApp};

/// Browser walks run one at a time: each drives several Chromium contexts encoding video,
/// which two cores cannot do twice over and still meet the walks' one-second checks.
static ONE_BROWSER_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// Runs `tests/e2e/<script>` against `app`; fails with the script's output if it fails.
pub async fn run_browser_script(app: &TestApp, script: &str, artifact_dir: &str) {
    let _turn = ONE_BROWSER_AT_A_TIME.lock().await;
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let e2e = root.join("tests/e2e");
    assert!(
        e2e.join("node_modules/playwright-core").is_dir(),
        "browser tests need `npm ci --prefix tests/e2e` (ops/test does it)"
    );
    let chromium = std::env::var("FLOO_CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".into());
    assert!(Path::new(&chromium).exists(), "browser tests need Chromium at {chromium} (ops/test installs it)");
    let artifacts = e2e.join("artifacts").join(artifact_dir);
    let output = tokio::process::Command::new("node")
        .arg(e2e.join(script))
        .arg(&app.base)
        .arg(&artifacts)
        .env("FLOO_CHROMIUM", &chromium)
        .stdin(Stdio::null())
        .output()
        .await
        .expect("node runs (ops/test installs it)");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{script} failed ({}):\n{stdout}\n{stderr}", output.status);
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
async fn two_people_record_a_call_and_get_a_playable_file_each() {
    let app = TestApp::spawn(Backend::Sqlite).await;
    run_browser_script(&app, "record.mjs", "record").await;
    let dir = app.data_dir.join("recordings").join("1");
    let files: Vec<_> =
        std::fs::read_dir(&dir).expect("recording directory").filter_map(Result::ok).map(|e| e.path()).collect();
    assert_eq!(files.len(), 2, "one file per participant: {files:?}");
    for file in files {
        let (codecs, duration) = crate::recording::probe(&file);
        assert_eq!(codecs, vec!["vp8", "opus"], "{}", file.display());
        assert!((duration - 5.0).abs() < 1.0, "{} lasts {duration} s of about 5", file.display());
    }
    app.finish().await;
}
