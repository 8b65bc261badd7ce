//! A team's own pages: the meetings overview, members and their roles, the invite
//! code and link, and the settings (rename, delete).

use axum::Router;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};

use super::form::Form;
use maud::{Markup, html};
use serde::Deserialize;

use super::home::{MAX_TEAM_NAME, parse_team_name};
use super::meetings::{MAX_MEETING_TITLE, meeting_list};
use super::views::{self, Chrome, TeamTab, csrf_field, field_error};
use super::{AppState, Error, TeamMember};
use crate::auth::new_invite_code;
use crate::bus::{Changed, Event};
use crate::clock::now_ms;
use crate::store::{Member, Role};

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/teams/{team_id}", get(overview))
        .route("/teams/{team_id}/members", get(members))
        .route("/teams/{team_id}/members/{user_id}/role", post(change_role))
        .route("/teams/{team_id}/members/{user_id}/remove", post(remove_member))
        .route("/teams/{team_id}/leave", post(leave))
        .route("/teams/{team_id}/invite", get(invite))
        .route("/teams/{team_id}/invite/regenerate", post(regenerate_invite))
        .route("/teams/{team_id}/settings", get(settings))
        .route("/teams/{team_id}/rename", post(rename))
        .route("/teams/{team_id}/delete", post(delete))
}

fn chrome(m: &TeamMember) -> Chrome<'_> {
    Chrome { user: Some(&m.viewer.user), csrf: &m.viewer.csrf.0 }
}

/// The team's meetings overview, with the form to start one.
pub async fn overview_view(
    state: &AppState,
    m: &TeamMember,
    title: &str,
    title_error: Option<&str>,
) -> Result<Markup, Error> {
    let meetings = state.store.team_meetings(m.team.id).await?;
    let upcoming = state.store.upcoming(m.team.id, crate::clock::now_ms()).await?;
    let feed_url = format!("{}/calendar/{}/team.ics", state.public_url, state.store.calendar_secret(m.team.id).await?);
    let unread = state.store.unread_topics(m.user_id()).await?.get(&m.team.id).copied().unwrap_or(0);
    Ok(views::page(
        chrome(m),
        &m.team.name,
        html! {
            (views::team_header(&m.team, m.role, TeamTab::Meetings))
            @if unread > 0 {
                p.notice #unread-notice {
                    a href=(format!("/teams/{}/forum", m.team.id)) {
                        (unread) @if unread == 1 { " topic has" } @else { " topics have" } " new messages"
                    }
                    " on the forum (meeting chats among them)."
                }
            }
            section.card #new-meeting {
                h2 { "Start a meeting" }
                form.row method="post" action=(format!("/teams/{}/meetings", m.team.id)) {
                    (csrf_field(&m.viewer.csrf.0))
                    div.grow {
                        label for="meeting-title" { "Title" }
                        input #meeting-title type="text" name="title" value=(title) maxlength=(MAX_MEETING_TITLE) required
                            placeholder="e.g. Weekly planning";
                        (field_error(title_error))
                    }
                    button.primary type="submit" { "Start meeting" }
                }
            }
            // One live stream for both cards: what is to come, and the meetings.
            div hx-ext="sse" sse-connect=(format!("/teams/{}/events?view=meetings", m.team.id)) {
                (super::schedule::upcoming_card(m, &upcoming, &feed_url))
                section.card {
                    h2 { "Meetings" }
                    div #meeting-list sse-swap="meetings" hx-swap="innerHTML" {
                        (meeting_list(&meetings))
                    }
                }
            }
        },
    ))
}

async fn overview(State(state): State<AppState>, m: TeamMember) -> Result<Markup, Error> {
    overview_view(&state, &m, "", None).await
}

async fn members(State(state): State<AppState>, m: TeamMember) -> Result<Markup, Error> {
    let members = state.store.team_members(m.team.id).await?;
    Ok(views::page(
        chrome(&m),
        &format!("Members of {}", m.team.name),
        html! {
            (views::team_header(&m.team, m.role, TeamTab::Members))
            section.card {
                h2 { (views::people(members.len())) }
                table.members {
                    thead { tr { th { "Name" } th { "Role" } th { "Joined" } th { span.sr-only { "Actions" } } } }
                    tbody { @for member in &members { (member_row(&m, member)) } }
                }
            }
            section.card {
                h2 { "Leave the team" }
                @if m.role == Role::Owner {
                    p.muted { "You own this team. To leave it, delete it in the settings." }
                } @else {
                    form method="post" action=(format!("/teams/{}/leave", m.team.id)) {
                        (csrf_field(&m.viewer.csrf.0))
                        button.danger type="submit" { "Leave " (m.team.name) }
                    }
                }
            }
        },
    ))
}

/// Whether the viewer may change this member's role or remove them: admins manage
/// everyone but the owner, and nobody manages themselves here.
fn can_manage(m: &TeamMember, member: &Member) -> bool {
    m.role.is_admin() && member.role != Role::Owner && member.user_id != m.user_id()
}

fn member_row(m: &TeamMember, member: &Member) -> Markup {
    let base = format!("/teams/{}/members/{}", m.team.id, member.user_id);
    let csrf = &m.viewer.csrf.0;
    html! {
        tr #(format!("member-{}", member.user_id)) {
            td { (member.display_name) @if member.user_id == m.user_id() { span.muted { " (you)" } } }
            td { span class=(format!("badge role-{}", member.role)) { (member.role) } }
            td { (views::time(member.joined_at)) }
            td.actions {
                @if can_manage(m, member) {
                    form.inline method="post" action=(format!("{base}/role")) {
                        (csrf_field(csrf))
                        @if member.role == Role::Admin {
                            input type="hidden" name="role" value="member";
                            button.small type="submit" { "Make member" }
                        } @else {
                            input type="hidden" name="role" value="admin";
                            button.small type="submit" { "Make admin" }
                        }
                    }
                    form.inline method="post" action=(format!("{base}/remove")) {
                        (csrf_field(csrf))
                        button.small.danger type="submit" { "Remove" }
                    }
                }
            }
        }
    }
}

#[derive(Deserialize)]
struct RoleForm {
    role: String,
}

async fn change_role(
    State(state): State<AppState>,
    m: TeamMember,
    Path((_, user_id)): Path<(i64, i64)>,
    Form(form): Form<RoleForm>,
) -> Result<Response, Error> {
    m.require_admin()?;
    let role = match Role::parse(&form.role) {
        Some(role @ (Role::Admin | Role::Member)) => role,
        _ => return Err(Error::BadRequest("A member can be made an admin or a member.".into())),
    };
    let member = state.store.team_member(m.team.id, user_id).await?.ok_or(Error::NotFound)?;
    if !can_manage(&m, &member) {
        return Err(Error::Forbidden("You cannot change this member's role.".into()));
    }
    state.store.set_role(m.team.id, user_id, role).await?;
    Ok(Redirect::to(&format!("/teams/{}/members", m.team.id)).into_response())
}

async fn remove_member(
    State(state): State<AppState>,
    m: TeamMember,
    Path((_, user_id)): Path<(i64, i64)>,
) -> Result<Response, Error> {
    m.require_admin()?;
    let member = state.store.team_member(m.team.id, user_id).await?.ok_or(Error::NotFound)?;
    if !can_manage(&m, &member) {
        return Err(Error::Forbidden("You cannot remove this member.".into()));
    }
    state.store.remove_member(m.team.id, user_id).await?;
    state.bus.publish(Event::MemberRemoved { team_id: m.team.id, user_id });
    state.bus.publish(Event::TeamChanged { team_id: m.team.id, changed: Changed::EVERYTHING });
    tracing::info!(team_id = m.team.id, user_id, by = m.user_id(), "member removed");
    Ok(Redirect::to(&format!("/teams/{}/members", m.team.id)).into_response())
}

async fn leave(State(state): State<AppState>, m: TeamMember) -> Result<Response, Error> {
    if m.role == Role::Owner {
        return Err(Error::Conflict("The owner cannot leave the team. Delete the team instead.".into()));
    }
    state.store.remove_member(m.team.id, m.user_id()).await?;
    state.bus.publish(Event::MemberRemoved { team_id: m.team.id, user_id: m.user_id() });
    state.bus.publish(Event::TeamChanged { team_id: m.team.id, changed: Changed::EVERYTHING });
    Ok(Redirect::to("/").into_response())
}

async fn invite(State(state): State<AppState>, m: TeamMember) -> Markup {
    let link = format!("{}/join/{}", state.public_url, m.team.invite_code);
    views::page(
        chrome(&m),
        &format!("Invite to {}", m.team.name),
        html! {
            (views::team_header(&m.team, m.role, TeamTab::Invite))
            section.card {
                h2 { "Invite people" }
                p { "Share the link, or the code for the \"Join a team\" box on the home page." }
                dl.invite {
                    dt { "Invite link" }
                    dd { input #invite-link type="text" readonly value=(link) aria-label="Invite link"; }
                    dt { "Invite code" }
                    dd { code #invite-code { (m.team.invite_code) } }
                }
                @if m.role.is_admin() {
                    form method="post" action=(format!("/teams/{}/invite/regenerate", m.team.id)) {
                        (csrf_field(&m.viewer.csrf.0))
                        p.muted { "Regenerating makes a new code and link; the old ones stop working at once." }
                        button type="submit" { "Regenerate invite" }
                    }
                }
            }
        },
    )
}

async fn regenerate_invite(State(state): State<AppState>, m: TeamMember) -> Result<Response, Error> {
    m.require_admin()?;
    state.store.regenerate_invite(m.team.id, new_invite_code).await?;
    Ok(Redirect::to(&format!("/teams/{}/invite", m.team.id)).into_response())
}

fn settings_view(m: &TeamMember, name: &str, name_error: Option<&str>) -> Markup {
    let csrf = &m.viewer.csrf.0;
    views::page(
        chrome(m),
        &format!("Settings of {}", m.team.name),
        html! {
            (views::team_header(&m.team, m.role, TeamTab::Settings))
            section.card {
                h2 { "Rename" }
                @if m.role == Role::Owner {
                    form method="post" action=(format!("/teams/{}/rename", m.team.id)) {
                        (csrf_field(csrf))
                        label for="rename" { "Team name" }
                        input #rename type="text" name="name" value=(name) maxlength=(MAX_TEAM_NAME) required;
                        (field_error(name_error))
                        button.primary type="submit" { "Save name" }
                    }
                } @else {
                    p.muted { "Only the owner can rename the team." }
                }
            }
            section.card.danger-zone {
                h2 { "Delete the team" }
                @if m.role == Role::Owner {
                    p { "This deletes the forum, every meeting and its chat, for everyone. It cannot be undone." }
                    form method="post" action=(format!("/teams/{}/delete", m.team.id)) {
                        (csrf_field(csrf))
                        label for="confirm" { "Type the team's name to confirm" }
                        input #confirm type="text" name="confirm" required autocomplete="off";
                        button.danger type="submit" { "Delete " (m.team.name) }
                    }
                } @else {
                    p.muted { "Only the owner can delete the team." }
                }
            }
        },
    )
}

async fn settings(m: TeamMember) -> Result<Markup, Error> {
    m.require_admin()?;
    Ok(settings_view(&m, &m.team.name, None))
}

#[derive(Deserialize)]
struct RenameForm {
    name: String,
}

async fn rename(State(state): State<AppState>, m: TeamMember, Form(form): Form<RenameForm>) -> Result<Response, Error> {
    m.require_owner()?;
    match parse_team_name(&form.name) {
        Ok(name) => {
            state.store.rename_team(m.team.id, &name).await?;
            Ok(Redirect::to(&format!("/teams/{}/settings", m.team.id)).into_response())
        }
        Err(problem) => {
            Ok((StatusCode::UNPROCESSABLE_ENTITY, settings_view(&m, &form.name, Some(&problem))).into_response())
        }
    }
}

#[derive(Deserialize)]
struct DeleteForm {
    confirm: String,
}

async fn delete(State(state): State<AppState>, m: TeamMember, Form(form): Form<DeleteForm>) -> Result<Response, Error> {
    m.require_owner()?;
    if form.confirm.trim() != m.team.name {
        return Err(Error::BadRequest(
            "The name you typed does not match the team's name; nothing was deleted.".into(),
        ));
    }
    let members = state.store.team_members(m.team.id).await?;
    // What the team's meetings still run: recordings stop (their files finish before they
    // go), calls end, compositions are cancelled; then rows, then files.
    let recordings = state.store.team_recordings(m.team.id).await?;
    for &(id, meeting_id, running) in &recordings {
        if running && let Err(reason) = super::calls::stop_recording(&state, meeting_id, id).await {
            tracing::warn!(recording_id = id, %reason, "a recording of a deleted team could not be stopped");
        }
        state.composer.cancel_if_composing(&state.store, id).await?;
    }
    for meeting in state.store.team_meetings(m.team.id).await? {
        if meeting.meeting.is_live() {
            state.store.end_meeting(meeting.meeting.id, m.user_id(), now_ms()).await?;
            super::calls::end(&state, meeting.meeting.id).await;
        }
    }
    state.store.delete_team(m.team.id).await?;
    for &(id, _, _) in &recordings {
        let dir = state.recordings_dir.join(id.to_string());
        if let Err(e) = tokio::fs::remove_dir_all(&dir).await
            && e.kind() != std::io::ErrorKind::NotFound
        {
            tracing::warn!(error = %e, dir = %dir.display(), "files of a deleted team's recording could not be removed");
        }
    }
    for member in members {
        state.bus.publish(Event::MemberRemoved { team_id: m.team.id, user_id: member.user_id });
    }
    tracing::info!(team_id = m.team.id, by = m.user_id(), "team deleted");
    Ok(Redirect::to("/").into_response())
}
