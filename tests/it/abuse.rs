//! What one member or a visitor could once do to slow or fool everyone else (issue
//! "Hardening the new features"), each with the test that failed before its fix: a
//! search planned row by row, searches without limit or end, metric labels anyone could
//! invent, edits without a rate, a locked topic its author still edited, control
//! characters in calendars, and highlights a user could fake.

use reqwest::StatusCode;
use sqlx::Connection;

use crate::on_both_backends;
use crate::support::{Backend, Client, TestApp};

/// A team of Alice's with one topic; returns (team id, the topic's path).
async fn team_with_a_topic(alice: &Client, name: &str) -> (String, String) {
    let team = alice.post_form("/teams", &[("name", name)]).await.url;
    let t = team.split("/teams/").nth(1).expect("team id").to_owned();
    let topic = alice.post_form(&format!("/teams/{t}/forum"), &[("title", "Notes"), ("body", "Words.")]).await;
    (t, topic.url.trim_start_matches(&alice.base).to_owned())
}

/// Writes `count` messages holding `word` into topic `topic_id` straight into the database
/// (in the app's own schema, so its full-text index follows through its triggers).
async fn many_messages(app: &TestApp, topic_id: i64, author_id: i64, word: &str, count: usize) {
    sqlx::any::install_default_drivers();
    let mut db = sqlx::AnyConnection::connect(&app.db_url()).await.expect("the app's database");
    let (max_seq,): (i64,) = sqlx::query_as("SELECT COALESCE(MAX(seq), 0) FROM messages WHERE topic_id = $1")
        .bind(topic_id)
        .fetch_one(&mut db)
        .await
        .expect("seq");
    let mut seq = max_seq;
    for chunk in (0..count).collect::<Vec<_>>().chunks(500) {
        let mut sql = String::from("INSERT INTO messages (topic_id, seq, author_id, body, created_at, event) VALUES ");
        for (k, i) in chunk.iter().enumerate() {
            seq += 1;
            let sep = if k == 0 { "" } else { ", " };
            sql.push_str(&format!(
                "{sep}({topic_id}, {seq}, {author_id}, 'note {i} about the {word} and more', 0, {seq})"
            ));
        }
        sqlx::query(sqlx::AssertSqlSafe(sql)).execute(&mut db).await.expect("insert messages");
    }
}

/// The id in `/teams/T/topics/ID`.
fn topic_id(path: &str) -> i64 {
    path.rsplit('/').next().and_then(|id| id.parse().ok()).expect("topic id")
}

async fn user_id(app: &TestApp, name: &str) -> i64 {
    sqlx::any::install_default_drivers();
    let mut db = sqlx::AnyConnection::connect(&app.db_url()).await.expect("the app's database");
    let (id,): (i64,) = sqlx::query_as("SELECT id FROM users WHERE display_name = $1")
        .bind(name)
        .fetch_one(&mut db)
        .await
        .expect("user");
    id
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn searches_start_from_the_full_text_index_on_the_sqlite_floo_ships_with() {
    // The SQLite that sqlx bundles planned both searches from the team's rows, running
    // the full-text match once per row: a team with 3,000 matches took 0.6 s a search.
    let app = TestApp::spawn(Backend::Sqlite).await;
    let store = floo::store::Store::connect(&app.db_url(), 1).await.expect("store");
    let plans = store.search_plans().await.expect("plans");
    assert_eq!(plans.len(), 4, "{plans:?}");
    for plan in &plans {
        // The index is read first (the scores; or the few ids found, then each by its
        // rowid), and a table's rows are only ever looked up by their key.
        let first = plan.split(" | ").find(|step| step.starts_with("SCAN") || step.starts_with("SEARCH"));
        assert!(
            first.is_some_and(|step| step.contains("_fts VIRTUAL TABLE") || step.contains("json_each VIRTUAL TABLE")),
            "the plan starts from the index: {plan}"
        );
        for step in
            plan.split(" | ").filter(|step| step.contains(" t ") || step.contains(" m ") || step.contains(" u "))
        {
            assert!(step.contains("INTEGER PRIMARY KEY"), "a table is read by its key only: {step} in {plan}");
        }
        assert!(!plan.contains("topics_team_activity_idx"), "no walk through the team's rows: {plan}");
    }
    store.close().await;
    app.finish().await;
}

on_both_backends!(
    one_member_searching_without_pause_is_slowed_down_and_nobody_else,
    a_search_that_runs_too_long_is_stopped_and_the_team_pages_go_on,
    topic_and_plan_edits_have_a_rate,
    a_locked_topic_is_edited_by_nobody_but_an_admin,
    calendars_carry_no_control_characters,
    text_a_user_wrote_cannot_pass_for_a_search_match,
);

async fn one_member_searching_without_pause_is_slowed_down_and_nobody_else(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let alice = app.signed_in("Alice").await;
    let bob = app.signed_in("Bob").await;
    let (t, _) = team_with_a_topic(&alice, "Searchers").await;
    let code = alice.get(&format!("/teams/{t}/invite")).await.between("id=\"invite-code\">", "<");
    bob.post_form("/join", &[("code", &code)]).await.expect_ok_with("Searchers");
    for i in 0..20 {
        let page = alice.get(&format!("/teams/{t}/search?q=words{i}")).await;
        assert_eq!(page.status, StatusCode::OK, "search {i}: {}", page.body);
    }
    let refused = alice.get(&format!("/teams/{t}/search?q=words")).await;
    assert_eq!(refused.status, StatusCode::TOO_MANY_REQUESTS);
    assert!(refused.body.contains("searching faster than this server allows"), "{}", refused.body);
    // Another member searches as before; an empty search form costs nothing.
    bob.get(&format!("/teams/{t}/search?q=words")).await.expect_ok_with("Topics (1)");
    alice.get(&format!("/teams/{t}/search")).await.expect_ok_with("Type one or more words");
    app.finish().await;
}

async fn a_search_that_runs_too_long_is_stopped_and_the_team_pages_go_on(backend: Backend) {
    // A time limit of a millisecond, and a word in 30,000 messages: ranking them takes longer.
    let app = TestApp::spawn_with(backend, &["--search-time-limit-ms", "1"]).await;
    let alice = app.signed_in("Alice").await;
    let (t, topic) = team_with_a_topic(&alice, "Archive").await;
    let alice_id = user_id(&app, "Alice").await;
    many_messages(&app, topic_id(&topic), alice_id, "harvest", 30_000).await;
    let stopped = alice.get(&format!("/teams/{t}/search?q=harvest")).await;
    assert_eq!(stopped.status, StatusCode::SERVICE_UNAVAILABLE, "{}", stopped.body);
    assert!(stopped.body.contains("took too long and was stopped"), "{}", stopped.body);
    // The search's connection is free again, and the rest of Floo never waited for it.
    alice.get(&format!("/teams/{t}/forum")).await.expect_ok_with("Notes");
    let again = alice.get(&format!("/teams/{t}/search?q=harvest")).await;
    assert_eq!(again.status, StatusCode::SERVICE_UNAVAILABLE);
    app.finish().await;
}

async fn topic_and_plan_edits_have_a_rate(backend: Backend) {
    // Sixty edits of one topic once went through in 0.08 s, each pushed to every reader.
    let app = TestApp::spawn(backend).await;
    let alice = app.signed_in("Alice").await;
    let (t, topic) = team_with_a_topic(&alice, "Editors").await;
    let mut refused = None;
    for i in 0..40 {
        let title = format!("Notes, take {i}");
        let page = alice.post_form(&topic, &[("title", &title), ("body", "Words.")]).await;
        if page.status == StatusCode::TOO_MANY_REQUESTS {
            refused = Some((i, page.body));
            break;
        }
        assert_eq!(page.status, StatusCode::OK, "edit {i}: {}", page.body);
    }
    let (at, body) = refused.expect("edits are limited");
    assert_eq!(at, 30, "a burst of 30 (the default of --actions-per-minute), then no more");
    assert!(body.contains("making changes faster than this server allows"), "{body}");
    // The same allowance covers changes to scheduled meetings.
    let plan = alice
        .post_form(
            &format!("/teams/{t}/schedule"),
            &[
                ("title", "Planning"),
                ("date", "2031-03-20"),
                ("time", "10:00"),
                ("time_zone", "UTC"),
                ("duration", "30"),
                ("description", ""),
            ],
        )
        .await;
    assert_eq!(plan.status, StatusCode::OK, "{}", plan.body);
    let path = plan.url.trim_start_matches(&alice.base).to_owned();
    let edit = alice
        .post_form(
            &path,
            &[
                ("title", "Planning again"),
                ("date", "2031-03-20"),
                ("time", "11:00"),
                ("time_zone", "UTC"),
                ("duration", "30"),
                ("description", ""),
            ],
        )
        .await;
    assert_eq!(edit.status, StatusCode::TOO_MANY_REQUESTS, "{}", edit.body);
    // Someone else is not affected.
    let bob = app.signed_in("Bob").await;
    let (_, bobs) = team_with_a_topic(&bob, "Bob's").await;
    bob.post_form(&bobs, &[("title", "Bob's notes"), ("body", "Words.")]).await.expect_ok_with("Bob's notes");
    app.finish().await;
}

async fn a_locked_topic_is_edited_by_nobody_but_an_admin(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let alice = app.signed_in("Alice").await;
    let bob = app.signed_in("Bob").await;
    let (t, _) = team_with_a_topic(&alice, "Lockers").await;
    let code = alice.get(&format!("/teams/{t}/invite")).await.between("id=\"invite-code\">", "<");
    bob.post_form("/join", &[("code", &code)]).await.expect_ok_with("Lockers");
    let bobs = bob.post_form(&format!("/teams/{t}/forum"), &[("title", "Bob's idea"), ("body", "Draft")]).await;
    let bobs = bobs.url.trim_start_matches(&bob.base).to_owned();
    alice.post_form(&format!("{bobs}/lock"), &[]).await.expect_ok_with("locked");
    let page = bob.get(&bobs).await;
    assert!(!page.body.contains(&format!("{bobs}/edit\"")), "no Edit button on a locked topic: {}", page.body);
    assert_eq!(bob.get(&format!("{bobs}/edit")).await.status, StatusCode::CONFLICT);
    let edit = bob.post_form(&bobs, &[("title", "Bob's idea, changed"), ("body", "Changed")]).await;
    assert_eq!(edit.status, StatusCode::CONFLICT, "{}", edit.body);
    assert!(edit.body.contains("locked"), "{}", edit.body);
    bob.get(&bobs).await.expect_ok_with("Draft");
    // An admin who wrote a topic still edits it when it is locked.
    let alices = alice.post_form(&format!("/teams/{t}/forum"), &[("title", "Rules"), ("body", "One")]).await;
    let alices = alices.url.trim_start_matches(&alice.base).to_owned();
    alice.post_form(&format!("{alices}/lock"), &[]).await.expect_ok_with("locked");
    alice.post_form(&alices, &[("title", "Rules"), ("body", "Two")]).await.expect_ok_with("Two");
    app.finish().await;
}

async fn calendars_carry_no_control_characters(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let alice = app.signed_in("Alice").await;
    let (t, _) = team_with_a_topic(&alice, "Planners").await;
    let title = "Sync\rATTENDEE:mallory@example.com\u{1b}[1m\u{b}\u{c}";
    let plan = alice
        .post_form(
            &format!("/teams/{t}/schedule"),
            &[
                ("title", title),
                ("date", "2031-03-20"),
                ("time", "10:00"),
                ("time_zone", "UTC"),
                ("duration", "30"),
                ("description", "Agenda\rEND:VEVENT\u{0}\u{1b}"),
            ],
        )
        .await;
    assert_eq!(plan.status, StatusCode::OK, "{}", plan.body);
    let ics = alice.get(&format!("{}/event.ics", plan.url.trim_start_matches(&alice.base))).await;
    assert_eq!(ics.status, StatusCode::OK);
    // Every line ends with CRLF and no line holds a control character but a tab.
    for line in ics.body.split("\r\n") {
        assert!(!line.chars().any(|c| c.is_control() && c != '\t'), "a control character in {line:?}");
        assert!(!line.starts_with("ATTENDEE") && line != "END:VEVENT\\n", "{line:?}");
    }
    assert_eq!(ics.body.split("\r\n").filter(|line| *line == "END:VEVENT").count(), 1, "{}", ics.body);
    assert!(ics.body.contains("SUMMARY:Sync\\nATTENDEE:mallory@example.com[1m"), "{}", ics.body);
    app.finish().await;
}

async fn text_a_user_wrote_cannot_pass_for_a_search_match(backend: Backend) {
    // The engine's marks were two private-use characters anyone could type.
    let app = TestApp::spawn(backend).await;
    let alice = app.signed_in("Alice").await;
    let (t, topic) = team_with_a_topic(&alice, "Markers").await;
    alice
        .post_form(&format!("{topic}/messages"), &[("body", "budget \u{E000}approved\u{E001} by everyone")])
        .await
        .expect_ok_with("by everyone");
    let found = alice.get(&format!("/teams/{t}/search?q=budget")).await;
    found.expect_ok_with("<mark>budget</mark>");
    assert!(!found.body.contains("<mark>approved</mark>"), "a faked highlight: {}", found.body);
    assert_eq!(found.body.matches("<mark>").count(), 1, "{}", found.body);
    app.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn made_up_methods_add_no_metric_series() {
    // Five signed-out requests with 60 KB methods once grew /metrics from 191 KB to 1.69 MB.
    let app = TestApp::spawn(Backend::Sqlite).await;
    let metrics = || async {
        reqwest::get(format!("http://{}/metrics", app.metrics_addr)).await.expect("scrape").text().await.expect("text")
    };
    let http = reqwest::Client::new();
    http.get(format!("{}/healthz", app.base)).send().await.expect("healthz");
    let before = metrics().await;
    for i in 0..5 {
        let method = reqwest::Method::from_bytes(format!("YY{i}{}", "B".repeat(60_000)).as_bytes()).expect("method");
        let answer = http.request(method, format!("{}/healthz", app.base)).send().await.expect("odd method");
        assert!(answer.status().is_client_error(), "{}", answer.status());
    }
    let after = metrics().await;
    assert!(!after.contains("YY0B"), "a made-up method became a label");
    assert!(after.contains("method=\"other\""), "odd methods are counted as other");
    assert!(after.len() < before.len() + 4_000, "grew from {} to {} bytes", before.len(), after.len());
    app.finish().await;
}
