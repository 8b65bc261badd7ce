//! The team forum: topics by latest activity with paging, writing a topic (markdown),
//! a topic with its messages (the chat panel of `chat`). The first page of topics follows
//! the team live.

use axum::Router;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};

use super::form::Form;
use maud::{Markup, html};
use serde::Deserialize;

use super::chat::{chat_panel, load_messages};
use super::recordings::recordings_panel;
use super::views::{self, Chrome, TeamTab, csrf_field, empty_state, field_error};
use super::{AppState, Error, TeamMember, TopicInTeam};
use crate::bus::{Changed, Event};
use crate::clock::now_ms;
use crate::markdown::to_safe_html;
use crate::store::{Topic, TopicFlag, TopicKind};

pub const MAX_TITLE: usize = 200;
pub const MAX_BODY: usize = 20_000;
pub const TOPICS_PER_PAGE: i64 = 20;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/teams/{team_id}/forum", get(forum).post(create_topic))
        .route("/teams/{team_id}/forum/new", get(new_topic))
        .route("/teams/{team_id}/topics/{topic_id}", get(topic).post(save_topic))
        .route("/teams/{team_id}/topics/{topic_id}/edit", get(edit_topic))
        .route("/teams/{team_id}/topics/{topic_id}/delete", post(delete_topic))
        .route("/teams/{team_id}/topics/{topic_id}/lock", post(lock))
        .route("/teams/{team_id}/topics/{topic_id}/unlock", post(unlock))
        .route("/teams/{team_id}/topics/{topic_id}/pin", post(pin))
        .route("/teams/{team_id}/topics/{topic_id}/unpin", post(unpin))
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
    let (reads, joined) = state.store.reads_in_team(m.user_id(), m.team.id).await?;
    let reads_json = serde_json::to_string(
        &reads.iter().map(|(t, s)| (t.to_string(), *s)).collect::<std::collections::HashMap<_, _>>(),
    )
    .unwrap_or_else(|_| "{}".into());
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
                @if page == 1 {
                    // The first page follows the team live; later pages stay as they were.
                    div hx-ext="sse" sse-connect=(format!("/teams/{}/events?view=forum", m.team.id)) {
                        // What this member has read, for the page to mark what is new (the
                        // list itself is the same for every reader).
                        div #topic-list sse-swap="topics" hx-swap="innerHTML" data-reads=(reads_json) data-joined=(joined) {
                            (topic_list(&topics))
                        }
                    }
                } @else {
                    (topic_list(&topics))
                }
                (views::pager(&base, page, pages, ("Newer", "Older")))
            }
        },
    ))
}

/// The topics of one page of the forum.
pub fn topic_list(topics: &[Topic]) -> Markup {
    html! {
        @if topics.is_empty() {
            (empty_state("No topics yet.", html! { "Start the conversation: write the first topic." }))
        } @else {
            ul.topics {
                @for t in topics { (topic_item(t)) }
            }
        }
    }
}

fn topic_item(t: &Topic) -> Markup {
    html! {
        li.topic data-topic=(t.id) data-seq=(t.last_seq) data-activity=(t.last_activity_at) {
            a href=(format!("/teams/{}/topics/{}", t.team_id, t.id)) { strong { (t.title) } }
            @if t.pinned_at.is_some() { " " span.badge.pinned { "pinned" } }
            @if t.locked_at.is_some() { " " span.badge { "locked" } }
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
/// What is wrong with a topic's title and text, if anything.
fn topic_problems(title: &str, body: &str) -> (Option<String>, Option<String>) {
    let title_error = if title.is_empty() {
        Some("Give the topic a title.".to_owned())
    } else {
        too_long(title, MAX_TITLE, "A title")
    };
    (title_error, too_long(body, MAX_BODY, "The text"))
}

fn too_long(text: &str, max: usize, what: &str) -> Option<String> {
    let n = text.chars().count();
    (n > max).then(|| format!("{what} can be at most {max} characters (this one has {n})."))
}

async fn create_topic(
    State(state): State<AppState>,
    m: TeamMember,
    Form(form): Form<TopicForm>,
) -> Result<Response, Error> {
    let (title, body) = (form.title.trim(), form.body.trim_end());
    let (title_error, body_error) = topic_problems(title, body);
    if title_error.is_some() || body_error.is_some() {
        let page = new_topic_view(&m, &form.title, &form.body, (title_error.as_deref(), body_error.as_deref()));
        return Ok((StatusCode::UNPROCESSABLE_ENTITY, page).into_response());
    }
    if let Err(problem) = super::limits::allow_creation(&state, m.user_id()) {
        let page = new_topic_view(&m, &form.title, &form.body, (Some(&problem), None));
        return Ok((StatusCode::TOO_MANY_REQUESTS, page).into_response());
    }
    let id = state.store.create_topic(m.team.id, m.user_id(), title, body, now_ms()).await?;
    state.bus.publish(Event::TeamChanged { team_id: m.team.id, changed: Changed::TOPICS });
    Ok(Redirect::to(&format!("/teams/{}/topics/{id}", m.team.id)).into_response())
}

#[derive(Deserialize)]
struct TopicQuery {
    before: Option<i64>,
}

async fn topic(State(state): State<AppState>, t: TopicInTeam, Query(q): Query<TopicQuery>) -> Result<Markup, Error> {
    let messages = load_messages(&state.store, t.topic.id, t.topic.last_seq, q.before).await?;
    if q.before.is_none() {
        state.store.mark_read(t.member.user_id(), t.topic.id, t.topic.last_seq).await?;
    }
    let panel = chat_panel(&t, &messages, q.before, "", None);
    // A meeting's topic lists the meeting's recordings under its chat.
    let recordings = match t.topic.meeting_id {
        Some(id) => match state.store.meeting(t.member.team.id, id).await? {
            Some(meeting) => {
                let list = state.store.meeting_recordings(id).await?;
                (!list.is_empty()).then(|| recordings_panel(&meeting, &list, &t.member.viewer.csrf.0))
            }
            None => None,
        },
        None => None,
    };
    Ok(topic_page(&t, maud::html! { (panel) @if let Some(r) = recordings { (r) } }))
}

/// What the viewer may do to a topic: its author edits it and deletes it (a post; a
/// meeting's topic goes with its meeting), admins delete, lock and pin it.
fn topic_actions(t: &TopicInTeam) -> Markup {
    let m = &t.member;
    let base = format!("/teams/{}/topics/{}", m.team.id, t.topic.id);
    let author = t.topic.author_id == m.user_id();
    let admin = m.role.is_admin();
    let post = t.topic.kind == TopicKind::Post;
    let button = |what: &str, label: &str| {
        html! {
            form.inline method="post" action=(format!("{base}/{what}")) {
                (csrf_field(&m.viewer.csrf.0))
                button.small type="submit" { (label) }
            }
        }
    };
    html! {
        @if author || admin {
            div.actions.topic-actions {
                @if author && (t.topic.locked_at.is_none() || admin) { a.button.small href=(format!("{base}/edit")) { "Edit" } }
                @if admin {
                    @if t.topic.pinned_at.is_some() { (button("unpin", "Unpin")) } @else { (button("pin", "Pin to the top")) }
                    @if t.topic.locked_at.is_some() { (button("unlock", "Unlock")) } @else { (button("lock", "Lock")) }
                }
                @if post {
                    form.inline method="post" action=(format!("{base}/delete")) hx-confirm="Delete this topic and all its comments?" {
                        (csrf_field(&m.viewer.csrf.0))
                        button.small.danger type="submit" { "Delete" }
                    }
                }
            }
        }
    }
}

/// Only its author edits a topic, and a locked one only if they are an admin too.
fn may_edit(t: &TopicInTeam) -> Result<(), Error> {
    if t.topic.author_id != t.member.user_id() {
        return Err(Error::Forbidden("Only the author of a topic can edit it.".into()));
    }
    if t.topic.locked_at.is_some() && !t.member.role.is_admin() {
        return Err(Error::Conflict("This topic is locked: it cannot be edited.".into()));
    }
    Ok(())
}

async fn edit_topic(t: TopicInTeam) -> Result<Markup, Error> {
    may_edit(&t)?;
    Ok(edit_topic_view(&t, &t.topic.title, &t.topic.body, (None, None)))
}

fn edit_topic_view(t: &TopicInTeam, title: &str, body: &str, errors: (Option<&str>, Option<&str>)) -> Markup {
    let m = &t.member;
    views::page(
        chrome(m),
        "Edit the topic",
        html! {
            (views::team_header(&m.team, m.role, TeamTab::Forum))
            section.card {
                h2 { "Edit the topic" }
                form method="post" action=(format!("/teams/{}/topics/{}", m.team.id, t.topic.id)) {
                    (csrf_field(&m.viewer.csrf.0))
                    label for="title" { "Title" }
                    input #title type="text" name="title" value=(title) maxlength=(MAX_TITLE) required;
                    (field_error(errors.0))
                    label for="body" { "Text" }
                    textarea #body name="body" rows="10" maxlength=(MAX_BODY) { (body) }
                    (field_error(errors.1))
                    div.actions {
                        button.primary type="submit" { "Save" }
                        a.button href=(format!("/teams/{}/topics/{}", m.team.id, t.topic.id)) { "Cancel" }
                    }
                }
            }
        },
    )
}

async fn save_topic(
    State(state): State<AppState>,
    t: TopicInTeam,
    Form(form): Form<TopicForm>,
) -> Result<Response, Error> {
    may_edit(&t)?;
    let (title, body) = (form.title.trim(), form.body.trim_end());
    let (title_error, body_error) = topic_problems(title, body);
    if title_error.is_some() || body_error.is_some() {
        let page = edit_topic_view(&t, &form.title, &form.body, (title_error.as_deref(), body_error.as_deref()));
        return Ok((StatusCode::UNPROCESSABLE_ENTITY, page).into_response());
    }
    let event = state.store.edit_topic(t.topic.id, title, body, now_ms()).await?;
    // Its readers see it at once; the forum and meeting lists show the new title.
    state.bus.publish(Event::TopicEdited(std::sync::Arc::new(crate::bus::LiveTopic {
        team_id: t.member.team.id,
        topic_id: t.topic.id,
        event,
        title: title.to_owned(),
        body: body.to_owned(),
        encoded: Default::default(),
    })));
    state.bus.publish(Event::TeamChanged { team_id: t.member.team.id, changed: Changed::TOPICS | Changed::MEETINGS });
    Ok(Redirect::to(&format!("/teams/{}/topics/{}", t.member.team.id, t.topic.id)).into_response())
}

async fn delete_topic(State(state): State<AppState>, t: TopicInTeam) -> Result<Response, Error> {
    if t.topic.author_id != t.member.user_id() && !t.member.role.is_admin() {
        return Err(Error::Forbidden("Only the author of a topic or a team admin can delete it.".into()));
    }
    if t.topic.kind == TopicKind::Meeting {
        return Err(Error::Conflict("A meeting's topic holds its chat: it stays with the meeting.".into()));
    }
    state.store.delete_topic(t.topic.id).await?;
    state.bus.publish(Event::TopicGone { topic_id: t.topic.id });
    state.bus.publish(Event::TeamChanged { team_id: t.member.team.id, changed: Changed::TOPICS });
    tracing::info!(team_id = t.member.team.id, topic_id = t.topic.id, by = t.member.user_id(), "topic deleted");
    Ok(Redirect::to(&format!("/teams/{}/forum", t.member.team.id)).into_response())
}

/// An admin sets or clears a flag on a topic.
async fn flag(state: &AppState, t: &TopicInTeam, flag: TopicFlag, on: bool) -> Result<Response, Error> {
    t.member.require_admin()?;
    state.store.set_topic_flag(t.topic.id, flag, on.then(now_ms)).await?;
    state.bus.publish(Event::TeamChanged { team_id: t.member.team.id, changed: Changed::TOPICS });
    Ok(Redirect::to(&format!("/teams/{}/topics/{}", t.member.team.id, t.topic.id)).into_response())
}

async fn lock(State(state): State<AppState>, t: TopicInTeam) -> Result<Response, Error> {
    flag(&state, &t, TopicFlag::Locked, true).await
}

async fn unlock(State(state): State<AppState>, t: TopicInTeam) -> Result<Response, Error> {
    flag(&state, &t, TopicFlag::Locked, false).await
}

async fn pin(State(state): State<AppState>, t: TopicInTeam) -> Result<Response, Error> {
    flag(&state, &t, TopicFlag::Pinned, true).await
}

async fn unpin(State(state): State<AppState>, t: TopicInTeam) -> Result<Response, Error> {
    flag(&state, &t, TopicFlag::Pinned, false).await
}

/// A topic's title and text as its live stream sends them after an edit (the page puts
/// them in place: `floo.js`).
pub fn topic_text(title: &str, body: &str) -> Markup {
    html! {
        span #topic-title { (title) }
        div #topic-body { (views::rendered_markdown(to_safe_html(body))) }
    }
}

/// A topic's page around its chat panel.
pub fn topic_page(t: &TopicInTeam, panel: Markup) -> Markup {
    let m = &t.member;
    views::page(
        chrome(m),
        &t.topic.title,
        html! {
            (views::team_header(&m.team, m.role, TeamTab::Forum))
            article.card #topic {
                h1 {
                    span #topic-title { (t.topic.title) }
                    @if t.topic.pinned_at.is_some() { " " span.badge { "pinned" } }
                    @if t.topic.locked_at.is_some() { " " span.badge { "locked" } }
                }
                p.muted.small {
                    (t.topic.author_name) " · " (views::time(t.topic.created_at))
                    span #topic-edited hidden[t.topic.edited_at.is_none()] { " · edited" }
                }
                @if let Some(meeting_id) = t.topic.meeting_id {
                    p { a.button href=(format!("/teams/{}/meetings/{meeting_id}", m.team.id)) { "Open the meeting" } }
                }
                div #topic-body { (views::rendered_markdown(to_safe_html(&t.topic.body))) }
                (topic_actions(t))
            }
            (panel)
        },
    )
}
