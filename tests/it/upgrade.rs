//! Upgrades keep every row: databases written by earlier Floos are kept under
//! `tests/fixtures/schema-N/` (a SQLite file, a PostgreSQL dump, and how many rows each
//! table held), and every later Floo must open them, migrate them and find every row.
//! A fixture is never edited: a new one is added (by `make_schema_fixture`, below) when
//! the schema changes, and the old ones stay.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use floo::media::wire::{ClientMessage, Moderation};
use sqlx::Connection as _;

use crate::media::{floo_process_with, join, meeting, publish_paced, source_packets};
use crate::support::{Backend, Client, TestApp, create_postgres_database};

/// The tables whose rows a fixture counts (all but `oauth_logins`, sign-ins under way,
/// which last minutes).
const TABLES: [&str; 13] = [
    "users",
    "teams",
    "memberships",
    "topics",
    "messages",
    "meetings",
    "attendance",
    "recordings",
    "recording_files",
    "media_secret",
    "scheduled_meetings",
    "topic_reads",
    "meeting_access",
];

fn fixtures() -> Vec<PathBuf> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures");
    let mut found: Vec<PathBuf> = std::fs::read_dir(&root)
        .expect("tests/fixtures")
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.file_name().and_then(|n| n.to_str()).is_some_and(|n| n.starts_with("schema-")))
        .collect();
    found.sort();
    assert!(!found.is_empty(), "at least one schema fixture");
    found
}

async fn counts(url: &str) -> BTreeMap<String, i64> {
    sqlx::any::install_default_drivers();
    let mut db = sqlx::AnyConnection::connect(url).await.expect("the database");
    let mut out = BTreeMap::new();
    for table in TABLES {
        let (n,): (i64,) = sqlx::query_as(sqlx::AssertSqlSafe(format!("SELECT count(*) FROM {table}")))
            .fetch_one(&mut db)
            .await
            .unwrap_or_else(|e| panic!("{table}: {e}"));
        out.insert(table.to_owned(), n);
    }
    out
}

crate::on_both_backends!(every_earlier_floos_database_upgrades_with_every_row);

async fn every_earlier_floos_database_upgrades_with_every_row(backend: Backend) {
    for fixture in fixtures() {
        let expected: BTreeMap<String, i64> =
            serde_json::from_slice(&std::fs::read(fixture.join("rows.json")).expect("rows.json")).expect("json");
        let data_dir = crate::recording::scratch();
        let (url, extra) = match backend {
            Backend::Sqlite => {
                std::fs::copy(fixture.join("floo.db"), data_dir.join(floo::config::SQLITE_FILE)).expect("copy");
                (format!("sqlite://{}?mode=rw", data_dir.join(floo::config::SQLITE_FILE).display()), None)
            }
            Backend::Postgres => {
                let (url, _) = create_postgres_database().await;
                let loaded = std::process::Command::new("psql")
                    .args(["--quiet", "--set", "ON_ERROR_STOP=1", "--file"])
                    .arg(fixture.join("floo.sql"))
                    .arg(&url)
                    .output()
                    .expect("psql runs (PostgreSQL's client programs)");
                assert!(loaded.status.success(), "{}", String::from_utf8_lossy(&loaded.stderr));
                (url.clone(), Some(url))
            }
        };
        // Floo opens it, migrating to this version's schema.
        let store = floo::store::Store::connect(&url, 2).await.unwrap_or_else(|e| panic!("{}: {e}", fixture.display()));
        drop(store);
        let now = counts(&url).await;
        for (table, rows) in &expected {
            assert_eq!(now.get(table), Some(rows), "{}: {table} keeps its rows", fixture.display());
        }
        // And serves it: Alice signs in and finds her team's forum.
        let mut args = vec!["--metrics-addr", "127.0.0.1:0"];
        if let Some(url) = &extra {
            args.extend(["--database-url", url.as_str()]);
        }
        let (mut server, base) = floo_process_with(&data_dir, &args).await;
        let alice = Client::new(&base);
        alice.post_form("/login/dev", &[("name", "Alice")]).await.expect_ok_with("Hello, Alice");
        alice.get("/teams/1/forum").await.expect_ok_with("Fixture topic");
        let _ = server.kill().await;
        let _ = std::fs::remove_dir_all(&data_dir);
    }
}

/// Writes a new fixture of this Floo's schema into `tests/fixtures/schema-N/` (N the
/// latest migration), refusing to overwrite one: run it when a migration is added, and
/// commit the new directory. `cargo test --test it -- --ignored make_schema_fixture`
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore]
async fn make_schema_fixture() {
    let version = floo::store::latest_schema_version(false);
    assert_eq!(version, floo::store::latest_schema_version(true), "both backends at the same version");
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join(format!("tests/fixtures/schema-{version}"));
    assert!(!dir.exists(), "{} exists: fixtures are added, never rewritten", dir.display());
    let mut rows = None;
    for backend in [Backend::Sqlite, Backend::Postgres] {
        let (app, provider) = crate::oauth::spawn_with_provider_and(backend, &["--allow-dev-login"]).await;
        // Someone who signs in through an identity provider, for `oauth_logins`.
        provider.set_next(crate::oauth::grace());
        app.client().post_form("/auth/oidc/start", &[("next", "/")]).await.expect_ok_with("Hello, Grace Hopper");
        populate(&app).await;
        let url = app.db_url();
        let these = counts(&url).await;
        assert!(these.values().all(|n| *n > 0), "every table holds something: {these:?}");
        std::fs::create_dir_all(&dir).expect("dir");
        match backend {
            Backend::Sqlite => {
                sqlx::any::install_default_drivers();
                let mut db = sqlx::AnyConnection::connect(&url).await.expect("db");
                let target = dir.join("floo.db");
                sqlx::query("VACUUM INTO $1").bind(target.display().to_string()).execute(&mut db).await.expect("copy");
                rows = Some(these);
            }
            Backend::Postgres => {
                let dumped = std::process::Command::new("pg_dump")
                    .args(["--format=plain", "--no-owner", "--no-privileges", "--file"])
                    .arg(dir.join("floo.sql"))
                    .arg(&url)
                    .status()
                    .expect("pg_dump");
                assert!(dumped.success());
                assert_eq!(Some(&these), rows.as_ref(), "both backends hold the same rows");
            }
        }
        app.finish().await;
    }
    let json = serde_json::to_string_pretty(&rows.expect("rows")).expect("json");
    std::fs::write(dir.join("rows.json"), json + "\n").expect("rows.json");
}

/// Something in every table: a team of three with a forum topic and replies, a meeting
/// with a call, its chat, a recording and its files, a scheduled meeting, an admin.
async fn populate(app: &TestApp) {
    let (clients, meeting_path) = meeting(app, &["Alice", "Bob", "Carol"]).await;
    let team = meeting_path.split('/').nth(2).expect("team").to_owned();
    let topic = clients[0]
        .post_form(&format!("/teams/{team}/forum"), &[("title", "Fixture topic"), ("body", "Hello **all**")])
        .await;
    let topic = topic.url.trim_start_matches(&app.base).to_owned();
    for (i, client) in clients.iter().enumerate() {
        client.post_form(&format!("{topic}/messages"), &[("body", &format!("Reply {i}"))]).await;
        client.get(&topic).await; // read marks
    }
    let planned =
        [("title", "Planning"), ("date", "2030-01-07"), ("time", "10:00"), ("time_zone", "UTC"), ("duration", "30")];
    clients[0].post_form(&format!("/teams/{team}/schedule"), &planned).await.expect_ok_with("30 minutes");
    let mut alice = join(app, &clients[0], &meeting_path).await;
    // Carol joins and is removed by the host: an access row.
    let carol = join(app, &clients[2], &meeting_path).await;
    alice.send(&ClientMessage::Moderate { action: Moderation::Remove, participant: Some(carol.you) }).await;
    carol.close_code().await;
    alice.announce_camera_and_microphone(1).await;
    clients[0].post_form(&format!("{meeting_path}/recordings"), &[]).await.expect_ok_with("Stop recording");
    let scratch = crate::recording::scratch();
    publish_paced(&alice, &source_packets(&crate::recording::source(&scratch)), 1.5).await;
    clients[0].post_form(&format!("{meeting_path}/recordings/stop"), &[]).await.expect_ok_with("Alice's tracks");
    crate::media::composed(&clients[0], &meeting_path).await;
    let page = clients[0].get(&meeting_path).await;
    let chat = format!("/teams/{team}/topics/{}/messages", page.between(&format!("/teams/{team}/topics/"), "/"));
    clients[1].post_form(&chat, &[("body", "Said in the meeting")]).await;
    alice.leave();
    let (granted, _, err) = crate::ops::floo_admin(app, &["grant", "--identity", "dev:alice"]);
    assert!(granted, "{err}");
    let _ = std::fs::remove_dir_all(scratch);
}
