//! The foundation walked as users would: sign in, teams and invites, roles, the forum,
//! meetings with attendance, and the home page.

use reqwest::StatusCode;

use crate::on_both_backends;
use crate::support::{Backend, TestApp};

on_both_backends!(
    teams_can_be_created_joined_by_code_and_link_and_managed,
    the_forum_lists_topics_by_activity_with_paging_and_renders_markdown_safely,
    meetings_are_listed_with_attendance_and_can_be_ended_by_the_host,
    limits_are_enforced_with_a_message_next_to_the_field,
    signing_out_ends_the_session_and_forged_posts_are_refused,
    health_and_readiness_answer,
);

/// Team id from a URL like `http://host/teams/7...`.
fn team_id_of(url: &str) -> String {
    let rest = url.split("/teams/").nth(1).unwrap_or_else(|| panic!("no team in {url}"));
    rest.split(['/', '?', '#']).next().unwrap_or_default().to_owned()
}

async fn teams_can_be_created_joined_by_code_and_link_and_managed(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let alice = app.signed_in("Alice").await;
    let bob = app.signed_in("Bob").await;
    let carol = app.signed_in("Carol").await;

    alice.get("/").await.expect_ok_with("You are not in a team yet");
    let created = alice.post_form("/teams", &[("name", "  Rocket Science  ")]).await;
    created.expect_ok_with("Rocket Science").expect_ok_with("owner");
    let team = team_id_of(&created.url);

    // The invite page shows the code and a link with it.
    let invite = alice.get(&format!("/teams/{team}/invite")).await;
    let code = invite.between("id=\"invite-code\">", "<");
    invite.expect_ok_with(&format!("{}/join/{code}", app.base));

    // Bob joins with the code (pasted with spaces), Carol with the link.
    bob.post_form("/join", &[("code", &format!(" {code} "))]).await.expect_ok_with("Rocket Science");
    let landing = carol.get(&format!("/join/{code}")).await;
    landing.expect_ok_with("Join Rocket Science?");
    carol.post_form(&format!("/join/{code}"), &[]).await.expect_ok_with("Rocket Science");

    let members = alice.get(&format!("/teams/{team}/members")).await;
    members.expect_ok_with("3 people");
    for name in ["Alice", "Bob", "Carol"] {
        members.expect_ok_with(name);
    }

    // Regenerating the invite: the old code stops working, the new one works.
    alice.post_form(&format!("/teams/{team}/invite/regenerate"), &[]).await.expect_ok_with("Invite link");
    let new_code = alice.get(&format!("/teams/{team}/invite")).await.between("id=\"invite-code\">", "<");
    assert_ne!(new_code, code);
    let dave = app.signed_in("Dave").await;
    let refused = dave.post_form("/join", &[("code", &code)]).await;
    assert_eq!(refused.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(refused.body.contains("No team has this invite code"));
    assert_eq!(dave.get(&format!("/join/{code}")).await.status, StatusCode::NOT_FOUND);
    dave.post_form("/join", &[("code", &new_code)]).await.expect_ok_with("Rocket Science");

    // Roles: Alice makes Bob an admin; Bob, now admin, removes Carol; Dave leaves.
    let bob_id = user_id_in(&members.body, "Bob");
    let carol_id = user_id_in(&members.body, "Carol");
    alice
        .post_form(&format!("/teams/{team}/members/{bob_id}/role"), &[("role", "admin")])
        .await
        .expect_ok_with("Make member");
    bob.get(&format!("/teams/{team}/settings")).await.expect_ok_with("Only the owner can rename");
    bob.post_form(&format!("/teams/{team}/members/{carol_id}/remove"), &[]).await.expect_ok_with("3 people");
    assert_eq!(carol.get(&format!("/teams/{team}")).await.status, StatusCode::NOT_FOUND);
    dave.post_form(&format!("/teams/{team}/leave"), &[]).await.expect_ok_with("You are not in a team yet");
    let members = alice.get(&format!("/teams/{team}/members")).await;
    members.expect_ok_with("2 people");
    assert!(!members.body.contains("Dave"));
    // Alice demotes Bob again; the owner cannot leave.
    alice
        .post_form(&format!("/teams/{team}/members/{bob_id}/role"), &[("role", "member")])
        .await
        .expect_ok_with("Make admin");
    let owner_leaving = alice.post_form(&format!("/teams/{team}/leave"), &[]).await;
    assert_eq!(owner_leaving.status, StatusCode::CONFLICT);

    // The owner renames and finally deletes the team.
    alice
        .post_form(&format!("/teams/{team}/rename"), &[("name", "Rocket Surgery")])
        .await
        .expect_ok_with("Rocket Surgery");
    bob.get("/").await.expect_ok_with("Rocket Surgery");
    let wrong = alice.post_form(&format!("/teams/{team}/delete"), &[("confirm", "nope")]).await;
    assert_eq!(wrong.status, StatusCode::BAD_REQUEST);
    alice
        .post_form(&format!("/teams/{team}/delete"), &[("confirm", "Rocket Surgery")])
        .await
        .expect_ok_with("You are not in a team yet");
    assert_eq!(bob.get(&format!("/teams/{team}")).await.status, StatusCode::NOT_FOUND);
    app.finish().await;
}

/// The user id in the members table row of `name` (`id="member-ID"`).
fn user_id_in(members_html: &str, name: &str) -> String {
    let at = members_html.find(&format!("<td>{name}")).unwrap_or_else(|| panic!("{name} not listed"));
    let row_start = members_html[..at].rfind("id=\"member-").expect("row id") + "id=\"member-".len();
    members_html[row_start..].split('"').next().unwrap_or_default().to_owned()
}

async fn the_forum_lists_topics_by_activity_with_paging_and_renders_markdown_safely(backend: Backend) {
    let app = TestApp::spawn_with(backend, &["--creation-burst", "30"]).await;
    let alice = app.signed_in("Alice").await;
    let team = team_id_of(&alice.post_form("/teams", &[("name", "Writers")]).await.url);

    alice.get(&format!("/teams/{team}/forum")).await.expect_ok_with("No topics yet.");
    let body =
        "Hello **team**.\n\n<script>alert('x')</script>\n\n[bad](javascript:alert(1)) [good](https://example.com)";
    let topic = alice.post_form(&format!("/teams/{team}/forum"), &[("title", "Kick-off"), ("body", body)]).await;
    topic
        .expect_ok_with("<strong>team</strong>")
        .expect_ok_with("&lt;script&gt;")
        .expect_ok_with("href=\"https://example.com\"");
    assert!(!topic.body.contains("<script>alert"));
    assert!(!topic.body.contains("javascript:"));
    let kickoff_url = topic.url.clone();

    // 25 more topics: the forum pages by 20, newest activity first.
    for i in 1..=25 {
        alice
            .post_form(&format!("/teams/{team}/forum"), &[("title", &format!("Topic number {i:02}")), ("body", "")])
            .await;
    }
    let first = alice.get(&format!("/teams/{team}/forum")).await;
    first.expect_ok_with("Page 1 of 2").expect_ok_with("Topic number 25");
    assert!(!first.body.contains("Kick-off"), "the oldest topic is on page 2");
    assert!(first.body.find("Topic number 25") < first.body.find("Topic number 24"));
    alice.get(&format!("/teams/{team}/forum?page=2")).await.expect_ok_with("Kick-off").expect_ok_with("Page 2 of 2");

    // A comment moves the topic to the top.
    let commented = alice.post_form(&format!("{kickoff_url}/messages"), &[("body", "First *comment*")]).await;
    commented.expect_ok_with("<em>comment</em>");
    let first = alice.get(&format!("/teams/{team}/forum")).await;
    assert!(first.body.find("Kick-off") < first.body.find("Topic number 25"), "commented topic first");
    first.expect_ok_with("1 message");
    app.finish().await;
}

async fn meetings_are_listed_with_attendance_and_can_be_ended_by_the_host(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let alice = app.signed_in("Alice").await;
    let bob = app.signed_in("Bob").await;
    let created = alice.post_form("/teams", &[("name", "Standup")]).await;
    let team = team_id_of(&created.url);
    created.expect_ok_with("No meetings yet.");
    let code = alice.get(&format!("/teams/{team}/invite")).await.between("id=\"invite-code\">", "<");
    bob.post_form("/join", &[("code", &code)]).await;

    let first = alice.post_form(&format!("/teams/{team}/meetings"), &[("title", "Monday sync")]).await;
    first.expect_ok_with("Monday sync").expect_ok_with("Nobody has joined yet.");
    let first_url = first.url.clone();
    alice.post_form(&format!("{first_url}/join"), &[]).await.expect_ok_with("here now");
    bob.post_form(&format!("{first_url}/join"), &[]).await.expect_ok_with("In the meeting (2)");
    bob.post_form(&format!("{first_url}/leave"), &[]).await.expect_ok_with("In the meeting (1)");

    // Home shows the live meeting across teams; the meeting owns a forum topic.
    bob.get("/").await.expect_ok_with("Monday sync").expect_ok_with("1 person in it");
    let forum = bob.get(&format!("/teams/{team}/forum")).await;
    forum.expect_ok_with("Monday sync").expect_ok_with("meeting");

    // Bob (a plain member, not the host) cannot end it; Alice can.
    let refused = bob.post_form(&format!("{first_url}/end"), &[]).await;
    assert_eq!(refused.status, StatusCode::FORBIDDEN);
    assert!(refused.body.contains("Only the meeting"));
    alice.post_form(&format!("{first_url}/end"), &[]).await.expect_ok_with("ended").expect_ok_with("lasted");
    let late = bob.post_form(&format!("{first_url}/join"), &[]).await;
    assert_eq!(late.status, StatusCode::CONFLICT);

    // A second, live meeting is listed before the ended one, which shows who attended.
    bob.post_form(&format!("/teams/{team}/meetings"), &[("title", "Tuesday retro")]).await;
    let overview = alice.get(&format!("/teams/{team}")).await;
    overview.expect_ok_with("Attended: Alice, Bob").expect_ok_with("lasted");
    assert!(overview.body.find("Tuesday retro") < overview.body.find("Monday sync"), "live meetings first");
    app.finish().await;
}

async fn limits_are_enforced_with_a_message_next_to_the_field(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let alice = app.signed_in("Alice").await;

    let long_name = "n".repeat(101);
    let refused = alice.post_form("/teams", &[("name", &long_name)]).await;
    assert_eq!(refused.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(refused.body.contains("at most 100 characters"));
    let ok_name = "é".repeat(100);
    let team = team_id_of(&alice.post_form("/teams", &[("name", &ok_name)]).await.url);

    let forum = format!("/teams/{team}/forum");
    let title = alice.post_form(&forum, &[("title", &"t".repeat(201)), ("body", "")]).await;
    assert_eq!(title.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(title.body.contains("at most 200 characters"));
    let body = alice.post_form(&forum, &[("title", "ok"), ("body", &"b".repeat(20_001))]).await;
    assert_eq!(body.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(body.body.contains("at most 20000 characters"));
    let topic = alice.post_form(&forum, &[("title", "ok"), ("body", &"b".repeat(20_000))]).await;
    topic.expect_ok_with("ok");
    let comment = alice.post_form(&format!("{}/messages", topic.url), &[("body", &"c".repeat(4_001))]).await;
    assert_eq!(comment.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(comment.body.contains("at most 4000 characters"));
    let empty = alice.post_form(&format!("/teams/{team}/meetings"), &[("title", "   ")]).await;
    assert_eq!(empty.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(empty.body.contains("Give the meeting a title"));
    app.finish().await;
}

async fn signing_out_ends_the_session_and_forged_posts_are_refused(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let alice = app.signed_in("Alice").await;
    let forged = alice.post_form_without_csrf("/teams", &[("name", "Forged")]).await;
    assert_eq!(forged.status, StatusCode::FORBIDDEN);
    assert!(!alice.get("/").await.body.contains("Forged"));

    alice.post_form("/logout", &[]).await.expect_ok_with("Sign in to Floo");
    let after = alice.get("/teams/1").await;
    assert!(after.url.contains("/login?next=%2Fteams%2F1"), "signed-out visit goes to sign-in: {}", after.url);
    alice.get("/").await.expect_ok_with("Sign in");
    app.finish().await;
}

async fn health_and_readiness_answer(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let client = app.client();
    client.get("/healthz").await.expect_ok_with("ok");
    client.get("/readyz").await.expect_ok_with("ready");
    let missing = client.get("/no/such/page").await;
    assert_eq!(missing.status, StatusCode::NOT_FOUND);
    assert!(missing.body.contains("This page does not exist"));
    app.finish().await;
}
