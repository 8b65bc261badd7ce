//! `floo backup` while Floo runs (a chat being written, a recording under way) and
//! `floo restore` into a fresh data directory: every row and every recording file comes
//! back, and a Floo started on it serves it. A restore refuses a non-empty target, a
//! tampered backup and one made by a newer Floo; a database from a newer Floo is refused
//! at start.

use std::path::{Path, PathBuf};
use std::process::Command;

use sqlx::Connection as _;

use crate::media::{floo_process_with, join, meeting, publish_paced, source_packets};
use crate::support::{Backend, Client, TestApp, create_postgres_database};

/// Runs `floo ARGS`; returns (success, stdout, stderr).
fn floo(args: &[&str]) -> (bool, String, String) {
    let output = Command::new(env!("CARGO_BIN_EXE_floo")).args(args).output().expect("floo runs");
    let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
    (output.status.success(), text(&output.stdout), text(&output.stderr))
}

fn as_strs(v: &[String]) -> Vec<&str> {
    v.iter().map(String::as_str).collect()
}

/// `--data-dir D [--database-url U]`.
fn location(data_dir: &Path, database_url: Option<&str>) -> Vec<String> {
    let mut args = vec!["--data-dir".to_owned(), data_dir.display().to_string()];
    if let Some(url) = database_url {
        args.extend(["--database-url".to_owned(), url.to_owned()]);
    }
    args
}

/// The ids of every row that matters, table by table.
async fn rows(url: &str) -> Vec<(String, Vec<i64>)> {
    sqlx::any::install_default_drivers();
    let mut db = sqlx::AnyConnection::connect(url).await.expect("the database");
    let mut out = Vec::new();
    for (table, key) in [
        ("users", "id"),
        ("teams", "id"),
        ("memberships", "team_id * 1000000 + user_id"),
        ("topics", "id"),
        ("messages", "id"),
        ("meetings", "id"),
        ("attendance", "id"),
        ("recordings", "id"),
        ("scheduled_meetings", "id"),
    ] {
        let ids: Vec<(i64,)> = sqlx::query_as(sqlx::AssertSqlSafe(format!("SELECT {key} FROM {table} ORDER BY 1")))
            .fetch_all(&mut db)
            .await
            .unwrap_or_else(|e| panic!("{table}: {e}"));
        out.push((table.to_owned(), ids.into_iter().map(|(id,)| id).collect()));
    }
    out
}

fn webm_files(dir: &Path) -> Vec<PathBuf> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let path = entry.path();
        if path.is_dir() {
            found.extend(webm_files(&path));
        } else if path.extension().is_some_and(|e| e == "webm") {
            found.push(path);
        }
    }
    found.sort();
    found
}

crate::on_both_backends!(a_backup_taken_while_people_write_and_record_restores_every_row_and_file);

async fn a_backup_taken_while_people_write_and_record_restores_every_row_and_file(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let (clients, meeting_path) = meeting(&app, &["Alice", "Bob"]).await;
    let team = meeting_path.split('/').nth(2).expect("team id").to_owned();
    let page = clients[0].get(&meeting_path).await;
    let topic = page.between(&format!("/teams/{team}/topics/"), "/");
    let chat = format!("/teams/{team}/topics/{topic}/messages");
    for i in 0..5 {
        clients[1].post_form(&chat, &[("body", &format!("before the backup {i}"))]).await;
    }
    let planned =
        [("title", "Planning"), ("date", "2030-01-07"), ("time", "10:00"), ("time_zone", "UTC"), ("duration", "30")];
    clients[0].post_form(&format!("/teams/{team}/schedule"), &planned).await.expect_ok_with("30 minutes");
    let mut alice = join(&app, &clients[0], &meeting_path).await;
    alice.announce_camera_and_microphone(1).await;
    clients[0].post_form(&format!("{meeting_path}/recordings"), &[]).await.expect_ok_with("Stop recording");
    let scratch = crate::recording::scratch();
    let packets = source_packets(&crate::recording::source(&scratch));
    let before = rows(&app.db_url()).await;

    // Chat keeps being written and the recording keeps going while the backup runs.
    let writing = {
        let bob = Client { base: clients[1].base.clone(), http: clients[1].http.clone() };
        let chat = chat.clone();
        tokio::spawn(async move {
            for i in 0..40 {
                bob.post_form(&chat, &[("body", &format!("during the backup {i}"))]).await;
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
            }
        })
    };
    let backup_dir = scratch.join("backup");
    let backup_args: Vec<String> = ["backup".to_owned(), backup_dir.display().to_string()]
        .into_iter()
        .chain(location(&app.data_dir, app.database_url.as_deref()))
        .collect();
    // A second and a half of media reaches the recording's file first.
    publish_paced(&alice, &packets, 1.5).await;
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    let (ok, out, err) = tokio::task::spawn_blocking(move || floo(&as_strs(&backup_args))).await.expect("backup");
    assert!(ok, "floo backup: {err}");
    assert!(out.contains("Backed up into"), "{out}");
    assert!(err.contains("backup complete"), "a progress line: {err}");
    writing.await.expect("chat");
    clients[0].post_form(&format!("{meeting_path}/recordings/stop"), &[]).await.expect_ok_with("Alice's tracks");

    // Restore into a new place, as a new machine would have it.
    let restored_dir = scratch.join("restored");
    let restored_db = match backend {
        Backend::Sqlite => None,
        Backend::Postgres => Some(create_postgres_database().await.0),
    };
    let restore_args: Vec<String> = ["restore".to_owned(), backup_dir.display().to_string()]
        .into_iter()
        .chain(location(&restored_dir, restored_db.as_deref()))
        .collect();
    let (ok, out, err) = floo(&as_strs(&restore_args));
    assert!(ok, "floo restore: {err}");
    assert!(out.contains("Restored the backup"), "{out}");

    // Every row there before the backup began is there; the chat is a consistent snapshot
    // (what was written during the backup is there up to some point, nothing after it).
    let restored_url = restored_db
        .clone()
        .unwrap_or_else(|| format!("sqlite://{}?mode=rw", restored_dir.join(floo::config::SQLITE_FILE).display()));
    let after = rows(&restored_url).await;
    for ((table, was), (_, now)) in before.iter().zip(&after) {
        for id in was {
            assert!(now.contains(id), "{table} row {id} is restored");
        }
    }
    let messages = &after.iter().find(|(t, _)| t == "messages").expect("messages").1;
    let all_ids = &rows(&app.db_url()).await.iter().find(|(t, _)| t == "messages").expect("messages").1.clone();
    assert_eq!(messages.as_slice(), &all_ids[..messages.len()], "the chat is a prefix of what was written");
    // The recording under way: its file so far is there and plays.
    let files = webm_files(&restored_dir.join("recordings"));
    assert!(!files.is_empty(), "the recording's file is restored");
    for file in &files {
        // Still being written when copied: no duration in its header yet, but its packets
        // read back as far as it went.
        let (codecs, _) = crate::recording::probe(file);
        assert!(codecs.contains(&"vp8".to_owned()), "{}: {codecs:?}", file.display());
        let packets = source_packets(file);
        assert!(packets.iter().filter(|p| p.0).count() > 10, "{} holds {} packets", file.display(), packets.len());
    }

    // A Floo started on the restored data serves it.
    let mut extra = vec!["--metrics-addr", "127.0.0.1:0"];
    if let Some(url) = &restored_db {
        extra.extend(["--database-url", url.as_str()]);
    }
    let (mut server, base) = floo_process_with(&restored_dir, &extra).await;
    let alice_again = Client::new(&base);
    alice_again.post_form("/login/dev", &[("name", "Alice")]).await.expect_ok_with("Hello, Alice");
    alice_again.get(&format!("/teams/{team}/topics/{topic}")).await.expect_ok_with("before the backup 4");
    let _ = server.kill().await;

    // Refused: a target that is not empty, a tampered backup, one from a newer Floo.
    let (ok, _, err) = floo(&as_strs(&restore_args));
    assert!(!ok && err.contains("is not empty"), "a non-empty target is refused: {err}");
    let tampered = scratch.join("tampered");
    copy_dir(&backup_dir, &tampered);
    let victim = webm_files(&tampered.join("recordings")).remove(0);
    let mut bytes = std::fs::read(&victim).expect("read");
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0xff;
    std::fs::write(&victim, bytes).expect("write");
    let elsewhere = scratch.join("elsewhere");
    let other_db = match backend {
        Backend::Sqlite => None,
        Backend::Postgres => Some(create_postgres_database().await.0),
    };
    let mut args = vec!["restore".to_owned(), tampered.display().to_string()];
    args.extend(location(&elsewhere, other_db.as_deref()));
    let (ok, _, err) = floo(&as_strs(&args));
    assert!(!ok && err.contains("damaged") && err.contains("checksum"), "a tampered backup is refused: {err}");
    assert!(!elsewhere.exists(), "nothing was written");
    let manifest = tampered.join(floo::backup::MANIFEST);
    let json = std::fs::read_to_string(&manifest).expect("manifest");
    let newer = json.replacen("\"schema_version\": ", "\"schema_version\": 99", 1);
    std::fs::write(&manifest, newer).expect("write");
    let (ok, _, err) = floo(&as_strs(&args));
    assert!(!ok && err.contains("newer Floo"), "a backup from a newer Floo is refused: {err}");
    let _ = std::fs::remove_dir_all(&scratch);
    app.finish().await;
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).expect("dir");
    for entry in std::fs::read_dir(from).expect("read dir").flatten() {
        let target = to.join(entry.file_name());
        if entry.path().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), &target).expect("copy");
        }
    }
}

crate::on_both_backends!(a_database_from_a_newer_floo_is_refused_at_start_and_left_as_it_was);

async fn a_database_from_a_newer_floo_is_refused_at_start_and_left_as_it_was(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    app.signed_in("Alice").await;
    let url = app.db_url();
    let data_dir = app.data_dir.clone();
    let database_url = app.database_url.clone();
    sqlx::any::install_default_drivers();
    let mut db = sqlx::AnyConnection::connect(&url).await.expect("db");
    sqlx::query(
        "INSERT INTO _sqlx_migrations (version, description, success, checksum, execution_time) \
         VALUES (99001, 'from the future', TRUE, $1, 0)",
    )
    .bind(vec![0u8; 48])
    .execute(&mut db)
    .await
    .expect("a migration from the future");
    let mut args = vec!["admin".to_owned(), "list".to_owned()];
    args.extend(location(&data_dir, database_url.as_deref()));
    let (ok, _, err) = floo(&args.iter().map(String::as_str).collect::<Vec<_>>());
    assert!(!ok && err.contains("written by a newer Floo") && err.contains("99001"), "refused: {err}");
    let (users,): (i64,) = sqlx::query_as("SELECT count(*) FROM users").fetch_one(&mut db).await.expect("users");
    assert_eq!(users, 1, "nothing was touched");
    drop(db);
    app.finish().await;
}

/// Unmounts a filesystem made for a test, whatever happens to the test.
struct Mounted(PathBuf);

impl Drop for Mounted {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("--lazy").arg(&self.0).status();
    }
}

/// The recordings directory on a filesystem of 1 MiB that is nearly full: the recording
/// under way stops with "disk full" in the call's chat and on the meeting page, its file
/// so far is kept and plays, and the call, the chat and the pages go on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_recordings_disk_stops_the_recording_with_a_message_and_harms_nothing_else() {
    use floo::media::wire::{ClientMessage, ServerMessage};
    let scratch = crate::recording::scratch();
    let small = scratch.join("small");
    std::fs::create_dir_all(&small).expect("dir");
    let mounted = Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=1m,mode=0700", "tmpfs"])
        .arg(&small)
        .status()
        .expect("mount runs");
    assert!(mounted.success(), "a 1 MiB tmpfs for the recordings (the tests run as root under ops/test)");
    let _mounted = Mounted(small.clone());
    let app = TestApp::spawn_with(Backend::Sqlite, &["--recordings-dir", &small.display().to_string()]).await;
    let (clients, meeting_path) = meeting(&app, &["Alice", "Bob"]).await;
    let mut alice = join(&app, &clients[0], &meeting_path).await;
    alice.announce_camera_and_microphone(1).await;
    let packets = source_packets(&crate::recording::source(&scratch));
    // All but about 60 kB taken: a second or two of the call fills it.
    let filler = small.join("filler");
    std::fs::write(&filler, vec![0u8; 1024 * 1024 - 60 * 1024]).expect("filler");
    clients[0].post_form(&format!("{meeting_path}/recordings"), &[]).await.expect_ok_with("Stop recording");
    alice.wait_for(|m| matches!(m, ServerMessage::Recording { on: true })).await;
    publish_paced(&alice, &packets, 4.0).await;
    alice.wait_for(|m| matches!(m, ServerMessage::Recording { on: false })).await;

    // The meeting page says why, and keeps what was written.
    let mut page = clients[1].get(&meeting_path).await;
    for _ in 0..50 {
        if page.body.contains("the disk for recordings is full") {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        page = clients[1].get(&meeting_path).await;
    }
    page.expect_ok_with(
        "The recording stopped: the disk for recordings is full. What was recorded until then is kept.",
    )
    .expect_ok_with("rec-failed")
    .expect_ok_with("Alice's tracks (WebM)");
    let team = meeting_path.split('/').nth(2).expect("team");
    let file_id = page.between("/recording-files/", "\"");
    let download =
        clients[1].http.get(clients[1].url(&format!("/teams/{team}/recording-files/{file_id}"))).send().await;
    let bytes = download.expect("download").bytes().await.expect("body");
    let kept = scratch.join("kept.webm");
    std::fs::write(&kept, &bytes).expect("write");
    assert!(source_packets(&kept).iter().filter(|p| p.0).count() > 5, "the file so far plays");
    // The chat says it, in the call and on the forum.
    let topic = page.between(&format!("/teams/{team}/topics/"), "/");
    let chat = format!("/teams/{team}/topics/{topic}");
    clients[1].get(&chat).await.expect_ok_with("The recording stopped: the disk for recordings is full");
    // Nothing else broke: the call answers, people write, pages load.
    alice.send(&ClientMessage::Ping { nonce: 7 }).await;
    alice.wait_for(|m| matches!(m, ServerMessage::Pong { nonce: 7 })).await;
    clients[1].post_form(&format!("{chat}/messages"), &[("body", "still here")]).await.expect_ok_with("still here");
    clients[0].get(&format!("/teams/{team}")).await.expect_ok_with("Media");
    drop(alice);
    app.finish().await;
    let _ = std::fs::remove_dir_all(&scratch);
}
