//! The team forum: topics by latest activity with paging, writing a topic (markdown),
//! a topic with its comments, and commenting (an htmx POST that appends the comment).

use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::{Form, Router};
use maud::{Markup, html};
use serde::Deserialize;

use super::views::{self, Chrome, TeamTab, csrf_field, empty_state, field_error};
use super::{AppState, Error, TeamMember, TopicInTeam, wants_fragment};
use crate::clock::now_ms;
use crate::markdown::to_safe_html;
use crate::store::{Message, Topic, TopicKind};

pub const MAX_TITLE: usize = 200;
pub const MAX_BODY: usize = 20_000;
pub const MAX_COMMENT: usize = 4_000;
const TOPICS_PER_PAGE: i64 = 20;
const COMMENTS_PER_PAGE: i64 = 50;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/teams/{team_id}/forum", get(forum).post(create_topic))
        .route("/teams/{team_id}/forum/new", get(new_topic))
        .route("/teams/{team_id}/topics/{topic_id}", get(topic))
        .route("/teams/{team_id}/topics/{topic_id}/comments", post(comment))
}

#[derive(Deserialize)]
struct PageQuery {
    page: Option<i64>,
}

fn chrome(m: &TeamMember) -> Chrome<'_> {
    Chrome { user: Some(&m.viewer.user), csrf: &m.viewer.csrf.0 }
}

fn page_count(total: i64, per_page: i64) -> i64 {
    ((total + per_page - 1) / per_page).max(1)
}

async fn forum(State(state): State<AppState>, m: TeamMember, Query(q): Query<PageQuery>) -> Result<Markup, Error> {
    let page = q.page.unwrap_or(1).max(1);
    let (topics, total) = state.store.list_topics(m.team.id, (page - 1) * TOPICS_PER_PAGE, TOPICS_PER_PAGE).await?;
    let pages = page_count(total, TOPICS_PER_PAGE);
    let base = format!("/teams/{}/forum", m.team.id);
    Ok(views::page(
        chrome(&m),
        &format!("Forum of {}", m.team.name),
        html! {
            (views::team_header(&m.team, m.role, TeamTab::Forum))
            section.card {
                div.card-head {
                    h2 { "Topics" }
                    a.button.primary href=(format!("{base}/new")) { "New topic" }
                }
                @if topics.is_empty() {
                    (empty_state("No topics yet.", html! { "Start the conversation: write the first topic." }))
                } @else {
                    ul.topics {
                        @for t in &topics { (topic_item(t)) }
                    }
                }
                (views::pager(&base, page, pages, ("Newer", "Older")))
            }
        },
    ))
}

fn topic_item(t: &Topic) -> Markup {
    html! {
        li.topic {
            a href=(format!("/teams/{}/topics/{}", t.team_id, t.id)) { strong { (t.title) } }
            @if t.kind == TopicKind::Meeting { " " span.badge.meeting { "meeting" } }
            div.muted.small {
                (t.author_name) " · " (t.last_seq) @if t.last_seq == 1 { " message" } @else { " messages" }
                " · last activity " (views::time(t.last_activity_at))
            }
        }
    }
}

fn new_topic_view(m: &TeamMember, title: &str, body: &str, errors: (Option<&str>, Option<&str>)) -> Markup {
    views::page(
        chrome(m),
        "New topic",
        html! {
            (views::team_header(&m.team, m.role, TeamTab::Forum))
            section.card {
                h2 { "New topic" }
                form method="post" action=(format!("/teams/{}/forum", m.team.id)) {
                    (csrf_field(&m.viewer.csrf.0))
                    label for="title" { "Title" }
                    input #title type="text" name="title" value=(title) maxlength=(MAX_TITLE) required;
                    (field_error(errors.0))
                    label for="body" { "Text " span.muted { "(Markdown: **bold**, *italic*, `code`, [links](https://…), lists)" } }
                    textarea #body name="body" rows="10" maxlength=(MAX_BODY) { (body) }
                    (field_error(errors.1))
                    button.primary type="submit" { "Post topic" }
                }
            }
        },
    )
}

async fn new_topic(m: TeamMember) -> Markup {
    new_topic_view(&m, "", "", (None, None))
}

#[derive(Deserialize)]
struct TopicForm {
    title: String,
    body: String,
}

/// Checks a text against a limit, counting characters as people do.
fn too_long(text: &str, max: usize, what: &str) -> Option<String> {
    let n = text.chars().count();
    (n > max).then(|| format!("{what} can be at most {max} characters (this one has {n})."))
}

async fn create_topic(
    State(state): State<AppState>,
    m: TeamMember,
    Form(form): Form<TopicForm>,
) -> Result<Response, Error> {
    let title = form.title.trim();
    let body = form.body.trim_end();
    let title_error = if title.is_empty() {
        Some("Give the topic a title.".to_owned())
    } else {
        too_long(title, MAX_TITLE, "A title")
    };
    let body_error = too_long(body, MAX_BODY, "The text");
    if title_error.is_some() || body_error.is_some() {
        let page = new_topic_view(&m, &form.title, &form.body, (title_error.as_deref(), body_error.as_deref()));
        return Ok((StatusCode::UNPROCESSABLE_ENTITY, page).into_response());
    }
    let id = state.store.create_topic(m.team.id, m.user_id(), title, body, now_ms()).await?;
    Ok(Redirect::to(&format!("/teams/{}/topics/{id}", m.team.id)).into_response())
}

async fn topic(State(state): State<AppState>, t: TopicInTeam, Query(q): Query<PageQuery>) -> Result<Markup, Error> {
    let pages = page_count(t.topic.last_seq, COMMENTS_PER_PAGE);
    // Default to the latest page: that is where the conversation is.
    let page = q.page.unwrap_or(pages).clamp(1, pages);
    let first = (page - 1) * COMMENTS_PER_PAGE + 1;
    let messages = state.store.messages_between(t.topic.id, first, first + COMMENTS_PER_PAGE - 1).await?;
    Ok(topic_view(&t, &messages, page, pages, "", None))
}

fn topic_view(
    t: &TopicInTeam,
    messages: &[Message],
    page: i64,
    pages: i64,
    draft: &str,
    error: Option<&str>,
) -> Markup {
    let m = &t.member;
    let base = format!("/teams/{}/topics/{}", m.team.id, t.topic.id);
    html! {
        (views::page(chrome(m), &t.topic.title, html! {
            (views::team_header(&m.team, m.role, TeamTab::Forum))
            article.card {
                h1 { (t.topic.title) }
                p.muted.small { (t.topic.author_name) " · " (views::time(t.topic.created_at)) }
                @if let Some(meeting_id) = t.topic.meeting_id {
                    p { a.button href=(format!("/teams/{}/meetings/{meeting_id}", m.team.id)) { "Open the meeting" } }
                }
                (views::rendered_markdown(to_safe_html(&t.topic.body)))
            }
            section.card {
                h2 { @if t.topic.kind == TopicKind::Meeting { "Meeting chat" } @else { "Comments" } }
                (views::pager(&base, page, pages, ("Earlier", "Later")))
                div #comments {
                    @if messages.is_empty() {
                        div.empty #no-comments { p.muted { "No messages yet." } }
                    }
                    @for msg in messages { (comment_item(msg)) }
                }
                (comment_form(t, draft, error))
            }
        }))
    }
}

fn comment_item(msg: &Message) -> Markup {
    html! {
        div.comment #(format!("m{}", msg.seq)) {
            div.comment-meta { strong { (msg.author_name) } " " span.muted.small { (views::time(msg.created_at)) } }
            (views::rendered_markdown(to_safe_html(&msg.body)))
        }
    }
}

fn comment_form(t: &TopicInTeam, draft: &str, error: Option<&str>) -> Markup {
    let action = format!("/teams/{}/topics/{}/comments", t.member.team.id, t.topic.id);
    html! {
        form #comment-form method="post" action=(action) hx-post=(action) hx-target="this" hx-swap="outerHTML" {
            (csrf_field(&t.member.viewer.csrf.0))
            label for="comment-body" { "Write a message" }
            textarea #comment-body name="body" rows="3" maxlength=(MAX_COMMENT) required { (draft) }
            (field_error(error))
            button.primary type="submit" { "Send" }
        }
    }
}

#[derive(Deserialize)]
struct CommentForm {
    body: String,
}

async fn comment(
    State(state): State<AppState>,
    t: TopicInTeam,
    headers: HeaderMap,
    Form(form): Form<CommentForm>,
) -> Result<Response, Error> {
    let body = form.body.trim();
    let problem = if body.is_empty() {
        Some("Write something first.".to_owned())
    } else {
        too_long(body, MAX_COMMENT, "A message")
    };
    let fragment = wants_fragment(&headers);
    if let Some(problem) = problem {
        let markup = if fragment {
            comment_form(&t, &form.body, Some(&problem))
        } else {
            let pages = page_count(t.topic.last_seq, COMMENTS_PER_PAGE);
            let first = (pages - 1) * COMMENTS_PER_PAGE + 1;
            let messages = state.store.messages_between(t.topic.id, first, first + COMMENTS_PER_PAGE - 1).await?;
            topic_view(&t, &messages, pages, pages, &form.body, Some(&problem))
        };
        return Ok((StatusCode::UNPROCESSABLE_ENTITY, markup).into_response());
    }
    let msg = state.store.add_message(t.topic.id, t.member.user_id(), body, now_ms()).await?;
    if fragment {
        // A fresh form in place, the new message appended to the list out of band.
        return Ok(html! {
            (comment_form(&t, "", None))
            div hx-swap-oob="beforeend:#comments" { (comment_item(&msg)) }
            div #no-comments hx-swap-oob="delete" {}
        }
        .into_response());
    }
    let page = page_count(msg.seq, COMMENTS_PER_PAGE);
    Ok(Redirect::to(&format!("/teams/{}/topics/{}?page={page}#m{}", t.member.team.id, t.topic.id, msg.seq))
        .into_response())
}
