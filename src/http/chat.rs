//! A topic's messages — the comments of a forum post and the chat of a meeting alike:
//! the chat panel (latest messages, earlier ones on demand, the form), posting, and the
//! live stream (Server-Sent Events) that resumes exactly from `Last-Event-ID`.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Instant;

use axum::body::Bytes;
use bytes::BytesMut;

use axum::Router;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};

use super::form::Form;
use maud::{Markup, html};
use serde::Deserialize;
use tokio::sync::{broadcast, watch};

use super::views::{self, csrf_field, field_error};
use super::{AppState, Error, TopicInTeam, wants_fragment};
use crate::bus::{Changed, Event, Key, LiveMessage, LiveTopic};
use crate::clock::now_ms;
use crate::markdown::to_safe_html;
use crate::store::{Message, Store, TopicKind};

pub const MAX_MESSAGE: usize = 4_000;
/// Messages shown at once, and loaded per "earlier messages" step.
pub const PAGE: i64 = 50;
/// Messages a resuming stream reads from the database per query.
const BACKLOG_BATCH: i64 = 500;
/// At most this much goes out in one write when several messages are at hand.
const MAX_WRITE: usize = 64 * 1024;
/// A stream writes at most once in this long: messages closer together go out together
/// (see [`TopicReader::next`]). Imperceptible in a chat; halves the writes of a busy one.
const WRITE_EVERY: std::time::Duration = std::time::Duration::from_millis(50);

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/teams/{team_id}/topics/{topic_id}/messages", get(earlier).post(post_message))
        .route("/teams/{team_id}/topics/{topic_id}/events", get(stream))
        .route("/teams/{team_id}/topics/{topic_id}/messages/{seq}", post(edit_message))
        .route("/teams/{team_id}/topics/{topic_id}/messages/{seq}/edit", get(edit_form))
        .route("/teams/{team_id}/topics/{topic_id}/messages/{seq}/delete", post(delete_message))
}

fn base(t: &TopicInTeam) -> String {
    format!("/teams/{}/topics/{}", t.member.team.id, t.topic.id)
}

/// One message as every page shows it (also what live streams send, the same bytes to
/// every reader): so its Edit and Delete are there for everyone, hidden, and the page
/// shows them to whom they are for (`floo.js`: the author edits and deletes, team
/// admins delete); the server decides either way.
pub fn message_item(team_id: i64, msg: &Message) -> Markup {
    let at = |what: &str| format!("/teams/{team_id}/topics/{}/messages/{}{what}", msg.topic_id, msg.seq);
    html! {
        @if msg.deleted_at.is_some() {
            div.comment.deleted #(format!("m{}", msg.seq)) data-author=(msg.author_id) {
                div.comment-meta { strong { (msg.author_name) } " " span.muted.small { (views::time(msg.created_at)) } }
                p.muted { em { "message deleted" } }
            }
        } @else {
            div.comment #(format!("m{}", msg.seq)) data-author=(msg.author_id) {
                div.comment-meta {
                    strong { (msg.author_name) } " " span.muted.small { (views::time(msg.created_at)) }
                    @if msg.edited_at.is_some() { " " span.muted.small.edited { "· edited" } }
                    // Boosted like every link, but onto the whole page, not into the list.
                    span.msg-actions hidden hx-target="body" hx-swap="innerHTML" hx-push-url="true" {
                        " " a.small.msg-edit href=(at("/edit")) { "Edit" }
                        form.inline.msg-delete method="post" action=(at("/delete")) hx-confirm="Delete this message for everyone?" {
                            button.link.small type="submit" { "Delete" }
                        }
                    }
                }
                (views::rendered_markdown(to_safe_html(&msg.body)))
            }
        }
    }
}

/// The newest messages of a topic (or those before `before`), oldest first.
pub async fn load_messages(
    store: &Store,
    topic_id: i64,
    last_seq: i64,
    before: Option<i64>,
) -> Result<Vec<Message>, Error> {
    let end = before.map(|b| b - 1).unwrap_or(last_seq).min(last_seq);
    if end < 1 {
        return Ok(Vec::new());
    }
    Ok(store.messages_between(topic_id, (end - PAGE + 1).max(1), end).await?)
}

fn earlier_button(t: &TopicInTeam, first_seq: i64) -> Markup {
    let href = format!("{}?before={first_seq}", base(t));
    let fragment = format!("{}/messages?before={first_seq}", base(t));
    html! {
        @if first_seq > 1 {
            a.button.load-earlier href=(href) hx-get=(fragment) hx-target="this" hx-swap="outerHTML" hx-push-url="false" {
                "Load earlier messages"
            }
        }
    }
}

/// The chat panel: messages (live when showing the latest), and the form to write.
/// `before` set means an earlier stretch is shown, which does not go live.
pub fn chat_panel(
    t: &TopicInTeam,
    messages: &[Message],
    before: Option<i64>,
    draft: &str,
    error: Option<&str>,
) -> Markup {
    let first_seq = messages.first().map(|m| m.seq).unwrap_or(t.topic.last_seq + 1);
    let title = if t.topic.kind == TopicKind::Meeting { "Meeting chat" } else { "Comments" };
    // Who may act on which message (the messages themselves are the same for everyone).
    let moderator = if t.member.role.is_admin() { "1" } else { "0" };
    html! {
        section.card.chat #chat data-me=(t.member.user_id()) data-moderator=(moderator) {
            h2 { (title) }
            @if before.is_none() {
                // The stream resumes after the topic's latest event: new messages, and
                // edits and deletions of those shown.
                div hx-ext="sse" sse-connect=(format!("{}/events?after={}", base(t), t.topic.last_event)) {
                    (earlier_button(t, first_seq))
                    // The topic's own text after an edit, put in place by floo.js.
                    div hidden sse-swap="topic" hx-swap="none" {}
                    div #comments sse-swap="message" hx-swap="beforeend" {
                        @for msg in messages { (message_item(t.member.team.id, msg)) }
                    }
                    @if messages.is_empty() { p.muted.no-messages { "No messages yet. Write the first one." } }
                }
                (message_form(t, draft, error))
            } @else {
                (earlier_button(t, first_seq))
                div #comments { @for msg in messages { (message_item(t.member.team.id, msg)) } }
                p { a.button href=(base(t)) { "Show the latest messages" } }
            }
        }
    }
}

fn message_form(t: &TopicInTeam, draft: &str, error: Option<&str>) -> Markup {
    let action = format!("{}/messages", base(t));
    if t.topic.locked_at.is_some() {
        return html! { p.notice #comment-form { "This topic is locked by the team's admins: no new messages." } };
    }
    html! {
        form #comment-form method="post" action=(action) hx-post=(action) hx-target="this" hx-swap="outerHTML" {
            (csrf_field(&t.member.viewer.csrf.0))
            label for="comment-body" { "Write a message" }
            textarea #comment-body name="body" rows="3" maxlength=(MAX_MESSAGE) required
                placeholder="Markdown works: **bold**, *italic*, `code`, links" { (draft) }
            (field_error(error))
            button.primary type="submit" { "Send" }
        }
    }
}

#[derive(Deserialize)]
struct Before {
    before: Option<i64>,
}

/// Earlier messages, for "Load earlier messages": a fragment for htmx, else the page.
async fn earlier(
    State(state): State<AppState>,
    t: TopicInTeam,
    headers: HeaderMap,
    Query(q): Query<Before>,
) -> Result<Response, Error> {
    if !wants_fragment(&headers) {
        let target = match q.before {
            Some(before) => format!("{}?before={before}", base(&t)),
            None => base(&t),
        };
        return Ok(Redirect::to(&target).into_response());
    }
    let messages = load_messages(&state.store, t.topic.id, t.topic.last_seq, q.before).await?;
    let first_seq = messages.first().map(|m| m.seq).unwrap_or(1);
    Ok(html! {
        (earlier_button(&t, first_seq))
        @for msg in &messages { (message_item(t.member.team.id, msg)) }
    }
    .into_response())
}

#[derive(Deserialize)]
struct MessageForm {
    body: String,
}

async fn post_message(
    State(state): State<AppState>,
    t: TopicInTeam,
    headers: HeaderMap,
    Form(form): Form<MessageForm>,
) -> Result<Response, Error> {
    if t.topic.locked_at.is_some() {
        return Err(Error::Conflict("This topic is locked by the team's admins: no new messages.".into()));
    }
    let body = form.body.trim();
    let n = body.chars().count();
    let (problem, status) = if body.is_empty() {
        (Some("Write something first.".to_owned()), StatusCode::UNPROCESSABLE_ENTITY)
    } else if n > MAX_MESSAGE {
        (
            Some(format!("A message can be at most {MAX_MESSAGE} characters (this one has {n}).")),
            StatusCode::UNPROCESSABLE_ENTITY,
        )
    } else if let Err(wait) = state.post_rate.allow(t.member.user_id(), Instant::now()) {
        (
            Some(format!("You are sending messages faster than this server allows. Wait {wait} s and send again.")),
            StatusCode::TOO_MANY_REQUESTS,
        )
    } else {
        (None, StatusCode::OK)
    };
    let fragment = wants_fragment(&headers);
    if let Some(problem) = problem {
        let markup = if fragment {
            message_form(&t, &form.body, Some(&problem))
        } else {
            let messages = load_messages(&state.store, t.topic.id, t.topic.last_seq, None).await?;
            super::forum::topic_page(&t, chat_panel(&t, &messages, None, &form.body, Some(&problem)))
        };
        return Ok((status, markup).into_response());
    }
    let message = state.store.add_message(t.topic.id, t.member.user_id(), body, now_ms()).await?;
    state.store.mark_read(t.member.user_id(), t.topic.id, message.seq).await?;
    crate::metrics::metrics().chat_messages.inc();
    let seq = message.seq;
    // Stored first; now everyone concerned hears of it.
    state.bus.publish(Event::Message(Arc::new(LiveMessage {
        team_id: t.member.team.id,
        message,
        encoded: Default::default(),
    })));
    state.bus.publish(Event::TeamChanged { team_id: t.member.team.id, changed: Changed::TOPICS });
    if fragment {
        // The message itself arrives through the live stream, in order with everyone else's.
        return Ok(message_form(&t, "", None).into_response());
    }
    Ok(Redirect::to(&format!("{}#m{seq}", base(&t))).into_response())
}

#[derive(Deserialize)]
struct After {
    after: Option<i64>,
}

/// The live stream of a topic's messages. Resumes after `Last-Event-ID` (sent by the
/// browser on reconnect) or `after` (the last message the page showed).
async fn stream(
    State(state): State<AppState>,
    t: TopicInTeam,
    headers: HeaderMap,
    Query(q): Query<After>,
) -> Result<Response, Error> {
    let user_id = t.member.user_id();
    let slot = state.streams.acquire(user_id).ok_or_else(super::limits::too_many_streams)?;
    let last_event_id = headers.get("last-event-id").and_then(|v| v.to_str().ok()).and_then(|v| v.trim().parse().ok());
    let after = last_event_id.or(q.after).unwrap_or(t.topic.last_event).max(0);
    // Subscribe before reading the backlog, so nothing falls between the two.
    let reader = TopicReader {
        store: state.store.clone(),
        messages: state.bus.subscribe(Key::Topic(t.topic.id)),
        removed: state.bus.subscribe(Key::Member { team_id: t.member.team.id, user_id }),
        resync: state.bus.resyncs(),
        closing: state.closing.clone(),
        topic_id: t.topic.id,
        team_id: t.member.team.id,
        user_id,
        last_event: after,
        backlog: VecDeque::new(),
        catching_up: true,
        keep_alive: super::sse::KeepAlive::new(),
        last_write: None,
        delivered: 0,
        _slot: slot,
    };
    Ok(super::sse::stream(reader))
}

/// What a topic's stream sends: a message as it now is, or the topic's new text.
enum Item {
    Message(Arc<LiveMessage>),
    Topic(Arc<crate::bus::LiveTopic>),
}

impl Item {
    fn event(&self) -> i64 {
        match self {
            Item::Message(m) => m.message.event,
            Item::Topic(t) => t.event,
        }
    }
}

/// One reader's position in a topic: what it has been sent, and what is queued for it.
struct TopicReader {
    store: Store,
    messages: broadcast::Receiver<Event>,
    /// Told when this reader is removed from the team.
    removed: broadcast::Receiver<Event>,
    resync: watch::Receiver<u64>,
    closing: watch::Receiver<bool>,
    topic_id: i64,
    team_id: i64,
    user_id: i64,
    /// The topic event last sent (messages and their edits and deletions).
    last_event: i64,
    backlog: VecDeque<Item>,
    /// Whether the database may hold events after `last_event` not yet queued.
    catching_up: bool,
    keep_alive: super::sse::KeepAlive,
    /// When this stream last wrote messages.
    last_write: Option<Instant>,
    /// The newest message (`seq`) this stream delivered: read, once the page goes.
    delivered: i64,
    _slot: super::limits::StreamSlot,
}

impl Drop for TopicReader {
    /// What an open page received live was read: one write when the stream ends (not
    /// one per message and reader, which a busy chat could not afford).
    fn drop(&mut self) {
        if self.delivered == 0 {
            return;
        }
        let (store, user_id, topic_id, seq) = (self.store.clone(), self.user_id, self.topic_id, self.delivered);
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            runtime.spawn(async move {
                if let Err(e) = store.mark_read(user_id, topic_id, seq).await {
                    tracing::debug!(error = %e, topic_id, "cannot record what a live page read");
                }
            });
        }
    }
}

impl super::sse::Source for TopicReader {
    fn next_frame(&mut self) -> impl std::future::Future<Output = Option<Bytes>> + Send {
        self.next()
    }
}

impl TopicReader {
    /// The next SSE events, or None when the stream must end (membership lost, failure).
    /// Messages already at hand go out together, in one write: a reader that fell a
    /// little behind catches up with one system call, not one per message.
    async fn next(&mut self) -> Option<Bytes> {
        let first = self.next_message().await?;
        // A busy chat: what arrives within [`WRITE_EVERY`] of the last write waits for
        // the end of it and goes out with whatever else came meanwhile. One write (one
        // system call, one wake-up) then carries several messages; a quiet chat's
        // messages go out at once.
        if let Some(due) = self.last_write.map(|at| at + WRITE_EVERY)
            && due > Instant::now()
        {
            tokio::time::sleep_until(due.into()).await;
        }
        self.last_write = Some(Instant::now());
        let Some(second) = self.ready_message() else {
            self.keep_alive.sent();
            return Some(first);
        };
        let mut out = BytesMut::with_capacity(first.len() * 4);
        out.extend_from_slice(&first);
        out.extend_from_slice(&second);
        while out.len() < MAX_WRITE
            && let Some(more) = self.ready_message()
        {
            out.extend_from_slice(&more);
        }
        self.keep_alive.sent();
        Some(out.freeze())
    }

    /// The next message's frame (or a keep-alive), waiting for it.
    async fn next_message(&mut self) -> Option<Bytes> {
        loop {
            if let Some(frame) = self.queued_frame() {
                return Some(frame);
            }
            if self.catching_up {
                self.catch_up().await?;
                continue;
            }
            tokio::select! {
                event = self.messages.recv() => self.take(event)?,
                event = self.removed.recv() => {
                    super::live::still_member(event, &self.store, self.team_id, self.user_id).await?;
                }
                changed = self.resync.changed() => {
                    changed.ok()?;
                    self.check_membership().await?;
                    self.catching_up = true;
                }
                () = super::limits::closed(&mut self.closing) => return None,
                () = self.keep_alive.due() => return Some(Bytes::from_static(super::sse::KEEP_ALIVE)),
            }
        }
    }

    /// The next message's frame if one is at hand without waiting or reading the database.
    fn ready_message(&mut self) -> Option<Bytes> {
        loop {
            if let Some(frame) = self.queued_frame() {
                return Some(frame);
            }
            if self.catching_up {
                return None;
            }
            match self.messages.try_recv() {
                Ok(event) => self.take(Ok(event))?,
                Err(broadcast::error::TryRecvError::Lagged(n)) => {
                    self.take(Err(broadcast::error::RecvError::Lagged(n)))?;
                }
                // Empty, or closed (which the next wait sees and ends the stream on).
                Err(_) => return None,
            }
        }
    }

    /// Queues a live message or topic edit if it is the next event; notes a gap
    /// otherwise. None when the channel closed.
    fn take(&mut self, event: Result<Event, broadcast::error::RecvError>) -> Option<()> {
        let item = match &event {
            Ok(Event::Message(live)) => Some(Item::Message(Arc::clone(live))),
            Ok(Event::TopicEdited(topic)) => Some(Item::Topic(Arc::clone(topic))),
            _ => None,
        };
        if let Some(item) = item {
            if item.event() == self.last_event + 1 {
                self.backlog.push_back(item);
            } else if item.event() > self.last_event {
                // A gap: something was lost on the way; the database has it.
                self.catching_up = true;
            }
            return Some(());
        }
        match event {
            // The topic was deleted.
            Ok(Event::TopicGone { .. }) => return None,
            Ok(_) => {}
            Err(broadcast::error::RecvError::Lagged(_)) => self.catching_up = true,
            Err(broadcast::error::RecvError::Closed) => return None,
        }
        Some(())
    }

    /// The frame of the first queued event not yet sent.
    fn queued_frame(&mut self) -> Option<Bytes> {
        while let Some(item) = self.backlog.pop_front() {
            if item.event() <= self.last_event {
                continue;
            }
            self.last_event = item.event();
            return Some(match item {
                Item::Message(live) => {
                    self.delivered = self.delivered.max(live.message.seq);
                    live.encoded
                        .get_or_init(|| {
                            let html = message_item(live.team_id, &live.message).into_string();
                            super::sse::frame(Some(live.message.event), "message", &html)
                        })
                        .clone()
                }
                Item::Topic(topic) => topic
                    .encoded
                    .get_or_init(|| {
                        let html = super::forum::topic_text(&topic.title, &topic.body).into_string();
                        super::sse::frame(Some(topic.event), "topic", &html)
                    })
                    .clone(),
            });
        }
        None
    }

    /// Queues what the database holds after `last_event`, a batch at a time: the
    /// messages changed since, and the topic itself if it was edited since.
    async fn catch_up(&mut self) -> Option<()> {
        let read = async {
            let batch = self.store.messages_changed_after(self.topic_id, self.last_event, BACKLOG_BATCH).await?;
            let topic = self.store.topic(self.team_id, self.topic_id).await?;
            Ok::<_, crate::store::Error>((batch, topic))
        };
        let (batch, topic) = match read.await {
            Ok((batch, Some(topic))) => (batch, topic),
            // The topic is gone.
            Ok((_, None)) => return None,
            Err(e) => {
                tracing::warn!(error = %e, topic_id = self.topic_id, "live stream cannot read messages; closing it");
                return None;
            }
        };
        let full = batch.len() as i64 == BACKLOG_BATCH;
        let last_in_batch = batch.last().map_or(i64::MAX, |m| m.event);
        self.catching_up = full;
        let mut items: Vec<Item> = batch
            .into_iter()
            .map(|message| {
                Item::Message(Arc::new(LiveMessage { team_id: self.team_id, message, encoded: Default::default() }))
            })
            .collect();
        if let Some(edited) = topic.edited_event.filter(|e| *e > self.last_event && (!full || *e <= last_in_batch)) {
            items.push(Item::Topic(Arc::new(LiveTopic {
                team_id: self.team_id,
                topic_id: topic.id,
                event: edited,
                title: topic.title,
                body: topic.body,
                encoded: Default::default(),
            })));
            items.sort_by_key(Item::event);
        }
        self.backlog.extend(items);
        Some(())
    }

    async fn check_membership(&self) -> Option<()> {
        super::live::is_member(&self.store, self.team_id, self.user_id).await
    }
}

#[derive(Deserialize)]
struct MessagePath {
    seq: i64,
}

/// Where to go back to after acting on a message: the page it was done from (the
/// meeting page, say) if it is one of this team's, else the topic.
fn back_to(t: &TopicInTeam, headers: &HeaderMap, seq: i64) -> String {
    let team = format!("/teams/{}/", t.member.team.id);
    headers
        .get(axum::http::header::REFERER)
        .and_then(|v| v.to_str().ok())
        .and_then(|r| url::Url::parse(r).ok())
        .map(|u| u.path().to_owned())
        .filter(|p| p.starts_with(&team) && !p.contains("/edit"))
        .map(|p| format!("{p}#m{seq}"))
        .unwrap_or_else(|| format!("{}#m{seq}", base(t)))
}

/// The message at `seq`, if it is there and not deleted.
async fn live_message(state: &AppState, t: &TopicInTeam, seq: i64) -> Result<Message, Error> {
    let message = state.store.message(t.topic.id, seq).await?.ok_or(Error::NotFound)?;
    if message.deleted_at.is_some() {
        return Err(Error::Conflict("This message was deleted.".into()));
    }
    Ok(message)
}

fn edit_view(t: &TopicInTeam, seq: i64, body: &str, error: Option<&str>) -> Markup {
    let action = format!("{}/messages/{seq}", base(t));
    super::forum::topic_page(
        t,
        html! {
            section.card {
                h2 { "Edit your message" }
                form method="post" action=(action) {
                    (csrf_field(&t.member.viewer.csrf.0))
                    label for="comment-body" { "Message" }
                    textarea #comment-body name="body" rows="5" maxlength=(MAX_MESSAGE) required { (body) }
                    (field_error(error))
                    div.actions {
                        button.primary type="submit" { "Save" }
                        a.button href=(format!("{}#m{seq}", base(t))) { "Cancel" }
                    }
                }
            }
        },
    )
}

async fn edit_form(State(state): State<AppState>, t: TopicInTeam, Path(p): Path<MessagePath>) -> Result<Markup, Error> {
    let message = live_message(&state, &t, p.seq).await?;
    if message.author_id != t.member.user_id() {
        return Err(Error::Forbidden("Only the author of a message can edit it.".into()));
    }
    Ok(edit_view(&t, p.seq, &message.body, None))
}

async fn edit_message(
    State(state): State<AppState>,
    t: TopicInTeam,
    Path(p): Path<MessagePath>,
    headers: HeaderMap,
    Form(form): Form<MessageForm>,
) -> Result<Response, Error> {
    let message = live_message(&state, &t, p.seq).await?;
    if message.author_id != t.member.user_id() {
        return Err(Error::Forbidden("Only the author of a message can edit it.".into()));
    }
    if t.topic.locked_at.is_some() {
        return Err(Error::Conflict(
            "This topic is locked by the team's admins: its messages stay as they are.".into(),
        ));
    }
    let body = form.body.trim();
    let n = body.chars().count();
    let problem = if body.is_empty() {
        Some("Write something, or delete the message instead.".to_owned())
    } else if n > MAX_MESSAGE {
        Some(format!("A message can be at most {MAX_MESSAGE} characters (this one has {n})."))
    } else if let Err(wait) = state.post_rate.allow(t.member.user_id(), Instant::now()) {
        Some(format!("You are sending messages faster than this server allows. Wait {wait} s and save again."))
    } else {
        None
    };
    if let Some(problem) = problem {
        return Ok((StatusCode::UNPROCESSABLE_ENTITY, edit_view(&t, p.seq, &form.body, Some(&problem))).into_response());
    }
    if let Some(changed) = state.store.change_message(t.topic.id, p.seq, Some(body), now_ms()).await? {
        publish_change(&state, &t, changed);
    }
    Ok(Redirect::to(&back_to(&t, &headers, p.seq)).into_response())
}

async fn delete_message(
    State(state): State<AppState>,
    t: TopicInTeam,
    Path(p): Path<MessagePath>,
    headers: HeaderMap,
) -> Result<Response, Error> {
    let message = live_message(&state, &t, p.seq).await?;
    if message.author_id != t.member.user_id() && !t.member.role.is_admin() {
        return Err(Error::Forbidden("Only the author of a message or a team admin can delete it.".into()));
    }
    if let Some(changed) = state.store.change_message(t.topic.id, p.seq, None, now_ms()).await? {
        if changed.author_id != t.member.user_id() {
            tracing::info!(
                topic_id = t.topic.id,
                seq = p.seq,
                by = t.member.user_id(),
                "message deleted by a moderator"
            );
        }
        publish_change(&state, &t, changed);
    }
    Ok(Redirect::to(&back_to(&t, &headers, p.seq)).into_response())
}

/// Tells the topic's live readers that a message changed (its new event).
fn publish_change(state: &AppState, t: &TopicInTeam, message: Message) {
    state.bus.publish(Event::Message(Arc::new(LiveMessage {
        team_id: t.member.team.id,
        message,
        encoded: Default::default(),
    })));
}
