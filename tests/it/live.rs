//! Live meeting chat and live team pages over Server-Sent Events, on both backends.

use reqwest::StatusCode;

use crate::on_both_backends;
use crate::support::{Backend, Client, SseStream, TestApp};

on_both_backends!(
    chat_reaches_the_meeting_and_the_forum_live_and_outsiders_are_refused,
    a_reconnecting_reader_gets_exactly_the_messages_it_missed_in_order,
    a_removed_members_open_streams_are_closed,
    team_pages_follow_meetings_topics_and_presence_live,
    a_chat_message_alone_sends_nothing_to_readers_of_the_meeting_list,
    posting_too_fast_and_opening_too_many_streams_are_refused_with_a_message,
);

struct Team {
    id: String,
    alice: Client,
    bob: Client,
    carol: Client,
    eve: Client,
}

/// Alice owns a team; Bob and Carol are members; Eve is not.
async fn team_of_three(app: &TestApp) -> Team {
    let alice = app.signed_in("Alice").await;
    let bob = app.signed_in("Bob").await;
    let carol = app.signed_in("Carol").await;
    let eve = app.signed_in("Eve").await;
    let created = alice.post_form("/teams", &[("name", "Live team")]).await;
    let id = created.url.split("/teams/").nth(1).expect("team id").to_owned();
    let code = alice.get(&format!("/teams/{id}/invite")).await.between("id=\"invite-code\">", "<");
    bob.post_form("/join", &[("code", &code)]).await.expect_ok_with("Live team");
    carol.post_form("/join", &[("code", &code)]).await.expect_ok_with("Live team");
    Team { id, alice, bob, carol, eve }
}

/// Starts a meeting as `host`; returns (meeting path, its chat topic path).
async fn start_meeting(team: &Team, host: &Client, title: &str) -> (String, String) {
    let page = host.post_form(&format!("/teams/{}/meetings", team.id), &[("title", title)]).await;
    page.expect_ok_with(title);
    let meeting = page.url.trim_start_matches(&host.base).to_owned();
    let topic_id = page.between(&format!("/teams/{}/topics/", team.id), "/");
    let topic = format!("/teams/{}/topics/{topic_id}", team.id);
    (meeting, topic)
}

async fn chat_reaches_the_meeting_and_the_forum_live_and_outsiders_are_refused(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let team = team_of_three(&app).await;
    let (meeting, topic) = start_meeting(&team, &team.alice, "Planning").await;
    team.alice.post_form(&format!("{meeting}/join"), &[]).await;
    team.bob.post_form(&format!("{meeting}/join"), &[]).await;

    // Alice and Bob follow the chat from the meeting page; Carol, not in the meeting,
    // from the meeting's forum topic: both pages use the same stream.
    let meeting_page = team.alice.get(&meeting).await;
    let stream_path = format!("{topic}/events?after=0");
    assert!(meeting_page.body.contains(&stream_path), "the meeting page streams its chat");
    let forum_page = team.carol.get(&topic).await;
    forum_page.expect_ok_with("Meeting chat");
    assert!(forum_page.body.contains(&stream_path), "the forum topic streams the same chat");
    let mut alice_live = SseStream::open(&team.alice, &stream_path, None).await;
    let mut bob_live = SseStream::open(&team.bob, &stream_path, None).await;
    let mut carol_live = SseStream::open(&team.carol, &stream_path, None).await;

    team.bob.post_form(&format!("{topic}/messages"), &[("body", "Hello from the *meeting*")]).await;
    for live in [&mut alice_live, &mut bob_live, &mut carol_live] {
        let event = live.next_named("message").await;
        assert_eq!(event.id.as_deref(), Some("1"));
        assert!(event.data.contains("Hello from the <em>meeting</em>") && event.data.contains("Bob"), "{}", event.data);
    }
    // Carol writes from the forum into the live meeting chat.
    team.carol.post_form(&format!("{topic}/messages"), &[("body", "Hello from the forum")]).await;
    for live in [&mut alice_live, &mut bob_live, &mut carol_live] {
        let event = live.next_named("message").await;
        assert_eq!(event.id.as_deref(), Some("2"));
        assert!(event.data.contains("Hello from the forum") && event.data.contains("Carol"));
    }
    // The chat is saved: the forum topic shows both, in order.
    let saved = team.carol.get(&topic).await;
    assert!(saved.body.find("Hello from the <em>meeting</em>") < saved.body.find("Hello from the forum"));

    // Eve, outside the team, can neither read nor write.
    let refused = team.eve.http.get(team.eve.url(&stream_path)).send().await.expect("request");
    assert_eq!(refused.status(), StatusCode::NOT_FOUND);
    let post = team.eve.post_form(&format!("{topic}/messages"), &[("body", "let me in")]).await;
    assert_eq!(post.status, StatusCode::NOT_FOUND);
    team.alice.post_form(&format!("{topic}/messages"), &[("body", "marker")]).await;
    let next = alice_live.next_named("message").await;
    assert!(next.data.contains("marker"), "nothing of Eve's arrived first: {}", next.data);
    app.finish().await;
}

async fn a_reconnecting_reader_gets_exactly_the_messages_it_missed_in_order(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let team = team_of_three(&app).await;
    let (_, topic) = start_meeting(&team, &team.alice, "Resume").await;
    let stream = format!("{topic}/events");
    let mut live = SseStream::open(&team.bob, &stream, None).await;
    team.alice.post_form(&format!("{topic}/messages"), &[("body", "one")]).await;
    let first = live.next_named("message").await;
    let last_id = first.id.clone().expect("id");
    drop(live); // the connection drops mid-stream

    for body in ["two", "three", "four"] {
        team.alice.post_form(&format!("{topic}/messages"), &[("body", body)]).await;
    }
    let mut resumed = SseStream::open(&team.bob, &stream, Some(&last_id)).await;
    for (id, body) in [("2", "two"), ("3", "three"), ("4", "four")] {
        let event = resumed.next_named("message").await;
        assert_eq!(event.id.as_deref(), Some(id));
        assert!(event.data.contains(&format!("<p>{body}</p>")), "{}", event.data);
    }
    // No duplicates: the next event is the next new message.
    team.alice.post_form(&format!("{topic}/messages"), &[("body", "five")]).await;
    let event = resumed.next_named("message").await;
    assert_eq!(event.id.as_deref(), Some("5"));
    // The page's own cursor (`after`) works the same for a first connection.
    let mut from_page = SseStream::open(&team.carol, &format!("{stream}?after=3"), None).await;
    assert_eq!(from_page.next_named("message").await.id.as_deref(), Some("4"));
    assert_eq!(from_page.next_named("message").await.id.as_deref(), Some("5"));
    app.finish().await;
}

async fn a_removed_members_open_streams_are_closed(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let team = team_of_three(&app).await;
    let (_, topic) = start_meeting(&team, &team.alice, "Removal").await;
    let mut chat = SseStream::open(&team.bob, &format!("{topic}/events"), None).await;
    let mut page = SseStream::open(&team.bob, &format!("/teams/{}/events?view=meetings", team.id), None).await;
    page.next_named("meetings").await;
    let members = team.alice.get(&format!("/teams/{}/members", team.id)).await;
    let at = members.body.find("<td>Bob").expect("Bob listed");
    let bob_id =
        members.body[..at].rsplit("id=\"member-").next().expect("row").split('"').next().expect("id").to_owned();
    team.alice.post_form(&format!("/teams/{}/members/{bob_id}/remove", team.id), &[]).await.expect_ok_with("2 people");
    chat.expect_end().await;
    page.expect_end().await;
    let again = team.bob.http.get(team.bob.url(&format!("{topic}/events"))).send().await.expect("request");
    assert_eq!(again.status(), StatusCode::NOT_FOUND);
    app.finish().await;
}

async fn team_pages_follow_meetings_topics_and_presence_live(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let team = team_of_three(&app).await;
    let mut meetings = SseStream::open(&team.bob, &format!("/teams/{}/events?view=meetings", team.id), None).await;
    let mut forum = SseStream::open(&team.carol, &format!("/teams/{}/events?view=forum", team.id), None).await;
    assert!(meetings.next_named("meetings").await.data.contains("No meetings yet."));
    assert!(forum.next_named("topics").await.data.contains("No topics yet."));

    let (meeting, topic) = start_meeting(&team, &team.alice, "Live standup").await;
    let update = meetings.next_named("meetings").await;
    assert!(
        update.data.contains("Live standup") && update.data.contains("Nobody is in it right now."),
        "{}",
        update.data
    );
    assert!(forum.next_named("topics").await.data.contains("Live standup"));

    team.alice.post_form(&format!("{meeting}/join"), &[]).await;
    let mut update = meetings.next_named("meetings").await;
    while !update.data.contains("In it now: Alice") {
        update = meetings.next_named("meetings").await;
    }
    team.bob.post_form(&format!("/teams/{}/forum", team.id), &[("title", "Fresh topic"), ("body", "")]).await;
    let mut topics = forum.next_named("topics").await;
    while !topics.data.contains("Fresh topic") {
        topics = forum.next_named("topics").await;
    }
    // A message in the meeting chat moves its topic up the forum, live.
    team.carol.post_form(&format!("{topic}/messages"), &[("body", "bump")]).await;
    let mut topics = forum.next_named("topics").await;
    while topics.data.find("Live standup") > topics.data.find("Fresh topic") {
        topics = forum.next_named("topics").await;
    }
    // The meeting page's attendance follows too; ending the meeting shows it ended.
    let attendance_path = format!("/teams/{}/events?view=meeting:{}", team.id, meeting.rsplit('/').next().expect("id"));
    let mut attendance = SseStream::open(&team.carol, &attendance_path, None).await;
    assert!(attendance.next_named("attendance").await.data.contains("In the meeting (1)"));
    team.alice.post_form(&format!("{meeting}/end"), &[]).await;
    let mut ended = attendance.next_named("attendance").await;
    while !ended.data.contains("meeting ended") {
        ended = attendance.next_named("attendance").await;
    }
    app.finish().await;
}

/// "N messages" as the forum lists a topic (the same words as on the page).
fn forum_count(html: &str, title: &str) -> String {
    let at = html.find(title).unwrap_or_else(|| panic!("{title} not listed: {html}"));
    let rest = &html[at..];
    let end = rest.find(" messages").unwrap_or_else(|| panic!("no count after {title}: {rest}"));
    let start = rest[..end].rfind(' ').expect("the count") + 1;
    rest[start..end + " messages".len()].to_owned()
}

async fn a_chat_message_alone_sends_nothing_to_readers_of_the_meeting_list(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let team = team_of_three(&app).await;
    let (meeting, topic) = start_meeting(&team, &team.alice, "Busy chat").await;
    let mut meetings = SseStream::open(&team.bob, &format!("/teams/{}/events?view=meetings", team.id), None).await;
    let mut forum = SseStream::open(&team.carol, &format!("/teams/{}/events?view=forum", team.id), None).await;
    assert!(meetings.next_named("meetings").await.data.contains("Busy chat"));
    assert!(forum.next_named("topics").await.data.contains("Busy chat"));

    // A burst of twenty messages, all at once (from three people: each within their burst).
    let writers = [&team.alice, &team.bob, &team.carol];
    let path = format!("{topic}/messages");
    let posts = (0..20).map(|i| {
        let (writer, path) = (writers[i % 3], &path);
        async move { writer.post_form(path, &[("body", &format!("m{i}"))]).await }
    });
    for page in futures_util::future::join_all(posts).await {
        assert_eq!(page.status, StatusCode::OK);
    }
    // The forum list ends where the page is, its frames fewer than the messages.
    let forum_page = team.carol.get(&format!("/teams/{}/forum", team.id)).await;
    let count = forum_count(&forum_page.body, "Busy chat");
    let mut frames = 1;
    while forum_count(&forum.next_named("topics").await.data, "Busy chat") != count {
        frames += 1;
    }
    assert!(frames < 20, "twenty messages at once were rendered {frames} times for the forum");
    // The meeting list shows none of it, so its readers hear nothing.
    meetings.expect_none_named("meetings", std::time::Duration::from_millis(1500)).await;
    // What it does show still arrives.
    team.alice.post_form(&format!("{meeting}/join"), &[]).await;
    let mut update = meetings.next_named("meetings").await;
    while !update.data.contains("In it now: Alice") {
        update = meetings.next_named("meetings").await;
    }
    app.finish().await;
}

async fn posting_too_fast_and_opening_too_many_streams_are_refused_with_a_message(backend: Backend) {
    let app =
        TestApp::spawn_with(backend, &["--post-burst", "3", "--posts-per-minute", "1", "--max-streams-per-user", "2"])
            .await;
    let team = team_of_three(&app).await;
    let (_, topic) = start_meeting(&team, &team.alice, "Limits").await;
    for i in 0..3 {
        team.bob
            .post_form(&format!("{topic}/messages"), &[("body", &format!("m{i}"))])
            .await
            .expect_ok_with(&format!("m{i}"));
    }
    let refused = team.bob.post_form(&format!("{topic}/messages"), &[("body", "too fast")]).await;
    assert_eq!(refused.status, StatusCode::TOO_MANY_REQUESTS);
    assert!(refused.body.contains("faster than this server allows"), "{}", refused.body);
    assert!(refused.body.contains("too fast"), "the draft is kept");
    // Others are not slowed down by Bob.
    team.carol
        .post_form(&format!("{topic}/messages"), &[("body", "carol is fine")])
        .await
        .expect_ok_with("carol is fine");

    let stream = format!("{topic}/events");
    let _one = SseStream::open(&team.bob, &stream, None).await;
    let _two = SseStream::open(&team.bob, &stream, None).await;
    let third = team.bob.http.get(team.bob.url(&stream)).send().await.expect("request");
    assert_eq!(third.status(), StatusCode::TOO_MANY_REQUESTS);
    assert!(third.text().await.expect("body").contains("too many Floo pages open"));
    drop(_one);
    // The slot frees once the server notices the closed connection.
    let deadline = tokio::time::Instant::now() + crate::support::LIVE_DEADLINE;
    loop {
        let again = team.bob.http.get(team.bob.url(&stream)).send().await.expect("request");
        if again.status() == StatusCode::OK {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "the closed stream's slot was never freed");
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    app.finish().await;
}

/// How many times the process behind `metrics` rendered `view` for its live pages.
async fn renders(metrics: std::net::SocketAddr, view: &str) -> u64 {
    let text = reqwest::get(format!("http://{metrics}/metrics")).await.expect("scrape").text().await.expect("text");
    let series = format!("floo_live_renders_total{{view=\"{view}\"}} ");
    text.lines().find_map(|l| l.strip_prefix(&series)).map(|v| v.trim().parse().expect("a count")).unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_render_of_a_change_serves_every_reader_of_the_view() {
    // Floo in a process of its own: its render counts are its own.
    let data_dir = std::env::temp_dir().join(format!("floo-live-{}", crate::support::unique_suffix()));
    let port = std::net::TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).expect("a free port").port();
    let metrics: std::net::SocketAddr = ([127, 0, 0, 1], port).into();
    let (_child, base) = crate::media::floo_process_with(
        &data_dir,
        &["--metrics-addr", &metrics.to_string(), "--max-streams-per-user", "100"],
    )
    .await;
    let alice = crate::support::signed_in_at(&base, "Alice").await;
    let team = alice.post_form("/teams", &[("name", "Forty readers")]).await.url;
    let team = team.trim_start_matches(&base).to_owned();
    const READERS: usize = 40;
    let mut meeting_lists = Vec::new();
    let mut forums = Vec::new();
    for _ in 0..READERS {
        meeting_lists.push(SseStream::open(&alice, &format!("{team}/events?view=meetings"), None).await);
        forums.push(SseStream::open(&alice, &format!("{team}/events?view=forum"), None).await);
    }
    for (list, forum) in meeting_lists.iter_mut().zip(&mut forums) {
        assert!(list.next_named("meetings").await.data.contains("No meetings yet."));
        assert!(forum.next_named("topics").await.data.contains("No topics yet."));
    }
    let (lists_before, forums_before) = (renders(metrics, "meetings").await, renders(metrics, "forum").await);

    let page = alice.post_form(&format!("{team}/meetings"), &[("title", "Shared render")]).await;
    let topic = format!("{team}/topics/{}", page.between(&format!("{team}/topics/"), "/"));
    for (list, forum) in meeting_lists.iter_mut().zip(&mut forums) {
        assert!(list.next_named("meetings").await.data.contains("Shared render"));
        assert!(forum.next_named("topics").await.data.contains("Shared render"));
    }
    let lists = renders(metrics, "meetings").await - lists_before;
    let forum_renders = renders(metrics, "forum").await - forums_before;
    assert!(lists <= 2, "{READERS} readers of the meeting list cost {lists} renders of one change");
    assert!(forum_renders <= 2, "{READERS} readers of the forum cost {forum_renders} renders of one change");

    // Chat moves the forum (once per burst, for everyone), never the meeting list.
    let lists_before = renders(metrics, "meetings").await;
    for i in 0..5 {
        alice.post_form(&format!("{topic}/messages"), &[("body", &format!("line {i}"))]).await;
    }
    let count = forum_count(&alice.get(&format!("{team}/forum")).await.body, "Shared render");
    for forum in &mut forums {
        while forum_count(&forum.next_named("topics").await.data, "Shared render") != count {}
    }
    meeting_lists[0].expect_none_named("meetings", std::time::Duration::from_millis(1000)).await;
    assert_eq!(renders(metrics, "meetings").await, lists_before, "chat rendered the meeting list");
    let _ = std::fs::remove_dir_all(&data_dir);
}
