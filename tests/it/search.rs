//! Searching a team on both backends (SQLite FTS5, PostgreSQL tsvector): words in
//! topics, comments and meeting chat; the better match first; never another team's
//! text; markup in snippets escaped before the highlighting; edits and deletions followed.

use reqwest::StatusCode;

use crate::on_both_backends;
use crate::support::{Backend, TestApp};

on_both_backends!(a_team_finds_its_words_in_topics_comments_and_chats_best_first_and_nothing_of_others);

async fn a_team_finds_its_words_in_topics_comments_and_chats_best_first_and_nothing_of_others(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let alice = app.signed_in("Alice").await;
    let eve = app.signed_in("Eve").await;
    let team = alice.post_form("/teams", &[("name", "Finders")]).await.url;
    let t = team.split("/teams/").nth(1).expect("team id").to_owned();
    let other = eve.post_form("/teams", &[("name", "Elsewhere")]).await.url;
    let e = other.split("/teams/").nth(1).expect("team id").to_owned();
    eve.post_form(&format!("/teams/{e}/forum"), &[("title", "Budget secrets"), ("body", "Eve's budget")]).await;

    alice
        .post_form(
            &format!("/teams/{t}/forum"),
            &[("title", "Budget review"), ("body", "We weigh the <b>budget</b> & <script>x()</script> the plan.")],
        )
        .await;
    let notes = alice.post_form(&format!("/teams/{t}/forum"), &[("title", "Notes"), ("body", "Nothing here.")]).await;
    let notes = notes.url.trim_start_matches(&alice.base).to_owned();
    let post = |path: String, body: &'static str| {
        let alice = &alice;
        async move {
            alice.post_form(&format!("{path}/messages"), &[("body", body)]).await.expect_ok_with(body);
        }
    };
    post(notes.clone(), "One budget line in a much longer message, with plenty of other words around it for once.")
        .await;
    post(notes.clone(), "budget budget budget approved").await;
    let meeting = alice.post_form(&format!("/teams/{t}/meetings"), &[("title", "Offsite planning")]).await;
    let chat = format!("/teams/{t}/topics/{}", meeting.between(&format!("/teams/{t}/topics/"), "/"));
    post(chat.clone(), "What budget for the offsite?").await;

    let found = alice.get(&format!("/teams/{t}/search?q=budget")).await;
    found.expect_ok_with("Topics (1)").expect_ok_with("Messages (3)");
    let body = &found.body;
    assert!(!body.contains("Eve") && !body.contains("secrets"), "another team's text: {body}");
    // The user's markup is text in the snippet (SQLite keeps it, escaped; PostgreSQL's
    // headline drops tags): only the match is marked.
    let at = body.find("weigh the").expect("the topic's snippet");
    let snippet = &body[at..(at + 160).min(body.len())];
    assert!(snippet.contains("<mark>budget</mark>") && snippet.contains("&amp;"), "{snippet}");
    assert!(!snippet.contains("<b>") && !body.contains("<script>x()"), "raw markup in a snippet: {snippet}");
    assert!(body.contains("<mark>Budget</mark> review"), "{body}");
    // The better match first.
    let strong = body.find("<mark>budget</mark> <mark>budget</mark>").expect("the repeated word");
    let weak = body.find("<mark>budget</mark> line").expect("the single mention");
    assert!(strong < weak, "budget ×3 ranks above one budget in many words");
    // Every word must be there; any case.
    let both = alice.get(&format!("/teams/{t}/search?q=BUDGET+offsite")).await;
    both.expect_ok_with("Messages (1)").expect_ok_with("<mark>offsite</mark>");
    assert!(!both.body.contains("Topics ("), "{}", both.body);
    // The link goes to the exact message, on the page that shows it.
    let link = both.between("<a href=\"", "\"").replace("&amp;", "&");
    assert!(link.contains("?before=2#m1"), "{link}");
    alice.get(&link).await.expect_ok_with("What budget for the offsite?");
    // Edited and deleted words are not found any more.
    alice.post_form(&format!("{chat}/messages/1"), &[("body", "What money for the trip?")]).await;
    let after_edit = alice.get(&format!("/teams/{t}/search?q=offsite")).await;
    assert!(
        after_edit.body.contains("Topics (1)") && !after_edit.body.contains("Messages ("),
        "only the meeting's title now"
    );
    alice.post_form(&format!("{notes}/messages/2/delete"), &[]).await;
    alice.get(&format!("/teams/{t}/search?q=approved")).await.expect_ok_with("Nothing found.");
    // The team's own token in the index is no word anyone can search for.
    alice.get(&format!("/teams/{t}/search?q=t{t}")).await.expect_ok_with("Nothing found.");
    // Query syntax is words only; an outsider learns nothing.
    alice.get(&format!("/teams/{t}/search?q=%22budget%22+OR+NEAR(x*")).await.expect_ok_with("Nothing found.");
    assert_eq!(eve.get(&format!("/teams/{t}/search?q=budget")).await.status, StatusCode::NOT_FOUND);
    app.finish().await;
}
