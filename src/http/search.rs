//! Searching a team (the box in its header): its topics, comments and meeting chats,
//! best matches first, with the matching words highlighted, each linking to the exact
//! message. Only the team the viewer is a member of (the extractor sees to it).

use axum::Router;
use axum::extract::{Query, State};
use axum::routing::get;
use maud::{Markup, PreEscaped, html};
use serde::Deserialize;

use super::views::{self, Chrome, TeamTab, empty_state};
use super::{AppState, Error, TeamMember};
use crate::store::{Marks, query_words};

pub fn router() -> Router<AppState> {
    Router::new().route("/teams/{team_id}/search", get(search))
}

#[derive(Deserialize)]
struct SearchQuery {
    #[serde(default)]
    q: String,
}

/// A snippet as HTML: the text escaped, then this search's marks made `<mark>`.
pub fn highlighted(snippet: &str, marks: &Marks) -> Markup {
    let escaped = maud::html! { (snippet) }.into_string();
    PreEscaped(escaped.replace(&marks.start, "<mark>").replace(&marks.end, "</mark>"))
}

async fn search(State(state): State<AppState>, m: TeamMember, Query(q): Query<SearchQuery>) -> Result<Markup, Error> {
    let query: String = q.q.chars().take(200).collect();
    let words = query_words(&query);
    if !words.is_empty()
        && let Err(wait) = state.search_rate.allow(m.user_id(), std::time::Instant::now())
    {
        return Err(Error::TooMany(format!(
            "You are searching faster than this server allows. Try again in {wait} s."
        )));
    }
    let hits = match state.store.search(m.team.id, &words).await {
        Ok(hits) => hits,
        Err(crate::store::Error::SearchBusy) => {
            return Err(Error::Unavailable("Many searches are running right now. Try again in a few seconds.".into()));
        }
        Err(crate::store::Error::SearchTooLong) => {
            tracing::warn!(team_id = m.team.id, words = words.len(), "a search was stopped for taking too long");
            return Err(Error::Unavailable(
                "This search took too long and was stopped. Try more or rarer words.".into(),
            ));
        }
        Err(e) => return Err(e.into()),
    };
    let (topics, messages, marks) = (hits.topics, hits.messages, hits.marks);
    let t = m.team.id;
    Ok(views::page(
        Chrome { user: Some(&m.viewer.user), csrf: &m.viewer.csrf.0 },
        &format!("Search: {query}"),
        html! {
            (views::team_header(&m.team, m.role, TeamTab::Forum))
            section.card #search-results {
                form.row method="get" action=(format!("/teams/{t}/search")) role="search" {
                    div.grow {
                        label for="search-q" { "Search " (m.team.name) }
                        input #search-q type="search" name="q" value=(query) maxlength="200" required;
                    }
                    button.primary type="submit" { "Search" }
                }
                @if words.is_empty() {
                    p.muted { "Type one or more words: topics, comments and meeting chats that have them all are listed." }
                } @else if topics.is_empty() && messages.is_empty() {
                    (empty_state("Nothing found.", html! { "No topic or message of this team has all of these words." }))
                } @else {
                    @if !topics.is_empty() {
                        h2 { "Topics (" (topics.len()) ")" }
                        ul.search-hits {
                            @for hit in &topics {
                                li {
                                    a href=(format!("/teams/{t}/topics/{}", hit.topic_id)) aria-label=(hit.title) { strong { (highlighted(&hit.title_marked, &marks)) } }
                                    @if !hit.snippet.is_empty() { div.small { (highlighted(&hit.snippet, &marks)) } }
                                }
                            }
                        }
                    }
                    @if !messages.is_empty() {
                        h2 { "Messages (" (messages.len()) ")" }
                        ul.search-hits {
                            @for hit in &messages {
                                li {
                                    // The page of the topic that holds this message, at it.
                                    a href=(format!("/teams/{t}/topics/{}?before={}#m{}", hit.topic_id, hit.seq + 1, hit.seq)) {
                                        (hit.author_name) " in " em { (hit.topic_title) }
                                    }
                                    span.muted.small { " · " (views::time(hit.created_at)) }
                                    div.small { (highlighted(&hit.snippet, &marks)) }
                                }
                            }
                        }
                    }
                }
            }
        },
    ))
}
