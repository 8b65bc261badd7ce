//! Editing and deleting one's own topics and messages, and moderation by team admins
//! (deleting anyone's, locking, pinning), on both backends: live readers see edits and
//! deletions as they happen, and a stream resumed after a drop replays them exactly once.

use reqwest::StatusCode;

use crate::on_both_backends;
use crate::support::{Backend, Client, SseStream, TestApp};

on_both_backends!(messages_and_topics_are_edited_deleted_locked_and_pinned_live_and_on_resume);

/// Alice owns a team; Bob and Carol are members. Returns the team's id and the clients.
async fn team(app: &TestApp) -> (String, Client, Client, Client) {
    let alice = app.signed_in("Alice").await;
    let bob = app.signed_in("Bob").await;
    let carol = app.signed_in("Carol").await;
    let team = alice.post_form("/teams", &[("name", "Editors")]).await.url;
    let t = team.split("/teams/").nth(1).expect("team id").to_owned();
    let code = alice.get(&format!("/teams/{t}/invite")).await.between("id=\"invite-code\">", "<");
    bob.post_form("/join", &[("code", &code)]).await.expect_ok_with("Editors");
    carol.post_form("/join", &[("code", &code)]).await.expect_ok_with("Editors");
    (t, alice, bob, carol)
}

/// The next `message` event's (id, data).
async fn next_message(stream: &mut SseStream) -> (String, String) {
    let event = stream.next_named("message").await;
    (event.id.unwrap_or_default(), event.data)
}

async fn messages_and_topics_are_edited_deleted_locked_and_pinned_live_and_on_resume(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let (t, alice, bob, carol) = team(&app).await;
    let topic = bob.post_form(&format!("/teams/{t}/forum"), &[("title", "Typos"), ("body", "Fix them.")]).await;
    let topic = topic.url.trim_start_matches(&bob.base).to_owned();
    for (who, body) in [(&bob, "helo"), (&bob, "second"), (&carol, "carol was here")] {
        who.post_form(&format!("{topic}/messages"), &[("body", body)]).await.expect_ok_with(body);
    }
    let mut live = SseStream::open(&carol, &format!("{topic}/events?after=3"), None).await;

    // Bob fixes his typo: readers get the message again, marked edited, as event 4.
    bob.get(&format!("{topic}/messages/1/edit")).await.expect_ok_with("helo");
    bob.post_form(&format!("{topic}/messages/1"), &[("body", "hello")]).await.expect_ok_with("hello");
    let (id, data) = next_message(&mut live).await;
    assert_eq!(id, "4");
    assert!(data.contains("id=\"m1\"") && data.contains("<p>hello</p>") && data.contains("edited"), "{data}");
    // Nobody else edits Bob's words, nor deletes them but an admin.
    assert_eq!(carol.get(&format!("{topic}/messages/1/edit")).await.status, StatusCode::FORBIDDEN);
    assert_eq!(
        carol.post_form(&format!("{topic}/messages/1"), &[("body", "hacked")]).await.status,
        StatusCode::FORBIDDEN
    );
    assert_eq!(carol.post_form(&format!("{topic}/messages/1/delete"), &[]).await.status, StatusCode::FORBIDDEN);
    // Limits as for new messages.
    let empty = bob.post_form(&format!("{topic}/messages/1"), &[("body", "  ")]).await;
    assert_eq!(empty.status, StatusCode::UNPROCESSABLE_ENTITY);
    let long = bob.post_form(&format!("{topic}/messages/1"), &[("body", &"x".repeat(4_001))]).await;
    assert!(long.body.contains("at most 4000 characters"), "{}", long.body);

    // Alice, the owner, deletes Carol's message; Bob deletes his own second one. The
    // conversation still reads: a line says a message was deleted, its words are gone.
    alice.post_form(&format!("{topic}/messages/3/delete"), &[]).await;
    bob.post_form(&format!("{topic}/messages/2/delete"), &[]).await;
    for (want_id, want_msg) in [("5", "m3"), ("6", "m2")] {
        let (id, data) = next_message(&mut live).await;
        assert_eq!(id, want_id);
        assert!(data.contains(&format!("id=\"{want_msg}\"")) && data.contains("message deleted"), "{data}");
        assert!(!data.contains("carol was here") && !data.contains("second"), "{data}");
    }
    assert_eq!(bob.post_form(&format!("{topic}/messages/2/delete"), &[]).await.status, StatusCode::CONFLICT);
    let page = carol.get(&topic).await;
    assert!(page.body.matches("message deleted").count() == 2 && !page.body.contains("carol was here"));

    // A stream resumed after a drop replays what changed since, each message once, in
    // event order, then goes on live.
    drop(live);
    let mut resumed = SseStream::open(&carol, &format!("{topic}/events"), Some("3")).await;
    carol.post_form(&format!("{topic}/messages"), &[("body", "after the drop")]).await;
    let mut seen = Vec::new();
    for _ in 0..4 {
        let (id, data) = next_message(&mut resumed).await;
        let message = data.split("id=\"").nth(1).and_then(|r| r.split('"').next()).unwrap_or("").to_owned();
        seen.push((id, message));
    }
    let want: Vec<(String, String)> = [("4", "m1"), ("5", "m3"), ("6", "m2"), ("7", "m4")]
        .iter()
        .map(|(a, b)| (a.to_string(), b.to_string()))
        .collect();
    assert_eq!(seen, want);
    // From the start: every message once, as it is now (m1 edited, m2 and m3 deleted).
    let mut from_start = SseStream::open(&carol, &format!("{topic}/events?after=0"), None).await;
    let mut ids = Vec::new();
    for _ in 0..4 {
        ids.push(next_message(&mut from_start).await.0);
    }
    assert_eq!(ids, ["4", "5", "6", "7"]);

    // Locked by an admin: no new messages, no edits; members are told so. Unlocked: again.
    assert_eq!(bob.post_form(&format!("{topic}/lock"), &[]).await.status, StatusCode::FORBIDDEN);
    alice.post_form(&format!("{topic}/lock"), &[]).await.expect_ok_with("locked");
    let refused = bob.post_form(&format!("{topic}/messages"), &[("body", "one more")]).await;
    assert_eq!(refused.status, StatusCode::CONFLICT);
    assert!(refused.body.contains("This topic is locked"), "{}", refused.body);
    assert!(bob.get(&topic).await.body.contains("This topic is locked by the team's admins"));
    assert_eq!(bob.post_form(&format!("{topic}/messages/1"), &[("body", "again")]).await.status, StatusCode::CONFLICT);
    alice.post_form(&format!("{topic}/unlock"), &[]).await;
    bob.post_form(&format!("{topic}/messages"), &[("body", "one more")]).await.expect_ok_with("one more");

    // Pinned topics come first on the forum, whatever is newer.
    carol.post_form(&format!("/teams/{t}/forum"), &[("title", "Newer topic"), ("body", "")]).await;
    let forum = bob.get(&format!("/teams/{t}/forum")).await;
    assert!(forum.body.find("Newer topic") < forum.body.find("Typos"));
    assert_eq!(carol.post_form(&format!("{topic}/pin"), &[]).await.status, StatusCode::FORBIDDEN);
    alice.post_form(&format!("{topic}/pin"), &[]).await;
    let forum = bob.get(&format!("/teams/{t}/forum")).await;
    assert!(forum.body.find("Typos") < forum.body.find("Newer topic") && forum.body.contains("pinned"));

    // Bob edits his topic; only he may. Carol's open page gets the new title and text
    // live, in the topic's sequence; a stream resumed from before gets it once.
    assert_eq!(carol.get(&format!("{topic}/edit")).await.status, StatusCode::FORBIDDEN);
    let before_edit = carol.get(&topic).await.between("events?after=", "\"");
    let mut page = SseStream::open(&carol, &format!("{topic}/events?after={before_edit}"), None).await;
    bob.post_form(&topic, &[("title", "Typos, fixed"), ("body", "All **fixed**.")])
        .await
        .expect_ok_with("Typos, fixed");
    let edited = page.next_named("topic").await;
    assert!(edited.data.contains("Typos, fixed") && edited.data.contains("<strong>fixed</strong>"), "{}", edited.data);
    let edit_event: i64 = edited.id.as_deref().and_then(|i| i.parse().ok()).expect("an event id");
    assert_eq!(edit_event, before_edit.parse::<i64>().expect("a number") + 1);
    let mut resumed = SseStream::open(&carol, &format!("{topic}/events"), Some(&(edit_event - 1).to_string())).await;
    assert_eq!(
        resumed.next_event().await.map(|e| (e.event, e.id)),
        Some((Some("topic".into()), Some(edit_event.to_string())))
    );
    assert!(carol.get(&topic).await.body.contains("· edited"));

    // Deleted by an admin: gone from the forum, its readers' streams close, 404 after.
    let mut reader = SseStream::open(&carol, &format!("{topic}/events"), None).await;
    assert_eq!(carol.post_form(&format!("{topic}/delete"), &[]).await.status, StatusCode::FORBIDDEN);
    alice.post_form(&format!("{topic}/delete"), &[]).await.expect_ok_with("Newer topic");
    reader.expect_end().await;
    assert_eq!(carol.get(&topic).await.status, StatusCode::NOT_FOUND);
    assert!(!bob.get(&format!("/teams/{t}/forum")).await.body.contains("Typos"));
    // A meeting's topic stays with its meeting.
    let meeting = alice.post_form(&format!("/teams/{t}/meetings"), &[("title", "Standup")]).await;
    let chat = format!("/teams/{t}/topics/{}", meeting.between(&format!("/teams/{t}/topics/"), "/"));
    assert_eq!(alice.post_form(&format!("{chat}/delete"), &[]).await.status, StatusCode::CONFLICT);
    app.finish().await;
}
