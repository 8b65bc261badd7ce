//! The authorization sweep: every team route as a non-member (404, as if the team did
//! not exist) and every admin action as a plain member (403 with a clear page).

use reqwest::StatusCode;

use crate::on_both_backends;
use crate::support::{Backend, TestApp};

on_both_backends!(every_team_route_refuses_outsiders_and_admin_actions_refuse_members);

async fn every_team_route_refuses_outsiders_and_admin_actions_refuse_members(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let alice = app.signed_in("Alice").await;
    let bob = app.signed_in("Bob").await;
    let eve = app.signed_in("Eve").await;

    let created = alice.post_form("/teams", &[("name", "Private")]).await;
    let t = created.url.split("/teams/").nth(1).expect("team id").to_owned();
    let code = alice.get(&format!("/teams/{t}/invite")).await.between("id=\"invite-code\">", "<");
    bob.post_form("/join", &[("code", &code)]).await.expect_ok_with("Private");
    let topic_url =
        alice.post_form(&format!("/teams/{t}/forum"), &[("title", "Secret plans"), ("body", "x")]).await.url;
    let topic = topic_url.rsplit('/').next().expect("topic id").to_owned();
    alice.post_form(&format!("/teams/{t}/topics/{topic}/messages"), &[("body", "Secret reply")]).await;
    let meeting_url = alice.post_form(&format!("/teams/{t}/meetings"), &[("title", "Secret meeting")]).await.url;
    let meeting = meeting_url.rsplit('/').next().expect("meeting id").to_owned();
    let plan =
        [("date", "2027-01-05"), ("time", "10:00"), ("time_zone", "UTC"), ("duration", "30"), ("description", "")];
    let mut planned = vec![("title", "Secret plan")];
    planned.extend(plan);
    let scheduled_url = alice.post_form(&format!("/teams/{t}/schedule"), &planned).await.url;
    let s = scheduled_url.rsplit('/').next().expect("scheduled id").to_owned();
    let mut intruder = vec![("title", "Intruder")];
    intruder.extend(plan);
    let members = alice.get(&format!("/teams/{t}/members")).await;
    let bob_id = members.between("<tr id=\"member-", "\"><td>Bob");
    let bob_id = bob_id.rsplit("member-").next().expect("id").to_owned();

    let gets = [
        format!("/teams/{t}"),
        format!("/teams/{t}/members"),
        format!("/teams/{t}/invite"),
        format!("/teams/{t}/settings"),
        format!("/teams/{t}/forum"),
        format!("/teams/{t}/forum?page=2"),
        format!("/teams/{t}/forum/new"),
        format!("/teams/{t}/topics/{topic}"),
        format!("/teams/{t}/meetings/{meeting}"),
        format!("/teams/{t}/events?view=meetings"),
        format!("/teams/{t}/topics/{topic}/events"),
        format!("/teams/{t}/topics/{topic}/messages?before=2"),
        format!("/teams/{t}/recording-files/1"),
        format!("/teams/{t}/schedule"),
        format!("/teams/{t}/scheduled/{s}"),
        format!("/teams/{t}/scheduled/{s}/edit"),
        format!("/teams/{t}/scheduled/{s}/event.ics"),
        format!("/teams/{t}/topics/{topic}/edit"),
        format!("/teams/{t}/topics/{topic}/messages/1/edit"),
        format!("/teams/{t}/search?q=Secret"),
    ];
    let posts: Vec<(String, Vec<(&str, &str)>)> = vec![
        (format!("/teams/{t}/members/{bob_id}/role"), vec![("role", "admin")]),
        (format!("/teams/{t}/members/{bob_id}/remove"), vec![]),
        (format!("/teams/{t}/leave"), vec![]),
        (format!("/teams/{t}/invite/regenerate"), vec![]),
        (format!("/teams/{t}/rename"), vec![("name", "Taken")]),
        (format!("/teams/{t}/delete"), vec![("confirm", "Private")]),
        (format!("/teams/{t}/forum"), vec![("title", "Intruder"), ("body", "x")]),
        (format!("/teams/{t}/topics/{topic}/messages"), vec![("body", "x")]),
        (format!("/teams/{t}/meetings"), vec![("title", "Intruder")]),
        (format!("/teams/{t}/meetings/{meeting}/join"), vec![]),
        (format!("/teams/{t}/meetings/{meeting}/leave"), vec![]),
        (format!("/teams/{t}/meetings/{meeting}/end"), vec![]),
        (format!("/teams/{t}/meetings/{meeting}/media"), vec![]),
        (format!("/teams/{t}/meetings/{meeting}/recordings"), vec![]),
        (format!("/teams/{t}/meetings/{meeting}/recordings/stop"), vec![]),
        (format!("/teams/{t}/recordings/1/delete"), vec![]),
        (format!("/teams/{t}/schedule"), intruder.clone()),
    ];
    // Acting on Alice's plans, topics and messages: refused to outsiders and members alike.
    let on_alices: Vec<(String, Vec<(&str, &str)>)> = vec![
        (format!("/teams/{t}/scheduled/{s}"), intruder.clone()),
        (format!("/teams/{t}/scheduled/{s}/cancel"), vec![]),
        (format!("/teams/{t}/scheduled/{s}/start"), vec![]),
        (format!("/teams/{t}/calendar/new-address"), vec![]),
        (format!("/teams/{t}/topics/{topic}"), vec![("title", "Intruder"), ("body", "x")]),
        (format!("/teams/{t}/topics/{topic}/delete"), vec![]),
        (format!("/teams/{t}/topics/{topic}/lock"), vec![]),
        (format!("/teams/{t}/topics/{topic}/unlock"), vec![]),
        (format!("/teams/{t}/topics/{topic}/pin"), vec![]),
        (format!("/teams/{t}/topics/{topic}/unpin"), vec![]),
        (format!("/teams/{t}/topics/{topic}/messages/1"), vec![("body", "Intruder")]),
        (format!("/teams/{t}/topics/{topic}/messages/1/delete"), vec![]),
    ];
    let posts: Vec<_> = posts.into_iter().chain(on_alices.iter().cloned()).collect();

    // A non-member learns nothing: 404 everywhere, and nothing they post lands.
    for path in &gets {
        let page = eve.get(path).await;
        assert_eq!(page.status, StatusCode::NOT_FOUND, "GET {path} as a non-member");
        assert!(!page.body.contains("Secret"), "GET {path} leaks content");
        // Eve is signed in: the error page must not tell her otherwise.
        assert!(!page.body.contains("href=\"/login\""), "GET {path}: an error page offers to sign in");
    }
    for (path, form) in &posts {
        let page = eve.post_form(path, form).await;
        assert_eq!(page.status, StatusCode::NOT_FOUND, "POST {path} as a non-member");
    }
    // Nor through their own team's id with this team's topic or meeting.
    let eves = eve.post_form("/teams", &[("name", "Eve's")]).await.url;
    let et = eves.split("/teams/").nth(1).expect("team id").to_owned();
    for path in [format!("/teams/{et}/topics/{topic}"), format!("/teams/{et}/meetings/{meeting}")] {
        assert_eq!(eve.get(&path).await.status, StatusCode::NOT_FOUND, "GET {path} across teams");
    }
    let cross = eve.post_form(&format!("/teams/{et}/topics/{topic}/messages"), &[("body", "x")]).await;
    assert_eq!(cross.status, StatusCode::NOT_FOUND);

    // A plain member: admin actions are refused with 403 and a readable reason.
    let admin_only: Vec<(String, Vec<(&str, &str)>)> = vec![
        (format!("/teams/{t}/members/{bob_id}/role"), vec![("role", "admin")]),
        (format!("/teams/{t}/members/{bob_id}/remove"), vec![]),
        (format!("/teams/{t}/invite/regenerate"), vec![]),
        (format!("/teams/{t}/rename"), vec![("name", "Taken")]),
        (format!("/teams/{t}/delete"), vec![("confirm", "Private")]),
        (format!("/teams/{t}/meetings/{meeting}/end"), vec![]),
        (format!("/teams/{t}/meetings/{meeting}/recordings"), vec![]),
        (format!("/teams/{t}/meetings/{meeting}/recordings/stop"), vec![]),
        (format!("/teams/{t}/recordings/1/delete"), vec![]),
    ];
    let admin_only: Vec<_> = admin_only.into_iter().chain(on_alices).collect();
    for (path, form) in &admin_only {
        let page = bob.post_form(path, form).await;
        assert_eq!(page.status, StatusCode::FORBIDDEN, "POST {path} as a member");
        assert!(page.body.contains("Only the"), "POST {path} explains the refusal");
    }
    let settings = bob.get(&format!("/teams/{t}/settings")).await;
    assert_eq!(settings.status, StatusCode::FORBIDDEN);
    assert_eq!(bob.get(&format!("/teams/{t}/scheduled/{s}/edit")).await.status, StatusCode::FORBIDDEN);
    // What members may do still works for them.
    for path in &gets[..3] {
        assert_eq!(bob.get(path).await.status, StatusCode::OK, "GET {path} as a member");
    }
    bob.post_form(&format!("/teams/{t}/topics/{topic}/messages"), &[("body", "Member comment")])
        .await
        .expect_ok_with("Member comment");

    // Nothing the outsider or the member tried changed the team.
    let overview = alice.get(&format!("/teams/{t}")).await;
    overview.expect_ok_with("Private").expect_ok_with("Secret meeting").expect_ok_with("live");
    assert!(!overview.body.contains("Intruder"));
    alice.get(&format!("/teams/{t}/members")).await.expect_ok_with("2 people");
    alice.get(&format!("/teams/{t}/invite")).await.expect_ok_with(&code);
    app.finish().await;
}
