//! Meetings planned ahead: a form (title, date and time in a time zone, duration,
//! description), a page per scheduled meeting with its `.ics`, the team's private
//! calendar feed (a secret address that Google Calendar, Outlook and Thunderbird can
//! subscribe to; admins make a new one), and starting it. Who starts it: its host or a
//! team admin, at any time (early too); until then members see when it starts. Started,
//! it is the usual live meeting with its topic and chat.
//!
//! Calendars get times in UTC (RFC 5545 allows it, and it needs no VTIMEZONE): the
//! local time is turned into an instant with the time zone's rules for that date, so a
//! meeting at 10:00 in Paris stays at 10:00 across the change to summer time.

use axum::Router;
use axum::extract::{Path, State};
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};

use super::form::Form;
use icalendar::{Calendar, Component, EventLike, EventStatus};
use maud::{Markup, html};
use serde::Deserialize;

use super::meetings::MAX_MEETING_TITLE;
use super::views::{self, Chrome, TeamTab, csrf_field, empty_state, field_error};
use super::{AppState, Error, ScheduledInTeam, TeamMember};
use crate::bus::{Changed, Event};
use crate::clock::now_ms;
use crate::store::{Plan, Scheduled};

pub const MAX_DESCRIPTION: usize = 4_000;
const MAX_DURATION_MINUTES: i64 = 24 * 60;
/// How soon before its start a scheduled meeting says "starts in N minutes".
const SOON_MINUTES: i64 = 60;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/teams/{team_id}/schedule", get(new_form).post(create))
        .route("/teams/{team_id}/scheduled/{scheduled_id}", get(page).post(update))
        .route("/teams/{team_id}/scheduled/{scheduled_id}/edit", get(edit_form))
        .route("/teams/{team_id}/scheduled/{scheduled_id}/cancel", post(cancel))
        .route("/teams/{team_id}/scheduled/{scheduled_id}/start", post(start))
        .route("/teams/{team_id}/scheduled/{scheduled_id}/event.ics", get(one_ics))
        .route("/teams/{team_id}/calendar/new-address", post(new_address))
        .route("/calendar/{secret}/team.ics", get(feed))
}

fn chrome(m: &TeamMember) -> Chrome<'_> {
    Chrome { user: Some(&m.viewer.user), csrf: &m.viewer.csrf.0 }
}

#[derive(Deserialize, Default)]
struct PlanForm {
    #[serde(default)]
    title: String,
    #[serde(default)]
    date: String,
    #[serde(default)]
    time: String,
    #[serde(default)]
    time_zone: String,
    #[serde(default)]
    duration: String,
    #[serde(default)]
    description: String,
}

/// What is wrong with a form, field by field.
#[derive(Default)]
struct Problems {
    title: Option<String>,
    when: Option<String>,
    duration: Option<String>,
    description: Option<String>,
}

impl Problems {
    fn any(&self) -> bool {
        self.title.is_some() || self.when.is_some() || self.duration.is_some() || self.description.is_some()
    }
}

/// The instant a local date and time has in `zone` (Unix ms), or what is wrong.
pub fn instant_in(date: &str, time: &str, zone: &str) -> Result<i64, String> {
    let tz = jiff::tz::TimeZone::get(zone.trim())
        .map_err(|_| format!("“{}” is not a time zone Floo knows (say Europe/Paris or UTC).", zone.trim()))?;
    let local: jiff::civil::DateTime = format!("{}T{}", date.trim(), time.trim())
        .parse()
        .map_err(|_| "Give a date and a time (YYYY-MM-DD and HH:MM).".to_owned())?;
    let zoned = local.to_zoned_datetime(tz).map_err(|e| format!("That time does not exist there: {e}."))?;
    Ok(zoned.timestamp().as_millisecond())
}

/// `ms` as a date and time in `zone` (UTC if it is unknown), formatted by `format`.
fn zoned(ms: i64, zone: &str, format: &str) -> String {
    let tz = jiff::tz::TimeZone::get(zone).unwrap_or(jiff::tz::TimeZone::UTC);
    jiff::Timestamp::from_millisecond(ms)
        .map(|t| t.to_zoned_datetime(tz).strftime(format).to_string())
        .unwrap_or_default()
}

/// `ms` as a date and time in `zone` ("Tue 8 Dec 2026, 15:00").
pub fn in_zone(ms: i64, zone: &str) -> String {
    zoned(ms, zone, "%a %-d %b %Y, %H:%M")
}

/// The form's date and time fields for `ms` in `zone`.
fn fields_of(ms: i64, zone: &str) -> (String, String) {
    (zoned(ms, zone, "%Y-%m-%d"), zoned(ms, zone, "%H:%M"))
}

/// Checks a form; the plan's instant and duration, or the problems.
fn check(form: &PlanForm) -> Result<(i64, i64), Problems> {
    let mut p = Problems::default();
    let title = form.title.trim();
    let n = title.chars().count();
    if title.is_empty() {
        p.title = Some("Give the meeting a title.".into());
    } else if n > MAX_MEETING_TITLE {
        p.title = Some(format!("A title can be at most {MAX_MEETING_TITLE} characters (this one has {n})."));
    }
    let starts = instant_in(&form.date, &form.time, &form.time_zone);
    if let Err(e) = &starts {
        p.when = Some(e.clone());
    }
    let duration = form.duration.trim().parse::<i64>().ok().filter(|d| (5..=MAX_DURATION_MINUTES).contains(d));
    if duration.is_none() {
        p.duration = Some(format!("A meeting lasts from 5 to {MAX_DURATION_MINUTES} minutes."));
    }
    let d = form.description.trim().chars().count();
    if d > MAX_DESCRIPTION {
        p.description = Some(format!("A description can be at most {MAX_DESCRIPTION} characters (this one has {d})."));
    }
    match (starts, duration, p.any()) {
        (Ok(at), Some(minutes), false) => Ok((at, minutes)),
        _ => Err(p),
    }
}

fn plan_of<'a>(form: &'a PlanForm, starts_at: i64, duration_minutes: i64) -> Plan<'a> {
    Plan {
        title: form.title.trim(),
        description: form.description.trim(),
        starts_at,
        duration_minutes,
        time_zone: form.time_zone.trim(),
    }
}

fn form_view(m: &TeamMember, action: &str, heading: &str, form: &PlanForm, p: &Problems) -> Markup {
    views::page(
        chrome(m),
        heading,
        html! {
            (views::team_header(&m.team, m.role, TeamTab::Meetings))
            section.card {
                h2 { (heading) }
                form method="post" action=(action) {
                    (csrf_field(&m.viewer.csrf.0))
                    label for="title" { "Title" }
                    input #title type="text" name="title" value=(form.title) maxlength=(MAX_MEETING_TITLE) required
                        placeholder="e.g. Tuesday planning";
                    (field_error(p.title.as_deref()))
                    div.fields {
                        div { label for="date" { "Date" } input #date type="date" name="date" value=(form.date) required; }
                        div { label for="time" { "Time" } input #time type="time" name="time" value=(form.time) required; }
                        div.grow {
                            label for="time-zone" { "Time zone" }
                            input #time-zone type="text" name="time_zone" value=(form.time_zone) required list="time-zones"
                                placeholder="Europe/Paris";
                            datalist #time-zones {
                                @for z in COMMON_ZONES { option value=(z) {} }
                            }
                        }
                        div {
                            label for="duration" { "Minutes" }
                            input #duration type="number" name="duration" min="5" max=(MAX_DURATION_MINUTES) step="5"
                                value=(if form.duration.is_empty() { "60" } else { &form.duration }) required;
                        }
                    }
                    (field_error(p.when.as_deref()))
                    (field_error(p.duration.as_deref()))
                    label for="description" { "Description " span.muted { "(optional: the agenda, say)" } }
                    textarea #description name="description" rows="5" maxlength=(MAX_DESCRIPTION) { (form.description) }
                    (field_error(p.description.as_deref()))
                    button.primary type="submit" { (heading) }
                }
            }
        },
    )
}

/// Zones offered in the form's list (any IANA name is accepted).
const COMMON_ZONES: &[&str] = &[
    "UTC",
    "Europe/London",
    "Europe/Paris",
    "Europe/Berlin",
    "Europe/Madrid",
    "Europe/Athens",
    "Europe/Moscow",
    "America/New_York",
    "America/Chicago",
    "America/Denver",
    "America/Los_Angeles",
    "America/Sao_Paulo",
    "Asia/Dubai",
    "Asia/Kolkata",
    "Asia/Shanghai",
    "Asia/Tokyo",
    "Australia/Sydney",
];

async fn new_form(m: TeamMember) -> Markup {
    let form = PlanForm::default();
    form_view(&m, &format!("/teams/{}/schedule", m.team.id), "Schedule a meeting", &form, &Problems::default())
}

async fn create(State(state): State<AppState>, m: TeamMember, Form(form): Form<PlanForm>) -> Result<Response, Error> {
    let action = format!("/teams/{}/schedule", m.team.id);
    let (starts_at, minutes) = match check(&form) {
        Ok(ok) => ok,
        Err(p) => {
            let page = form_view(&m, &action, "Schedule a meeting", &form, &p);
            return Ok((axum::http::StatusCode::UNPROCESSABLE_ENTITY, page).into_response());
        }
    };
    if let Err(problem) = super::limits::allow_creation(&state, m.user_id()) {
        let p = Problems { title: Some(problem), ..Problems::default() };
        let page = form_view(&m, &action, "Schedule a meeting", &form, &p);
        return Ok((axum::http::StatusCode::TOO_MANY_REQUESTS, page).into_response());
    }
    let id =
        state.store.schedule_meeting(m.team.id, m.user_id(), &plan_of(&form, starts_at, minutes), now_ms()).await?;
    state.bus.publish(Event::TeamChanged { team_id: m.team.id, changed: Changed::MEETINGS });
    Ok(Redirect::to(&format!("/teams/{}/scheduled/{id}", m.team.id)).into_response())
}

/// "starts in 12 minutes", "started", "cancelled"… for a scheduled meeting at `now`.
pub fn when_text(s: &Scheduled, now: i64) -> String {
    if s.cancelled_at.is_some() {
        return "cancelled".into();
    }
    if s.meeting_id.is_some() {
        return "started".into();
    }
    let minutes = (s.starts_at - now + 59_999) / 60_000;
    match minutes {
        m if m >= 2 * 24 * 60 => format!("in {} days", m / (24 * 60)),
        m if m >= 120 => format!("in {} hours", m / 60),
        m if m > SOON_MINUTES => "in about an hour".into(),
        m if m > 1 => format!("starts in {m} minutes"),
        1 => "starts in a minute".into(),
        _ if now < s.ends_at() => "due now: waiting for the host to start it".into(),
        _ => "its time has passed".into(),
    }
}

async fn page(st: ScheduledInTeam) -> Markup {
    let now = now_ms();
    let can_act = st.require_host_or_admin().is_ok();
    let (m, s) = (&st.member, &st.scheduled);
    let base = format!("/teams/{}/scheduled/{}", m.team.id, s.id);
    views::page(
        chrome(m),
        &s.title,
        html! {
            (views::team_header(&m.team, m.role, TeamTab::Meetings))
            section.card #scheduled {
                h2 { (s.title) @if s.cancelled_at.is_some() { " " span.badge { "cancelled" } } }
                p {
                    strong { (in_zone(s.starts_at, &s.time_zone)) } " (" (s.time_zone) ") · " (s.duration_minutes) " minutes"
                    " · scheduled by " (s.host_name)
                }
                p #scheduled-when.muted { (when_text(s, now)) }
                @if !s.description.is_empty() { (views::rendered_markdown(crate::markdown::to_safe_html(&s.description))) }
                div.actions {
                    @if let Some(meeting_id) = s.meeting_id {
                        a.button.primary href=(format!("/teams/{}/meetings/{meeting_id}", m.team.id)) { "Go to the meeting" }
                    } @else if s.cancelled_at.is_none() && can_act {
                        form.inline method="post" action=(format!("{base}/start")) {
                            (csrf_field(&m.viewer.csrf.0))
                            button.primary type="submit" { "Start the meeting" }
                        }
                        a.button href=(format!("{base}/edit")) { "Edit" }
                        form.inline method="post" action=(format!("{base}/cancel")) {
                            (csrf_field(&m.viewer.csrf.0))
                            button.danger type="submit" { "Cancel the meeting" }
                        }
                    }
                    a.button href=(format!("{base}/event.ics")) download { "Add to my calendar (.ics)" }
                }
            }
        },
    )
}

async fn edit_form(st: ScheduledInTeam) -> Result<Markup, Error> {
    st.require_host_or_admin()?;
    let (m, s) = (&st.member, &st.scheduled);
    let (date, time) = fields_of(s.starts_at, &s.time_zone);
    let form = PlanForm {
        title: s.title.clone(),
        date,
        time,
        time_zone: s.time_zone.clone(),
        duration: s.duration_minutes.to_string(),
        description: s.description.clone(),
    };
    let action = format!("/teams/{}/scheduled/{}", m.team.id, s.id);
    Ok(form_view(m, &action, "Save the changes", &form, &Problems::default()))
}

async fn update(
    State(state): State<AppState>,
    st: ScheduledInTeam,
    Form(form): Form<PlanForm>,
) -> Result<Response, Error> {
    st.require_host_or_admin()?;
    let (m, s) = (&st.member, &st.scheduled);
    let action = format!("/teams/{}/scheduled/{}", m.team.id, s.id);
    let (starts_at, minutes) = match check(&form) {
        Ok(ok) => ok,
        Err(p) => {
            let page = form_view(m, &action, "Save the changes", &form, &p);
            return Ok((axum::http::StatusCode::UNPROCESSABLE_ENTITY, page).into_response());
        }
    };
    if !state.store.reschedule(s.id, &plan_of(&form, starts_at, minutes)).await? {
        return Err(Error::Conflict("This meeting has started or was cancelled; it cannot be changed.".into()));
    }
    state.bus.publish(Event::TeamChanged { team_id: m.team.id, changed: Changed::MEETINGS });
    Ok(Redirect::to(&action).into_response())
}

async fn cancel(State(state): State<AppState>, st: ScheduledInTeam) -> Result<Response, Error> {
    st.require_host_or_admin()?;
    let (m, s) = (&st.member, &st.scheduled);
    if !state.store.cancel_scheduled(s.id, now_ms()).await? {
        return Err(Error::Conflict("This meeting has started or was cancelled already.".into()));
    }
    state.bus.publish(Event::TeamChanged { team_id: m.team.id, changed: Changed::MEETINGS });
    Ok(Redirect::to(&format!("/teams/{}/scheduled/{}", m.team.id, s.id)).into_response())
}

async fn start(State(state): State<AppState>, st: ScheduledInTeam) -> Result<Response, Error> {
    st.require_host_or_admin()?;
    let (m, s) = (&st.member, &st.scheduled);
    if s.cancelled_at.is_some() {
        return Err(Error::Conflict("This meeting was cancelled.".into()));
    }
    let meeting_id = state.store.start_scheduled(s, m.user_id(), now_ms()).await?;
    state.bus.publish(Event::TeamChanged { team_id: m.team.id, changed: Changed::MEETINGS | Changed::TOPICS });
    tracing::info!(team_id = m.team.id, meeting_id, scheduled = s.id, "scheduled meeting started");
    Ok(Redirect::to(&format!("/teams/{}/meetings/{meeting_id}", m.team.id)).into_response())
}

/// The iCalendar event of a scheduled meeting: a stable UID, its SEQUENCE, and
/// STATUS:CANCELLED once cancelled.
fn event(state: &AppState, s: &Scheduled) -> icalendar::Event {
    let host = url::Url::parse(&state.public_url).ok().and_then(|u| u.host_str().map(str::to_owned));
    let uid = format!("scheduled-{}-team-{}@{}", s.id, s.team_id, host.as_deref().unwrap_or("floo"));
    let at = |ms: i64| chrono::DateTime::from_timestamp_millis(ms).unwrap_or_default();
    let mut e = icalendar::Event::new();
    e.uid(&uid)
        .summary(&calendar_text(&s.title))
        .starts(at(s.starts_at))
        .ends(at(s.ends_at()))
        .timestamp(at(s.created_at.max(s.cancelled_at.unwrap_or(0))))
        .sequence(u32::try_from(s.sequence).unwrap_or(0))
        .url(&format!("{}/teams/{}/scheduled/{}", state.public_url, s.team_id, s.id))
        .status(if s.cancelled_at.is_some() { EventStatus::Cancelled } else { EventStatus::Confirmed });
    if !s.description.is_empty() {
        e.description(&calendar_text(&s.description));
    }
    e.done()
}

/// Text as iCalendar may carry it (RFC 5545 §3.3.11 allows no control character but the
/// line breaks it escapes): a lone CR becomes a line break, CRLF one break, and every
/// other control character goes. A bare CR would otherwise start a line of its own in
/// clients that split on it (`ATTENDEE:`, `END:VEVENT` — an injection).
fn calendar_text(text: &str) -> String {
    text.replace("\r\n", "\n")
        .chars()
        .filter_map(|c| match c {
            '\r' => Some('\n'),
            '\n' | '\t' => Some(c),
            c if c.is_control() => None,
            c => Some(c),
        })
        .collect()
}

fn calendar_response(name: &str, events: Vec<icalendar::Event>, file: &str) -> Response {
    let mut calendar = Calendar::new();
    calendar.name(&calendar_text(name));
    for e in events {
        calendar.push(e);
    }
    let mut response = calendar.done().to_string().into_response();
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("text/calendar; charset=utf-8"));
    if let Ok(v) = HeaderValue::from_str(&format!("attachment; filename=\"{file}\"")) {
        headers.insert(header::CONTENT_DISPOSITION, v);
    }
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("private, no-cache"));
    response
}

async fn one_ics(State(state): State<AppState>, st: ScheduledInTeam) -> Response {
    let s = &st.scheduled;
    calendar_response(&st.member.team.name, vec![event(&state, s)], &format!("floo-meeting-{}.ics", s.id))
}

/// The team's feed, for calendar applications: no sign-in, the secret is the key.
async fn feed(State(state): State<AppState>, Path(secret): Path<String>) -> Result<Response, Error> {
    if secret.len() != 64 || !secret.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(Error::NotFound);
    }
    let (team_id, name) = state.store.team_of_calendar(&secret).await?.ok_or(Error::NotFound)?;
    let events = state.store.calendar(team_id, now_ms()).await?.iter().map(|s| event(&state, s)).collect();
    Ok(calendar_response(&format!("{name} (Floo)"), events, "team.ics"))
}

async fn new_address(State(state): State<AppState>, m: TeamMember) -> Result<Response, Error> {
    m.require_admin()?;
    state.store.new_calendar_secret(m.team.id).await?;
    tracing::info!(team_id = m.team.id, by = m.user_id(), "calendar feed address replaced");
    Ok(Redirect::to(&format!("/teams/{}#calendar", m.team.id)).into_response())
}

/// The overview's list of meetings to come (shared by every reader: no per-viewer parts).
pub fn upcoming_list(team_id: i64, upcoming: &[Scheduled]) -> Markup {
    html! {
        @if upcoming.is_empty() {
            (empty_state("Nothing scheduled.", html! { "Plan one ahead: it goes into everyone's calendar." }))
        } @else {
            ul.meetings.upcoming {
                @for s in upcoming {
                    li.meeting {
                        div {
                            a href=(format!("/teams/{team_id}/scheduled/{}", s.id)) { strong { (s.title) } }
                        }
                        div.muted.small {
                            (in_zone(s.starts_at, &s.time_zone)) " (" (s.time_zone) ") · " (s.duration_minutes) " min · by " (s.host_name)
                        }
                    }
                }
            }
        }
    }
}

/// The overview's card of what is to come, with the calendar feed's address.
pub fn upcoming_card(m: &TeamMember, upcoming: &[Scheduled], feed_url: &str) -> Markup {
    html! {
        section.card #upcoming-card {
            div.card-head {
                h2 { "Upcoming" }
                a.button href=(format!("/teams/{}/schedule", m.team.id)) { "Schedule a meeting" }
            }
            div #upcoming-list sse-swap="upcoming" hx-swap="innerHTML" { (upcoming_list(m.team.id, upcoming)) }
            details #calendar {
                summary { "Subscribe to the team's calendar" }
                p.small { "In Google Calendar, Outlook or Thunderbird, add a calendar “from URL” with this private address. Anyone who has it sees the team's meetings: keep it to yourself." }
                input #calendar-url type="text" readonly value=(feed_url);
                @if m.role.is_admin() {
                    form.inline method="post" action=(format!("/teams/{}/calendar/new-address", m.team.id)) {
                        (csrf_field(&m.viewer.csrf.0))
                        button.small type="submit" { "Make a new address (the old one stops working)" }
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plan(starts_at: i64) -> Scheduled {
        Scheduled {
            id: 1,
            team_id: 1,
            title: "Planning".into(),
            description: String::new(),
            starts_at,
            duration_minutes: 30,
            time_zone: "Europe/Paris".into(),
            created_by: 1,
            host_name: "Alice".into(),
            created_at: 0,
            sequence: 0,
            cancelled_at: None,
            meeting_id: None,
        }
    }

    #[test]
    fn a_plan_says_how_soon_it_starts() {
        let now = 1_000_000_000_000;
        let minutes = |m: i64| plan(now + m * 60_000);
        assert_eq!(when_text(&minutes(3 * 24 * 60), now), "in 3 days");
        assert_eq!(when_text(&minutes(5 * 60), now), "in 5 hours");
        assert_eq!(when_text(&minutes(12), now), "starts in 12 minutes");
        assert_eq!(when_text(&minutes(1), now), "starts in a minute");
        assert_eq!(when_text(&minutes(-5), now), "due now: waiting for the host to start it");
        assert_eq!(when_text(&minutes(-45), now), "its time has passed");
        let cancelled = Scheduled { cancelled_at: Some(now), ..minutes(10) };
        assert_eq!(when_text(&cancelled, now), "cancelled");
    }

    #[test]
    fn local_times_become_instants_by_the_zones_rules_for_that_day() {
        // 10:00 in Paris: 09:00 UTC in winter, 08:00 UTC in summer.
        assert_eq!(instant_in("2027-03-20", "10:00", "Europe/Paris"), Ok(1_805_533_200_000));
        assert_eq!(instant_in("2027-04-03", "10:00", "Europe/Paris"), Ok(1_806_739_200_000));
        assert!(instant_in("2027-04-03", "10:00", "Mars/Olympus").unwrap_err().contains("not a time zone"));
        assert!(instant_in("03/04/2027", "10:00", "UTC").unwrap_err().contains("YYYY-MM-DD"));
        assert_eq!(in_zone(1_806_739_200_000, "Europe/Paris"), "Sat 3 Apr 2027, 10:00");
    }

    #[test]
    fn calendar_text_carries_no_control_character_but_line_breaks() {
        let text = "Plan\rATTENDEE:evil@example.com\r\nEND:VEVENT\0\u{b}\u{c}\u{1b}[31m\u{7f}\u{85} done\tok";
        assert_eq!(calendar_text(text), "Plan\nATTENDEE:evil@example.com\nEND:VEVENT[31m done\tok");
    }
}
