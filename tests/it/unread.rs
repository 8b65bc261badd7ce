//! Unread marks on both backends: topics and meeting chats with messages a member has
//! not seen are counted on their home page and their team's page, and the forum page
//! carries what they read; opening a topic, writing in it, or reading it live marks it
//! read; what was there before someone joined is not news to them.

use crate::on_both_backends;
use crate::support::{Backend, Client, SseStream, TestApp};

on_both_backends!(members_see_which_topics_and_chats_have_news_for_them_until_they_read_them);

async fn unread_on_home(client: &Client) -> String {
    let home = client.get("/").await;
    home.body
        .split("class=\"badge unread\"")
        .nth(1)
        .and_then(|r| r.split('>').nth(1))
        .map(|r| r.split('<').next().unwrap_or("").to_owned())
        .unwrap_or_default()
}

async fn members_see_which_topics_and_chats_have_news_for_them_until_they_read_them(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let alice = app.signed_in("Alice").await;
    let bob = app.signed_in("Bob").await;
    let team = alice.post_form("/teams", &[("name", "Readers")]).await.url;
    let t = team.split("/teams/").nth(1).expect("team id").to_owned();
    let code = alice.get(&format!("/teams/{t}/invite")).await.between("id=\"invite-code\">", "<");
    bob.post_form("/join", &[("code", &code)]).await.expect_ok_with("Readers");

    let topic = alice.post_form(&format!("/teams/{t}/forum"), &[("title", "News"), ("body", "")]).await;
    let topic = topic.url.trim_start_matches(&alice.base).to_owned();
    let topic_id = topic.rsplit('/').next().expect("id").to_owned();
    assert_eq!(unread_on_home(&bob).await, "", "a topic without messages is no news");
    for body in ["first", "second"] {
        alice.post_form(&format!("{topic}/messages"), &[("body", body)]).await;
    }
    // Bob has news; Alice, who wrote them, has none.
    assert_eq!(unread_on_home(&bob).await, "1 topic with new messages");
    assert_eq!(unread_on_home(&alice).await, "");
    bob.get(&format!("/teams/{t}")).await.expect_ok_with("1 topic has new messages");
    let forum = bob.get(&format!("/teams/{t}/forum")).await;
    assert!(
        forum.body.contains("data-reads=\"{}\"")
            && forum.body.contains(&format!("data-topic=\"{topic_id}\" data-seq=\"2\"")),
        "{}",
        forum.body
    );

    // Opening it reads it.
    bob.get(&topic).await;
    assert_eq!(unread_on_home(&bob).await, "");
    let forum = bob.get(&format!("/teams/{t}/forum")).await;
    assert!(forum.body.contains(&format!("data-reads=\"{{&quot;{topic_id}&quot;:2}}\"")), "{}", forum.body);
    alice.post_form(&format!("{topic}/messages"), &[("body", "third")]).await;
    assert_eq!(unread_on_home(&bob).await, "1 topic with new messages");
    // Writing in it reads it too.
    bob.post_form(&format!("{topic}/messages"), &[("body", "reply")]).await;
    assert_eq!(unread_on_home(&bob).await, "");

    // A meeting chat read live, on an open page: read once the page goes.
    let meeting = alice.post_form(&format!("/teams/{t}/meetings"), &[("title", "Standup")]).await;
    let chat = format!("/teams/{t}/topics/{}", meeting.between(&format!("/teams/{t}/topics/"), "/"));
    let meeting_page = meeting.url.trim_start_matches(&alice.base).to_owned();
    bob.get(&meeting_page).await;
    let mut live = SseStream::open(&bob, &format!("{chat}/events?after=0"), None).await;
    alice.post_form(&format!("{chat}/messages"), &[("body", "live news")]).await;
    live.next_named("message").await;
    assert_eq!(unread_on_home(&bob).await, "1 topic with new messages", "still on the page");
    drop(live);
    let deadline = tokio::time::Instant::now() + crate::support::LIVE_DEADLINE;
    while !unread_on_home(&bob).await.is_empty() {
        assert!(tokio::time::Instant::now() < deadline, "what the page received was never marked read");
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }

    // Carol joins now: the old messages are not news to her; a new one is.
    let carol = app.signed_in("Carol").await;
    tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    carol.post_form("/join", &[("code", &code)]).await.expect_ok_with("Readers");
    assert_eq!(unread_on_home(&carol).await, "");
    tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    alice.post_form(&format!("{topic}/messages"), &[("body", "for Carol")]).await;
    assert_eq!(unread_on_home(&carol).await, "1 topic with new messages");
    app.finish().await;
}
