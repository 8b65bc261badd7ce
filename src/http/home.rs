//! The home page (your teams, live meetings across them), creating a team, and joining
//! one with an invite code or link.

use axum::Router;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};

use super::form::Form;
use maud::{Markup, html};
use serde::Deserialize;

use super::server::ClientAddress;
use super::views::{self, Chrome, csrf_field, empty_state, field_error};
use super::{AppState, Error, Guesser};
use crate::auth::{MaybeViewer, Viewer, new_invite_code};
use crate::clock::now_ms;
use crate::store::MeetingSummary;

pub const MAX_TEAM_NAME: usize = 100;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/", get(home))
        .route("/teams", post(create_team))
        .route("/join", post(join_with_code))
        .route("/join/{code}", get(invite_landing).post(join_with_link))
}

/// Errors and entered values of the two forms on the home page.
#[derive(Default)]
struct HomeForms<'a> {
    team_name: &'a str,
    team_error: Option<&'a str>,
    code: &'a str,
    code_error: Option<&'a str>,
}

async fn home(State(state): State<AppState>, viewer: MaybeViewer) -> Result<Response, Error> {
    let Some(user) = viewer.user.clone() else {
        return Ok(landing(&viewer).into_response());
    };
    let viewer = Viewer { user, csrf: viewer.csrf };
    Ok(home_view(&state, &viewer, HomeForms::default()).await?.into_response())
}

fn landing(viewer: &MaybeViewer) -> Markup {
    views::page(
        Chrome { user: None, csrf: &viewer.csrf.0 },
        "Welcome",
        html! {
            section.hero {
                h1 { "Meetings for your team, on your own server" }
                p.lead { "Create a team, invite people with a link, talk on the team forum and meet face to face." }
                p { a.button.primary href="/login" { "Sign in" } }
            }
        },
    )
}

async fn home_view(state: &AppState, viewer: &Viewer, forms: HomeForms<'_>) -> Result<Markup, Error> {
    let teams = state.store.teams_of_user(viewer.user.id).await?;
    let unread = state.store.unread_topics(viewer.user.id).await?;
    let live = state.store.live_meetings_of_user(viewer.user.id).await?;
    let csrf = viewer.csrf.0.as_str();
    Ok(views::page(
        Chrome { user: Some(&viewer.user), csrf },
        "Home",
        html! {
            h1 { "Hello, " (viewer.user.display_name) }
            div.grid-2 {
                section.card {
                    h2 { "Live meetings" }
                    @if live.is_empty() {
                        (empty_state("No meeting is live right now.", html! { "Start one from a team's page." }))
                    } @else {
                        ul.list { @for m in &live { (live_meeting_item(m)) } }
                    }
                }
                section.card {
                    h2 { "Your teams" }
                    @if teams.is_empty() {
                        (empty_state("You are not in a team yet.", html! { "Create one below, or join one with an invite code." }))
                    } @else {
                        ul.list {
                            @for t in &teams {
                                li {
                                    a href=(format!("/teams/{}", t.team.id)) { strong { (t.team.name) } }
                                    span.muted { " · " (t.role) " · " (views::people(usize::try_from(t.member_count).unwrap_or(0))) }
                                    @if let Some(n) = unread.get(&t.team.id).filter(|n| **n > 0) {
                                        " " a.badge.unread href=(format!("/teams/{}/forum", t.team.id)) {
                                            (n) @if *n == 1 { " topic" } @else { " topics" } " with new messages"
                                        }
                                    }
                                }
                            }
                        }
                    }
                }
                section.card #create-team {
                    h2 { "Create a team" }
                    form method="post" action="/teams" {
                        (csrf_field(csrf))
                        label for="team-name" { "Team name" }
                        input #team-name type="text" name="name" value=(forms.team_name) maxlength=(MAX_TEAM_NAME) required;
                        (field_error(forms.team_error))
                        button.primary type="submit" { "Create team" }
                    }
                }
                section.card #join-team {
                    h2 { "Join a team" }
                    form method="post" action="/join" {
                        (csrf_field(csrf))
                        label for="invite-code" { "Invite code" }
                        input #invite-code type="text" name="code" value=(forms.code) maxlength="200" required
                            autocomplete="off" placeholder="e.g. k7m2x9qapz";
                        (field_error(forms.code_error))
                        button type="submit" { "Join" }
                    }
                }
            }
        },
    ))
}

fn live_meeting_item(m: &MeetingSummary) -> Markup {
    html! {
        li {
            span.live-dot aria-label="live" {}
            a href=(format!("/teams/{}/meetings/{}", m.meeting.team_id, m.meeting.id)) { strong { (m.meeting.title) } }
            span.muted { " · " (m.team_name) " · " (views::people(m.present.len())) " in it" }
        }
    }
}

#[derive(Deserialize)]
struct CreateTeamForm {
    name: String,
}

/// A team name: a name as people's are (see [`crate::auth::names`]), 1 to 100 characters.
pub fn parse_team_name(raw: &str) -> Result<String, String> {
    use crate::auth::names::{NameProblem, clean};
    clean(raw, MAX_TEAM_NAME).map_err(|problem| match problem {
        NameProblem::Empty => "Give the team a name.".into(),
        NameProblem::TooLong { max, length } => {
            format!("A team name can be at most {max} characters (this one has {length}).")
        }
        invisible => invisible.to_string(),
    })
}

async fn create_team(
    State(state): State<AppState>,
    viewer: Viewer,
    Form(form): Form<CreateTeamForm>,
) -> Result<Response, Error> {
    let refused = match parse_team_name(&form.name) {
        Ok(name) => super::limits::allow_creation(&state, viewer.user.id)
            .map(|()| name)
            .map_err(|problem| (StatusCode::TOO_MANY_REQUESTS, problem)),
        Err(problem) => Err((StatusCode::UNPROCESSABLE_ENTITY, problem)),
    };
    let name = match refused {
        Ok(name) => name,
        Err((status, problem)) => {
            let forms = HomeForms { team_name: &form.name, team_error: Some(&problem), ..Default::default() };
            let page = home_view(&state, &viewer, forms).await?;
            return Ok((status, page).into_response());
        }
    };
    let team = state.store.create_team(&name, viewer.user.id, now_ms(), new_invite_code).await?;
    tracing::info!(team_id = team.id, user_id = viewer.user.id, "team created");
    Ok(Redirect::to(&format!("/teams/{}", team.id)).into_response())
}

#[derive(Deserialize)]
struct JoinForm {
    code: String,
}

/// Accepts a bare code or a whole invite link pasted into the field.
fn code_from_input(input: &str) -> &str {
    let input = input.trim().trim_end_matches('/');
    input.rsplit('/').next().unwrap_or(input)
}

async fn join_with_code(
    State(state): State<AppState>,
    viewer: Viewer,
    ClientAddress(from): ClientAddress,
    Form(form): Form<JoinForm>,
) -> Result<Response, Error> {
    let code = code_from_input(&form.code);
    match find_invite(&state, &viewer, from, code).await? {
        Some(team) => {
            state.store.add_member(team.id, viewer.user.id, now_ms()).await?;
            Ok(Redirect::to(&format!("/teams/{}", team.id)).into_response())
        }
        None => {
            let problem = "No team has this invite code. Check it, or ask for a new one (codes stop working when they are regenerated).";
            let forms = HomeForms { code: &form.code, code_error: Some(problem), ..Default::default() };
            let page = home_view(&state, &viewer, forms).await?;
            Ok((StatusCode::UNPROCESSABLE_ENTITY, page).into_response())
        }
    }
}

/// The team an invite code belongs to. Wrong codes are counted per user and per address,
/// and past the allowance every code is refused for a while, so codes cannot be guessed.
async fn find_invite(
    state: &AppState,
    viewer: &Viewer,
    from: Option<std::net::IpAddr>,
    code: &str,
) -> Result<Option<crate::store::Team>, Error> {
    let now = std::time::Instant::now();
    let guessers = std::iter::once(Guesser::User(viewer.user.id)).chain(from.map(Guesser::Address));
    for guesser in guessers.clone() {
        if let Err(wait) = state.join_guesses.left(guesser, now) {
            tracing::warn!(user_id = viewer.user.id, ?from, "invite codes refused after too many wrong ones");
            return Err(Error::TooMany(format!(
                "Too many invite codes that did not work were tried. Wait {wait} s, then check the code and try again."
            )));
        }
    }
    let team = state.store.team_by_invite(code).await?;
    if team.is_none() {
        for guesser in guessers {
            let _ = state.join_guesses.allow(guesser, now);
        }
    }
    Ok(team)
}

async fn invite_landing(
    State(state): State<AppState>,
    viewer: Viewer,
    ClientAddress(from): ClientAddress,
    Path(code): Path<String>,
) -> Result<Response, Error> {
    let chrome = Chrome { user: Some(&viewer.user), csrf: &viewer.csrf.0 };
    let Some(team) = find_invite(&state, &viewer, from, &code).await? else {
        let page = views::page(
            chrome,
            "Invite not valid",
            html! {
                section.card.narrow {
                    h1 { "This invite link does not work" }
                    p.lead { "It may have been replaced by a new one. Ask a team admin for the current link." }
                    p { a.button href="/" { "Go to your home page" } }
                }
            },
        );
        return Ok((StatusCode::NOT_FOUND, page).into_response());
    };
    if state.store.team_membership(team.id, viewer.user.id).await?.is_some() {
        return Ok(Redirect::to(&format!("/teams/{}", team.id)).into_response());
    }
    Ok(views::page(
        chrome,
        "Join team",
        html! {
            section.card.narrow {
                h1 { "Join " (team.name) "?" }
                p.lead { "You were invited to join this team on Floo." }
                form method="post" action=(format!("/join/{code}")) {
                    (csrf_field(chrome.csrf))
                    button.primary type="submit" { "Join " (team.name) }
                }
            }
        },
    )
    .into_response())
}

async fn join_with_link(
    State(state): State<AppState>,
    viewer: Viewer,
    ClientAddress(from): ClientAddress,
    Path(code): Path<String>,
) -> Result<Response, Error> {
    let team = find_invite(&state, &viewer, from, &code).await?.ok_or(Error::NotFound)?;
    state.store.add_member(team.id, viewer.user.id, now_ms()).await?;
    tracing::info!(team_id = team.id, user_id = viewer.user.id, "joined team by link");
    Ok(Redirect::to(&format!("/teams/{}", team.id)).into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn team_names_are_trimmed_and_bounded() {
        assert_eq!(parse_team_name("  Rocket \n Science "), Ok("Rocket Science".into()));
        assert!(parse_team_name("Rocket\u{202E}").is_err());
        assert!(parse_team_name("   ").is_err());
        assert!(parse_team_name(&"é".repeat(100)).is_ok());
        assert!(parse_team_name(&"é".repeat(101)).is_err());
    }

    #[test]
    fn an_invite_link_pasted_as_a_code_works() {
        assert_eq!(code_from_input(" abc123 "), "abc123");
        assert_eq!(code_from_input("http://localhost:8080/join/abc123"), "abc123");
        assert_eq!(code_from_input("http://localhost:8080/join/abc123/"), "abc123");
    }
}
